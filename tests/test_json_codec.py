"""The span hot path's JSON (orjson where it agrees with the standard library) reads and writes what json does."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from nightloop.sources.json_codec import dumps, loads

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _same(a: object, b: object) -> bool:
    """Equal values of the same types all the way down (1 and 1.0 differ; so do 2**64 and 2.0**64)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([None, 1, 2]))
def test_loads_reads_what_json_reads(value: object, indent: int | None) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=indent == 2)
    assert _same(loads(text), json.loads(text))
    assert _same(loads(text.encode()), json.loads(text))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]":,.-+eE0123456789 \nabNaIfinity\\u', max_size=40))
def test_loads_fails_where_json_fails_and_agrees_where_it_reads(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError as exc:
        try:
            loads(text)
        except ValueError as mine:
            assert str(mine) == str(exc)  # the standard library's words
        else:
            raise AssertionError(f"read {text!r}, which json refuses")
    else:
        assert _same(loads(text), expected)


def test_the_corners_orjson_reads_differently_are_read_as_json_reads_them() -> None:
    for text in ["18446744073709551616", "[1, -99999999999999999999]", "-9223372036854775809", "[1795000000000000000, -9223372036854775808]", '{"a":\n 123456789012345678901}', "[NaN, Infinity]", "1e400", '"\\ud800"',
                 " \n18446744073709551616", "[0,\t -9223372036854775809]", '{"t": "x", "n" :\r\n-1234567890123456789}']:
        assert _same(loads(text), json.loads(text)), text
    assert loads('{"trace": "00000000000000000000000000000001"}') == {"trace": "00000000000000000000000000000001"}


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_dumps_round_trips(value: object) -> None:
    assert _same(json.loads(dumps(value)), value)
    assert dumps({"é": "\ud83d"}) == json.dumps({"é": "\ud83d"}, ensure_ascii=False, separators=(",", ":"))  # a lone surrogate


def test_a_stored_span_reads_back_as_it_was_whatever_its_values() -> None:
    """Span.to_json's fast path (orjson, None fields left out) falls back whenever orjson would change a value."""
    import math

    from nightloop.sources.spans import Span

    odd = [float("nan"), float("inf"), None, 2**70, -(2**63) - 1, "\ud83d", 0, "", [], {}, 1.5, [float("-inf")], {"x": float("nan")}]
    for value in odd:
        for body in (value, None):  # also with only the attributes to hold it (a span without a body or events)
            span = Span(trace_id="t", span_id="s", source="f", attributes={"v": value, "name": "chat"}, status_code=0, body=body)
            back = Span.from_json(span.to_json())
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(back.attributes["v"]) and (body is None or math.isnan(back.body))
            elif repr(value) in ("[-inf]", "{'x': nan}"):
                assert repr(back.attributes["v"]) == repr(value)
            else:
                assert back == span, (value, span.to_json())


def test_a_span_stored_as_text_by_an_earlier_version_reads_back_exactly(tmp_path) -> None:
    """Spans orjson wrote are stored as BLOBs and read back by orjson alone; text (json_codec's careful path, and every
    span earlier versions stored) still goes through json_codec, so an integer past 64 bits stays an integer."""
    from nightloop.sources.spans import Span
    from nightloop.store import Store

    plain = Span(trace_id="t", span_id="plain", source="f", attributes={"n": 2**63})
    big = Span(trace_id="t", span_id="big", source="f", attributes={"n": 2**70})
    with Store(tmp_path / "s.db") as store:
        store.spans.add([plain, big])
        old = Span(trace_id="t", span_id="old", source="f", attributes={"n": 2**65})
        store.spans.db.conn.execute("insert into spans (trace_id, span_id, conversation_id, start_ns, json) values ('t', 'old', 't', 0, ?)", [json.dumps(old.__dict__)])
        kinds = dict(store.spans.db.conn.execute("select span_id, typeof(json) from spans"))
        back = {s.span_id: s for s in store.spans.spans_of("t")}
    assert kinds == {"plain": "blob", "big": "text", "old": "text"}
    assert back == {"plain": plain, "big": big, "old": old} and type(back["old"].attributes["n"]) is int
