"""The minimal CVar registry (spec/lua-bindings.md, CV rules)."""

from __future__ import annotations

from typing import cast

import pytest

from refimpl.allocator import TrackingAllocator
from refimpl.cvar import CVarChangeEvent, CVarRegistry, Value, format_value, free_event
from refimpl.errors import InvalidArgument, InvalidValue, OutOfMemory, UnknownCVar


def fields(event: CVarChangeEvent) -> tuple[bytes, bytes, bytes, bytes]:
    return (
        bytes(event.name),
        bytes(event.old_value),
        bytes(event.new_value),
        bytes(event.on_change_lua),
    )


def take(
    registry: CVarRegistry, allocator: TrackingAllocator
) -> list[tuple[bytes, bytes, bytes, bytes]]:
    events = registry.take_pending_changes(allocator)
    out = [fields(e) for e in events]
    for event in events:
        free_event(allocator, event)
    return out


@pytest.mark.spec("CV-REGISTER-TYPE")
def test_register_fixes_type_from_default() -> None:
    r = CVarRegistry()
    r.register("b", True)
    r.register("i", 3)
    r.register("f", 3.0)
    r.register("s", "3")
    r.set_from_string("b", "0")
    assert r.get_as_string("b") == "false"
    with pytest.raises(InvalidValue):
        r.set_from_string("i", "3.5")
    r.set_from_string("f", "3.5")
    assert r.get_as_string("f") == "3.5"
    r.set_from_string("s", "3.5")
    assert r.get_as_string("s") == "3.5"
    with pytest.raises(InvalidValue):
        r.set_from_string("b", "2")


@pytest.mark.spec("CV-REGISTER-DUPLICATE")
def test_register_duplicate_or_foreign_default_raises_and_changes_nothing() -> None:
    r = CVarRegistry()
    r.register("r_fov", 75.0)
    with pytest.raises(InvalidArgument):
        r.register("r_fov", 90.0)
    with pytest.raises(InvalidArgument):
        r.register("r_fov", "wide")
    assert r.get_as_string("r_fov") == "75.0"
    for bad in (None, [1], b"bytes", {"a": 1}):
        with pytest.raises(InvalidArgument):
            r.register("other", cast(Value, bad))
    assert r.names() == ["r_fov"]


@pytest.mark.spec("CV-UNKNOWN")
def test_unknown_name_raises_unknown_cvar() -> None:
    r = CVarRegistry()
    with pytest.raises(UnknownCVar):
        r.set_from_string("nope", "1")
    with pytest.raises(UnknownCVar):
        r.get_as_string("nope")
    with pytest.raises(UnknownCVar):
        r.set_lua_handler("nope", "H")
    with pytest.raises(UnknownCVar):
        r.get_lua_handler("nope")


@pytest.mark.spec("CV-SET-PARSE")
@pytest.mark.parametrize(
    ("default", "good", "canonical", "bad"),
    [
        (0, ["42", "-7", "+3"], ["42", "-7", "3"], ["4.2", "0x10", "", "1e3", " 1", "ten"]),
        (0.0, ["90", "0.1", "-2.5e1"], ["90.0", "0.1", "-25.0"], ["", "abc", "nan", "inf", "1,5"]),
        (False, ["true", "1", "false", "0"], ["true", "true", "false", "false"], ["yes", "TRUE"]),
        ("", ["hello world", ""], ["hello world", ""], []),
    ],
)
def test_set_parses_by_type_and_rejects_unparsable(
    default: Value, good: list[str], canonical: list[str], bad: list[str]
) -> None:
    r = CVarRegistry()
    r.register("v", default)
    for text, expected in zip(good, canonical, strict=True):
        r.set_from_string("v", text)
        assert r.get_as_string("v") == expected
    before = r.get_as_string("v")
    for text in bad:
        with pytest.raises(InvalidValue):
            r.set_from_string("v", text)
        assert r.get_as_string("v") == before


@pytest.mark.spec("CV-SET-RANGE")
def test_out_of_range_or_non_finite_raises_and_keeps_value() -> None:
    r = CVarRegistry()
    r.register("r_fov", 75.0, min=30.0, max=120.0)
    r.register("lines", 10, min=1, max=100)
    for name, text in (
        ("r_fov", "29.9"),
        ("r_fov", "120.5"),
        ("r_fov", "1e400"),
        ("lines", "0"),
        ("lines", "101"),
    ):
        with pytest.raises(InvalidValue):
            r.set_from_string(name, text)
    assert (r.get_as_string("r_fov"), r.get_as_string("lines")) == ("75.0", "10")
    r.set_from_string("r_fov", "120")
    r.set_from_string("lines", "1")
    assert (r.get_as_string("r_fov"), r.get_as_string("lines")) == ("120.0", "1")


