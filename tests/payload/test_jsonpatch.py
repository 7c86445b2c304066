"""RFC 6902 JSON Patch (the Appendix A examples) and RFC 6901 JSON Pointer."""

from __future__ import annotations

import copy

import pytest

from proxy.payload.jsonpatch import apply_patch, format_pointer, json_equal, parse_patch, parse_pointer, resolve
from tests.payload import same

# (name, document, patch, expected result or None for an error)
APPENDIX_A = [
    ("A.1 adding an object member", {"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
     {"baz": "qux", "foo": "bar"}),
    ("A.2 adding an array element", {"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ("A.3 removing an object member", {"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}],
     {"foo": "bar"}),
    ("A.4 removing an array element", {"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
     {"foo": ["bar", "baz"]}),
    ("A.5 replacing a value", {"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ("A.6 moving a value", {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ("A.7 moving an array element", {"foo": ["all", "grass", "cows", "eat"]},
     [{"op": "move", "from": "/foo/1", "path": "/foo/3"}], {"foo": ["all", "cows", "eat", "grass"]}),
    ("A.8 testing a value: success", {"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ("A.9 testing a value: error", {"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], None),
    ("A.10 adding a nested member object", {"foo": "bar"},
     [{"op": "add", "path": "/child", "value": {"grandchild": {}}}], {"foo": "bar", "child": {"grandchild": {}}}),
    ("A.11 ignoring unrecognized elements", {"foo": "bar"},
     [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}], {"foo": "bar", "baz": "qux"}),
    ("A.12 adding to a nonexistent target", {"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}],
     None),
    ("A.14 ~ escape ordering", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}],
     {"/": 9, "~1": 10}),
    ("A.15 comparing strings and numbers", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}],
     None),
    ("A.16 adding an array value", {"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
]


@pytest.mark.parametrize(("name", "doc", "patch", "expected"), APPENDIX_A, ids=[a[0][:4] for a in APPENDIX_A])
def test_rfc6902_appendix_a(name, doc, patch, expected):
    before = copy.deepcopy(doc)
    if expected is None:
        with pytest.raises(ValueError):
            apply_patch(doc, patch)
    else:
        assert same(apply_patch(doc, patch), expected)
    assert same(doc, before)


def test_a13_invalid_patch_document():
    text = '[{ "op": "add", "path": "/baz", "value": "qux", "op": "remove" }]'
    with pytest.raises(ValueError, match="duplicate"):
        parse_patch(text)
    assert parse_patch('[{"op": "remove", "path": "/a"}]') == [{"op": "remove", "path": "/a"}]
    for bad in ("{}", "[1]", "not json"):
        with pytest.raises(ValueError):
            parse_patch(bad)


RFC6901 = {"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4, "i\\j": 5, 'k"l': 6, " ": 7,
           "m~n": 8}


@pytest.mark.parametrize(("pointer", "value"), [
    ("", RFC6901), ("/foo", ["bar", "baz"]), ("/foo/0", "bar"), ("/", 0), ("/a~1b", 1), ("/c%d", 2), ("/e^f", 3),
    ("/g|h", 4), ("/i\\j", 5), ('/k"l', 6), ("/ ", 7), ("/m~0n", 8),
])
def test_rfc6901_examples(pointer, value):
    assert resolve(RFC6901, pointer) == value
    assert format_pointer(parse_pointer(pointer)) == pointer


@pytest.mark.parametrize("pointer", [
    "foo", "/foo/01", "/foo/-", "/foo/2", "/foo/x", "/nope", "/m~2n", "/m~", "/foo/0/x",
])
def test_bad_or_missing_pointers(pointer):
    with pytest.raises(ValueError):
        resolve(RFC6901, pointer)


@pytest.mark.parametrize("patch", [
    [{"op": "remove", "path": ""}],
    [{"op": "add", "path": "/foo/3", "value": 1}],
    [{"op": "add", "path": "/foo/01", "value": 1}],
    [{"op": "remove", "path": "/foo/-"}],
    [{"op": "replace", "path": "/nope", "value": 1}],
    [{"op": "move", "from": "/foo", "path": "/foo/0"}],
    [{"op": "move", "from": "/nope", "path": "/nope"}],
    [{"op": "copy", "from": "/nope", "path": "/x"}],
    [{"op": "add", "path": "/x"}],
    [{"path": "/x", "value": 1}],
    [{"op": "frobnicate", "path": "/x"}],
    [{"op": "add", "path": 3, "value": 1}],
    [{"op": "add", "path": "/a~1b/x", "value": 1}],
    ["add"],
    {"op": "add"},
])
def test_patch_errors(patch):
    with pytest.raises(ValueError):
        apply_patch(RFC6901, patch)


def test_root_operations_copy_and_atomicity():
    assert apply_patch({"a": 1}, [{"op": "replace", "path": "", "value": [1]}]) == [1]
    assert apply_patch({"a": 1}, [{"op": "add", "path": "", "value": {"b": 2}}]) == {"b": 2}
    doc = {"a": {"b": [1]}}
    out = apply_patch(doc, [{"op": "copy", "from": "/a", "path": "/c"}, {"op": "add", "path": "/c/b/-", "value": 2}])
    assert out == {"a": {"b": [1]}, "c": {"b": [1, 2]}} and doc == {"a": {"b": [1]}}
    value = {"deep": [1]}
    out = apply_patch({}, [{"op": "add", "path": "/v", "value": value}])
    out["v"]["deep"].append(2)
    assert value == {"deep": [1]}  # values are copied in, not shared
    with pytest.raises(ValueError):
        apply_patch(doc, [{"op": "remove", "path": "/a"}, {"op": "test", "path": "/a", "value": 1}])
    assert doc == {"a": {"b": [1]}}
    assert apply_patch(doc, [{"op": "move", "from": "/a", "path": "/a"}]) == doc


def test_json_equality():
    assert json_equal(1, 1.0) and json_equal({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert not json_equal(True, 1) and not json_equal(0, False) and not json_equal(None, 0)
    assert not json_equal([1, 2], [2, 1]) and not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert json_equal(float("nan"), float("nan")) and not json_equal("1", 1)
