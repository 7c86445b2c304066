/* The byte loops of the CSV faults that do not read the table (delimited_bytes.py: nan, structural, in place), in C.
 *
 * Why C: on a 1 MB body numpy's way (a mask per byte, then flatnonzero, then strided slices) takes ~0.7 ms to
 * find the ~200,000 separators, check each line's count of cells and give a column's cell bounds, and a join of
 * one slice per cell ~0.45 ms to cut the chosen cells out; a chaos answer must cost ~1 ms all in for 5% of them
 * to keep 0.85 of pass-through's throughput (benchmarks/RESULTS.md, issue 19). Here 16 bytes are compared at a
 * time (SSE2, which every x86-64 has; a byte at a time elsewhere), one walk over the separators does the rest
 * (~0.33 ms), and the cut is one allocation and a memcpy per kept run (0.04 ms). Optional: setup.py builds this
 * with the compiled data plane, and delimited_bytes.py does the same with numpy when the module is missing (the
 * tests compare the two, and this file built without SIMD).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* CELLS_NO_SIMD: a byte at a time, as on a machine without SSE2 (ARM): the tests build it so to check it. */
#if defined(__SSE2__) && defined(__GNUC__) && !defined(CELLS_NO_SIMD)
#include <emmintrin.h>
#define CELLS_SSE2 1
#endif

#ifdef CELLS_SSE2
/* Bit i set for each byte p[i] of p[0:64] equal to c. */
static inline uint64_t
block(const unsigned char *p, __m128i c)
{
    uint64_t m = 0;
    for (int q = 0; q < 4; q++) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(p + 16 * q));
        m |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, c)) << (16 * q);
    }
    return m;
}
#endif

#ifdef CELLS_SSE2
/* The sum of the bytes of a counter of matches (each lane at most 255). */
static inline Py_ssize_t
sum_lanes(__m128i acc)
{
    const __m128i s = _mm_sad_epu8(acc, _mm_setzero_si128());
    return (Py_ssize_t)(_mm_cvtsi128_si64(s) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s)));
}
#endif

/* How many bytes of p[0:n] equal d, '\n' and '\r' (the last only when cr is set). Matches are summed per byte
 * lane (a compare gives -1 per match, subtracted) and the lanes added up every 255 steps: no popcount, which
 * without -mpopcnt is a call into libgcc per word. */
static void
count(const unsigned char *p, Py_ssize_t n, unsigned char d, int cr, Py_ssize_t *n_d, Py_ssize_t *n_lf,
      Py_ssize_t *n_cr)
{
    Py_ssize_t i = 0, kd = 0, kl = 0, kc = 0;
#ifdef CELLS_SSE2
    const __m128i vd = _mm_set1_epi8((char)d), vl = _mm_set1_epi8('\n'), vc = _mm_set1_epi8('\r');
    while (i + 16 <= n) {
        __m128i ad = _mm_setzero_si128(), al = _mm_setzero_si128(), ac = _mm_setzero_si128();
        for (int step = 0; step < 255 && i + 16 <= n; step++, i += 16) {
            const __m128i x = _mm_loadu_si128((const __m128i *)(p + i));
            ad = _mm_sub_epi8(ad, _mm_cmpeq_epi8(x, vd));
            al = _mm_sub_epi8(al, _mm_cmpeq_epi8(x, vl));
            ac = _mm_sub_epi8(ac, _mm_cmpeq_epi8(x, vc));
        }
        kd += sum_lanes(ad);
        kl += sum_lanes(al);
        kc += sum_lanes(ac);
    }
#endif
    for (; i < n; i++) {
        kd += p[i] == d;
        kl += p[i] == '\n';
        kc += p[i] == '\r';
    }
    *n_d = kd;
    *n_lf = kl;
    *n_cr = cr ? kc : 0;
}

/* What a walk over a body's separators needs: the body from its start, its shape, and where the wanted
 * columns' cells go (slot[j]: the row of the output for column j, or -1). */
typedef struct {
    const unsigned char *p;
    Py_ssize_t width, lines, start;
    const Py_ssize_t *slot;
    Py_ssize_t *lo, *hi;
    int crlf;
} Walk;

/* The separator at offset pos (a line break when lf) ends the current cell, which goes to its column's row of
 * lo and hi when that column was asked; break out of the walk (goto irregular) when the line has more or
 * fewer cells than width, or a line break of a CRLF body has no carriage return before it. A macro over the
 * walk's locals. The branches follow the lines' pattern, which the CPU predicts: without them (conditional
 * moves, a spare cell to write the unasked columns to, the checks or'ed into a flag read every 64 bytes) the
 * walk took 0.60 ms a MB instead of 0.27. */
