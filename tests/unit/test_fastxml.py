"""The fast parser of getAllProcessInfo answers returns exactly what xmlrpc.client returns,
or steps aside (None) so that xmlrpc.client parses the body."""

from __future__ import annotations

import xmlrpc.client
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from listener.supervisord.fastxml import fast_struct_array


def stdlib(body: bytes) -> Any:
    parser, unmarshaller = xmlrpc.client.getparser()
    parser.feed(body)
    parser.close()
    return unmarshaller.close()[0]


def response(value: Any) -> bytes:
    return xmlrpc.client.dumps((value,), methodresponse=True).encode()


INFO = {"name": "web_00", "group": "web", "start": 1764030000, "stop": 0, "now": 1764031000,
        "state": 20, "statename": "RUNNING", "spawnerr": "", "exitstatus": 0, "logfile": "",
        "stdout_logfile": "/var/log/web.log", "stderr_logfile": "", "pid": 1234,
        "description": "pid 1234, uptime 0:16:40"}

texts = st.text(st.characters(blacklist_categories=("Cs", "Cc"))) | st.text()
scalars = st.one_of(texts, st.integers(-2**31, 2**31 - 1), st.booleans(), st.floats(allow_nan=False))


def test_a_supervisord_answer_is_parsed_fast_and_the_same():
    infos = [{**INFO, "name": f"web_{i:02d}", "pid": 1000 + i} for i in range(50)]
    body = response(infos)
    assert fast_struct_array(body) == stdlib(body) == infos


def test_empty_list_and_empty_struct():
    assert fast_struct_array(response([])) == [] == stdlib(response([]))
    assert fast_struct_array(response([{}])) == [{}] == stdlib(response([{}]))


@settings(max_examples=300)
@given(st.lists(st.dictionaries(texts, scalars, max_size=6), max_size=6))
def test_any_array_of_flat_structs_parses_as_the_stdlib_does(value: list[dict[str, Any]]) -> None:
    body = response(value)
    fast = fast_struct_array(body)
    try:
        expected = stdlib(body)
    except Exception:  # not well-formed (e.g. a control character): never parsed fast
        assert fast is None
        return
    if fast is not None:  # else the stdlib parses it: identical by construction
        assert fast == expected
        assert [list(d) for d in fast] == [list(d) for d in expected]


def test_text_that_a_parser_would_change_is_left_to_the_stdlib():
    for text in ("a&b", "a<b", "line\r\nbreak", "]]>"):
        body = response([{**INFO, "name": text}])
        assert fast_struct_array(body) is None
        assert stdlib(body)[0]["name"] == text.replace("\r\n", "\n")


def test_other_shapes_are_left_to_the_stdlib():
    for value in (INFO, [INFO, [1]], [{"nested": {"a": 1}}], [{"list": [1, 2]}], True, "x"):
        assert fast_struct_array(response(value)) is None
    fault = xmlrpc.client.dumps(xmlrpc.client.Fault(10, "BAD_NAME: x"), methodresponse=True)
    assert fast_struct_array(fault.encode()) is None
    assert fast_struct_array(response([INFO]).replace(b"<int>1234</int>", b"<int>x</int>")) is None
    assert fast_struct_array(b"\xff" + response([INFO])) is None
    assert fast_struct_array(response([{"a": "\x01"}])) is None


def test_a_struct_boundary_inside_a_value_cannot_fool_it():
    body = response([INFO, INFO]).replace(b"<string>web_00</string>",
                                         b"<string>web</struct></value>\n<value><struct>\n</string>", 1)
    assert fast_struct_array(body) is None
