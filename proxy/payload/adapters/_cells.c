/* The two byte loops of `nan` on a CSV body without quotes (delimited.py, blank_cells), in C.
 *
 * Why C: on a 1 MB body numpy's way (a mask per byte, then flatnonzero) takes ~0.5 ms to find the ~200,000
 * separators and a join of one slice per cell ~0.3 ms to cut the chosen cells out; a chaos answer must cost
 * ~1 ms all in for 5% of them to keep 0.85 of pass-through's throughput (benchmarks/RESULTS.md, issue 19).
 * Here 16 bytes are compared at a time (SSE2, which every x86-64 has; a byte at a time elsewhere) and the cut
 * is one allocation and a memcpy per kept run. Both are optional: setup.py builds this with the compiled data
 * plane, and delimited.py does the same with numpy when the module is missing (the tests compare the two).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#define CELLS_SSE2 1
#endif

/* The bits of the bytes of p[0:64] equal to d or to '\n' (bit i for byte i), and of those equal to '\n'. */
#ifdef CELLS_SSE2
static inline uint64_t
block(const unsigned char *p, __m128i vd, __m128i vl, uint64_t *lf)
{
    uint64_t m = 0, l = 0;
    for (int q = 0; q < 4; q++) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(p + 16 * q));
        const uint64_t ml = (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, vl));
        m |= (ml | (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, vd))) << (16 * q);
        l |= ml << (16 * q);
    }
    *lf = l;
    return m;
}
#endif

/* Offsets (from p) of every byte equal to d or '\n' into out (NULL: only count them); the count of line
 * breaks into *lines. Returns how many were found. */
static Py_ssize_t
scan(const unsigned char *p, Py_ssize_t n, unsigned char d, Py_ssize_t *out, Py_ssize_t *lines)
{
    Py_ssize_t i = 0, k = 0, lf = 0;
#ifdef CELLS_SSE2
    const __m128i vd = _mm_set1_epi8((char)d), vl = _mm_set1_epi8('\n');
    for (; i + 64 <= n; i += 64) {
        uint64_t l;
        uint64_t m = block(p + i, vd, vl, &l);
        lf += __builtin_popcountll(l);
        if (out == NULL) {
            k += __builtin_popcountll(m);
            continue;
        }
        /* A loop per set bit (12 per 64 bytes of a typical CSV): measured faster here than 16 unconditional
         * writes per block (0.21 against 0.26 ms a MB), which would avoid mispredicting the loop's exit. */
        while (m) {
            out[k++] = i + __builtin_ctzll(m);
            m &= m - 1;
        }
    }
#endif
    for (; i < n; i++) {
        const unsigned char c = p[i];
        if (c == '\n') {
            lf++;
        } else if (c != d) {
            continue;
        }
        if (out != NULL) {
            out[k] = i;
        }
        k++;
    }
    *lines = lf;
    return k;
}

PyDoc_STRVAR(separators_doc,
"separators(body, start, delimiter) -> (offsets, line_breaks)\n\n"
"The offsets from ``start`` of every ``delimiter`` byte and line break in ``body[start:]``, as native\n"
"integers (numpy.intp) in a bytes object, and the count of line breaks among them.");

static PyObject *
separators(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer body;
    Py_ssize_t start;
    int delimiter;
    if (!PyArg_ParseTuple(args, "y*ni:separators", &body, &start, &delimiter)) {
        return NULL;
    }
    if (start < 0 || start > body.len || delimiter < 0 || delimiter > 255 || delimiter == '\n') {
        PyBuffer_Release(&body);
        PyErr_SetString(PyExc_ValueError, "separators: start out of the body, or a delimiter not a byte");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)body.buf + start;
    const Py_ssize_t n = body.len - start;
    Py_ssize_t lines = 0;
    /* Counted first, so the result is allocated once at its size: the count costs a tenth of the fill. */
    const Py_ssize_t count = scan(p, n, (unsigned char)delimiter, NULL, &lines);
    PyObject *found = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(Py_ssize_t));
    if (found == NULL) {
        PyBuffer_Release(&body);
        return NULL;
    }
    scan(p, n, (unsigned char)delimiter, (Py_ssize_t *)PyBytes_AS_STRING(found), &lines);
    PyBuffer_Release(&body);
    PyObject *result = Py_BuildValue("(Nn)", found, lines);
    return result;
}