#define STEP(pos, lf)                                                                                          \
    do {                                                                                                       \
        Py_ssize_t end_ = (pos);                                                                               \
        if (lf) {                                                                                              \
            if (col != last) {                                                                                 \
                goto irregular;                                                                                \
            }                                                                                                  \
            if (crlf) {                                                                                        \
                if ((pos) == 0 || p[(pos) - 1] != '\r') {                                                      \
                    goto irregular;                                                                            \
                }                                                                                              \
                end_ = (pos) - 1; /* the cell ends before the "\r" */                                          \
            }                                                                                                  \
        } else if (col == last) {                                                                              \
            goto irregular;                                                                                    \
        }                                                                                                      \
        const Py_ssize_t s_ = slot[col];                                                                       \
        if (s_ >= 0) {                                                                                         \
            lo[s_ * lines + line] = start + cell;                                                              \
            hi[s_ * lines + line] = start + end_; /* >= cell: the delimiter is never "\r" */                   \
        }                                                                                                      \
        if (lf) {                                                                                              \
            col = 0;                                                                                           \
            line++;                                                                                            \
        } else {                                                                                               \
            col++;                                                                                             \
        }                                                                                                      \
        cell = (pos) + 1;                                                                                      \
    } while (0)

/* Every separator of p[0:n] in order, through STEP, then the last line's end when it has no line break; 0 as
 * soon as a line is not regular. Rows of lo and hi are written only up to lines: the count before the walk
 * found as many line breaks as that. */
static int
walk(const Walk *w, Py_ssize_t n, unsigned char d, int final)
{
    const unsigned char *restrict p = w->p;
    const Py_ssize_t *restrict slot = w->slot;
    Py_ssize_t *restrict lo = w->lo;
    Py_ssize_t *restrict hi = w->hi;
    const Py_ssize_t last = w->width - 1, lines = w->lines, start = w->start;
    int crlf = w->crlf;
    Py_ssize_t cell = 0, col = 0, line = 0, i = 0;
#ifdef CELLS_SSE2
    const __m128i vd = _mm_set1_epi8((char)d), vl = _mm_set1_epi8('\n');
    for (; i + 64 <= n; i += 64) {
        const uint64_t l = block(p + i, vl);
        uint64_t m = l | block(p + i, vd);
        while (m) {  /* ~12 separators per 64 bytes of a typical CSV */
            const int b = __builtin_ctzll(m);
            STEP(i + b, (l >> b) & 1);
            m &= m - 1;
        }
    }
#endif
    for (; i < n; i++) {
        if (p[i] == '\n') {
            STEP(i, 1);
        } else if (p[i] == d) {
            STEP(i, 0);
        }
    }
    if (!final) {  /* the last line, without a line break: its last cell ends with the body */
        crlf = 0;
        STEP(n, 1);
    }
    return 1;
irregular:
    return 0;
}

PyDoc_STRVAR(cells_doc,
"cells(body, start, delimiter, width, crlf, columns) -> (lines, starts, stops) or None\n\n"
"Reads ``body[start:]`` as lines of ``width`` cells separated by ``delimiter`` (no quoting), each line\n"
"ended by a line break (``\\r\\n`` when ``crlf``) except perhaps the last. None unless every line has\n"
"``width`` cells and, when ``crlf``, every line break has a carriage return before it and no other does.\n"
"Else the count of lines and, for the ``columns`` asked (ascending, each below ``width``), the offsets in\n"
"``body`` where each line's cell starts and stops (before a line break's ``\\r``): native integers\n"
"(numpy.intp) in bytes, column after column, ``lines`` of them each.");