@pytest.mark.spec("CV-GET-CANONICAL")
def test_get_as_string_is_format_value_of_current_value() -> None:
    r = CVarRegistry()
    r.register("f", 75.0)
    r.register("i", 90)
    r.register("b", True)
    r.register("s", "x")
    r.set_from_string("f", "90")
    r.set_from_string("i", "0090")
    assert r.get_as_string("f") == format_value(90.0) == "90.0"
    assert r.get_as_string("i") == format_value(90) == "90"
    assert r.get_as_string("b") == format_value(True) == "true"
    assert r.get_as_string("s") == format_value("x") == "x"


@pytest.mark.spec("CV-FORMAT-FLOAT")
def test_format_float_shortest_round_trip_keeping_point_zero() -> None:
    assert format_value(75.0) == "75.0"
    assert format_value(90.0) == "90.0"
    assert format_value(0.1) == "0.1"
    assert format_value(-2.5) == "-2.5"
    assert format_value(1 / 3) == "0.3333333333333333"
    for x in (0.1, 1 / 3, 2.675, 1e-7, 123456.789):
        assert float(format_value(x)) == x


@pytest.mark.spec("CV-FORMAT-INT")
def test_format_int_plain_decimal() -> None:
    assert format_value(90) == "90"
    assert format_value(-7) == "-7"
    assert format_value(0) == "0"
    assert format_value(1234567) == "1234567"


@pytest.mark.spec("CV-FORMAT-BOOL")
def test_format_bool_true_false() -> None:
    assert format_value(True) == "true"
    assert format_value(False) == "false"


@pytest.mark.spec("CV-FORMAT-STR")
def test_format_string_as_is() -> None:
    for s in ("", " padded ", "75.0", "true", "ünïcode"):
        assert format_value(s) == s


@pytest.mark.spec("CV-EVENT-RECORD")
def test_each_changing_set_records_one_event_unchanged_text_none() -> None:
    a = TrackingAllocator("events")
    r = CVarRegistry()
    r.register("r_fov", 75.0)
    r.set_from_string("r_fov", "90")
    r.set_from_string("r_fov", "90.0")  # same canonical text: no event
    r.set_from_string("r_fov", "9e1")
    assert take(r, a) == [(b"r_fov", b"75.0", b"90.0", b"")]
    with pytest.raises(InvalidValue):
        r.set_from_string("r_fov", "x")
    assert take(r, a) == []
    assert a.live() == []


@pytest.mark.spec("CV-EVENT-HANDLER-CAPTURED")
def test_event_carries_handler_at_change_time() -> None:
    a = TrackingAllocator("events")
    r = CVarRegistry()
    r.register("r_fov", 75.0, on_change_lua="First")
    r.set_from_string("r_fov", "80")
    r.set_lua_handler("r_fov", "Second")
    r.set_from_string("r_fov", "85")
    r.set_lua_handler("r_fov", "")
    r.set_from_string("r_fov", "90")
    r.set_lua_handler("r_fov", "Third")
    assert [e[3] for e in take(r, a)] == [b"First", b"Second", b""]
    assert a.live() == []


@pytest.mark.spec("CV-TAKE-ORDER", "MEM-CVAR-EVENTS")
def test_take_returns_all_events_in_change_order_and_clears() -> None:
    a = TrackingAllocator("events")
    r = CVarRegistry()
    r.register("a", 1)
    r.register("b", False)
    r.set_from_string("a", "2")
    r.set_from_string("b", "true")
    r.set_from_string("a", "3")
    events = r.take_pending_changes(a)
    assert all(isinstance(e, CVarChangeEvent) for e in events)
    assert [fields(e) for e in events] == [
        (b"a", b"1", b"2", b""),
        (b"b", b"false", b"true", b""),
        (b"a", b"2", b"3", b""),
    ]
    assert len(a.live()) == 12
    for event in events:
        free_event(a, event)
    assert r.take_pending_changes(a) == []
    assert a.live() == []


@pytest.mark.spec("CV-TAKE-OOM")
@pytest.mark.parametrize("failing", range(1, 9))
def test_take_allocation_failure_frees_and_keeps_events_pending(failing: int) -> None:
    a = TrackingAllocator("events")
    r = CVarRegistry()
    r.register("a", 1, on_change_lua="H")
    r.set_from_string("a", "2")
    r.set_from_string("a", "3")
    a.fail_at(failing)
    with pytest.raises(OutOfMemory):
        r.take_pending_changes(a)
    assert a.live() == []
    assert take(r, a) == [(b"a", b"1", b"2", b"H"), (b"a", b"2", b"3", b"H")]
    assert a.live() == []


@pytest.mark.spec("CV-HANDLER-GET")
def test_get_lua_handler_returns_last_set_or_empty() -> None:
    r = CVarRegistry()
    r.register("plain", 1)
    r.register("hooked", 1, on_change_lua="FromRegister")
    assert r.get_lua_handler("plain") == ""
    assert r.get_lua_handler("hooked") == "FromRegister"
    r.set_lua_handler("plain", "A")
    r.set_lua_handler("plain", "B")
    assert r.get_lua_handler("plain") == "B"