PyDoc_STRVAR(cut_doc,
"cut(body, starts, stops, blank) -> bytes\n\n"
"``body`` with each ``body[starts[i]:stops[i]]`` replaced by ``blank``. ``starts`` and ``stops`` are\n"
"contiguous arrays of native integers (numpy.intp), ascending and apart: ValueError otherwise.");

/* A contiguous one-dimensional array of native integers (numpy.intp) into view; -1 with ValueError if not. */
static int
offsets(PyObject *obj, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    if (f[0] == '@' || f[0] == '=') {
        f++;
    }
    const int native = (f[0] == 'n' || (f[0] == 'l' && sizeof(long) == sizeof(Py_ssize_t)) ||
                        (f[0] == 'q' && sizeof(long long) == sizeof(Py_ssize_t))) && f[1] == '\0';
    if (!native || view->itemsize != (Py_ssize_t)sizeof(Py_ssize_t) || view->ndim > 1) {
        PyBuffer_Release(view);
        view->obj = NULL;
        PyErr_Format(PyExc_ValueError, "cut: offsets must be native integers (numpy.intp), not '%s'", f);
        return -1;
    }
    return 0;
}

static PyObject *
cut(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer body, blank, starts = {0}, stops = {0};
    PyObject *starts_obj, *stops_obj, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*OOy*:cut", &body, &starts_obj, &stops_obj, &blank)) {
        return NULL;
    }
    if (offsets(starts_obj, &starts) < 0 || offsets(stops_obj, &stops) < 0) {
        goto done;
    }
    const Py_ssize_t *lo = (const Py_ssize_t *)starts.buf, *hi = (const Py_ssize_t *)stops.buf;
    const Py_ssize_t cells = starts.len / (Py_ssize_t)sizeof(Py_ssize_t);
    if (starts.len != stops.len) {
        PyErr_SetString(PyExc_ValueError, "cut: as many starts as stops");
        goto done;
    }
    /* Checked whole before anything is written: each cell within the body, after the one before it. */
    Py_ssize_t size = body.len, pos = 0;
    for (Py_ssize_t i = 0; i < cells; i++) {
        if (lo[i] < pos || hi[i] < lo[i] || hi[i] > body.len) {
            PyErr_Format(PyExc_ValueError, "cut: cell %zd (%zd:%zd) is not ascending within the body", i, lo[i],
                         hi[i]);
            goto done;
        }
        size += blank.len - (hi[i] - lo[i]);
        pos = hi[i];
    }
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) {
        goto done;
    }
    const char *src = (const char *)body.buf;
    char *dst = PyBytes_AS_STRING(result);
    pos = 0;
    for (Py_ssize_t i = 0; i < cells; i++) {
        memcpy(dst, src + pos, (size_t)(lo[i] - pos));
        dst += lo[i] - pos;
        memcpy(dst, blank.buf, (size_t)blank.len);
        dst += blank.len;
        pos = hi[i];
    }
    memcpy(dst, src + pos, (size_t)(body.len - pos));
done:
    PyBuffer_Release(&body);
    if (starts.obj != NULL) {
        PyBuffer_Release(&starts);
    }
    if (stops.obj != NULL) {
        PyBuffer_Release(&stops);
    }
    PyBuffer_Release(&blank);
    return result;
}

static PyMethodDef methods[] = {
    {"separators", separators, METH_VARARGS, separators_doc},
    {"cut", cut, METH_VARARGS, cut_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cells", "The byte loops of nan on a CSV body (see _cells.c).", 0, methods, slots,
};

PyMODINIT_FUNC
PyInit__cells(void)
{
    return PyModuleDef_Init(&module);
}