static PyObject *
cells(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer body;
    Py_ssize_t start, width;
    int delimiter, crlf;
    PyObject *columns;
    if (!PyArg_ParseTuple(args, "y*ninpO:cells", &body, &start, &delimiter, &width, &crlf, &columns)) {
        return NULL;
    }
    PyObject *result = NULL, *lo = NULL, *hi = NULL, *wanted = NULL;
    Py_ssize_t *slot = NULL;
    if (start < 0 || start > body.len || delimiter < 0 || delimiter > 255 || delimiter == '\n' ||
        delimiter == '\r' || width < 1) {
        PyErr_SetString(PyExc_ValueError, "cells: start out of the body, a delimiter not a byte of a cell's "
                                          "end, or a width below 1");
        goto done;
    }
    wanted = PySequence_Fast(columns, "cells: columns must be a sequence of ints");
    if (wanted == NULL) {
        goto done;
    }
    const Py_ssize_t asked = PySequence_Fast_GET_SIZE(wanted);
    slot = PyMem_Malloc((size_t)width * sizeof(Py_ssize_t));
    if (slot == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < width; j++) {
        slot[j] = -1;
    }
    Py_ssize_t last = -1;
    for (Py_ssize_t c = 0; c < asked; c++) {
        const Py_ssize_t j = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(wanted, c));
        if (j == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (j <= last || j >= width) {
            PyErr_SetString(PyExc_ValueError, "cells: columns must be ascending, each below width");
            goto done;
        }
        slot[j] = c;
        last = j;
    }
    const unsigned char *p = (const unsigned char *)body.buf + start;
    const Py_ssize_t n = body.len - start;
    Py_ssize_t n_d, n_lf, n_cr;
    count(p, n, (unsigned char)delimiter, crlf, &n_d, &n_lf, &n_cr);
    const int final = n > 0 && p[n - 1] == '\n';
    const Py_ssize_t lines = final ? n_lf : n_lf + 1;
    /* Counted first: a body of the wrong count is refused before any walk, and the output has its size. */
    if (n_d != lines * (width - 1) || (crlf && n_cr != n_lf)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    const Py_ssize_t size = asked * lines * (Py_ssize_t)sizeof(Py_ssize_t);
    lo = PyBytes_FromStringAndSize(NULL, size);
    hi = PyBytes_FromStringAndSize(NULL, size);
    if (lo == NULL || hi == NULL) {
        goto done;
    }
    const Walk w = {p, width, lines, start, slot, (Py_ssize_t *)PyBytes_AS_STRING(lo),
                    (Py_ssize_t *)PyBytes_AS_STRING(hi), crlf};
    if (!walk(&w, n, (unsigned char)delimiter, final)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = Py_BuildValue("(nOO)", lines, lo, hi);
done:
    PyBuffer_Release(&body);
    Py_XDECREF(wanted);
    Py_XDECREF(lo);
    Py_XDECREF(hi);
    PyMem_Free(slot);
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
        PyErr_Format(PyExc_ValueError, "offsets must be native integers (numpy.intp), not '%s'", f);
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

PyDoc_STRVAR(gather_doc,
"gather(body, starts, stops, glue, seps, head, tail) -> bytes\n\n"
"``head``, then for each i ``seps[glue[i]]`` and ``body[starts[i]:stops[i]]``, then ``tail``: the lines or\n"
"cells of a body in any order, joined by its delimiter and line break. ``starts``, ``stops`` and ``glue``\n"
"are contiguous arrays of native integers (numpy.intp), as many each; ValueError for a piece outside the body\n"
"or a glue that is no index of ``seps`` (a tuple of bytes).");

static PyObject *
gather(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer body, head, tail, starts = {0}, stops = {0}, glue = {0};
    PyObject *starts_obj, *stops_obj, *glue_obj, *seps, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*OOOO!y*y*:gather", &body, &starts_obj, &stops_obj, &glue_obj, &PyTuple_Type,
                          &seps, &head, &tail)) {
        return NULL;
    }
    if (offsets(starts_obj, &starts) < 0 || offsets(stops_obj, &stops) < 0 || offsets(glue_obj, &glue) < 0) {
        goto done;
    }
    const Py_ssize_t pieces = starts.len / (Py_ssize_t)sizeof(Py_ssize_t);
    const Py_ssize_t *lo = (const Py_ssize_t *)starts.buf, *hi = (const Py_ssize_t *)stops.buf;
    const Py_ssize_t *g = (const Py_ssize_t *)glue.buf;
    if (stops.len != starts.len || glue.len != starts.len) {
        PyErr_SetString(PyExc_ValueError, "gather: as many starts, stops and glues");
        goto done;
    }
    const Py_ssize_t n_seps = PyTuple_GET_SIZE(seps);
    for (Py_ssize_t k = 0; k < n_seps; k++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(seps, k))) {
            PyErr_SetString(PyExc_TypeError, "gather: seps must be a tuple of bytes");
            goto done;
        }
    }
    /* Checked whole before anything is written, and sized. */
    Py_ssize_t size = head.len + tail.len;
    for (Py_ssize_t i = 0; i < pieces; i++) {
        if (lo[i] < 0 || hi[i] < lo[i] || hi[i] > body.len || g[i] < 0 || g[i] >= n_seps) {
            PyErr_Format(PyExc_ValueError, "gather: piece %zd (%zd:%zd, glue %zd) is not within the body and seps",
                         i, lo[i], hi[i], g[i]);
            goto done;
        }
        size += PyBytes_GET_SIZE(PyTuple_GET_ITEM(seps, g[i])) + hi[i] - lo[i];
    }
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) {
        goto done;
    }
    char *dst = PyBytes_AS_STRING(result);
    memcpy(dst, head.buf, (size_t)head.len);
    dst += head.len;
    const char *src = (const char *)body.buf;
    for (Py_ssize_t i = 0; i < pieces; i++) {
        PyObject *sep = PyTuple_GET_ITEM(seps, g[i]);
        memcpy(dst, PyBytes_AS_STRING(sep), (size_t)PyBytes_GET_SIZE(sep));
        dst += PyBytes_GET_SIZE(sep);
        memcpy(dst, src + lo[i], (size_t)(hi[i] - lo[i]));
        dst += hi[i] - lo[i];
    }
    memcpy(dst, tail.buf, (size_t)tail.len);
done:
    PyBuffer_Release(&body);
    PyBuffer_Release(&head);
    PyBuffer_Release(&tail);
    if (starts.obj != NULL) {
        PyBuffer_Release(&starts);
    }
    if (stops.obj != NULL) {
        PyBuffer_Release(&stops);
    }
    if (glue.obj != NULL) {
        PyBuffer_Release(&glue);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"cells", cells, METH_VARARGS, cells_doc},
    {"cut", cut, METH_VARARGS, cut_doc},
    {"gather", gather, METH_VARARGS, gather_doc},
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
