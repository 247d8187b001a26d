"""Fuzzing of the text parsers a user or a script can reach: the CVarLua parser, console command
lines and ``set_from_string``. Only ScriptingError subclasses may escape; nothing may hang."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refimpl.bindings import execute_console_command
from refimpl.cvar import CVarRegistry
from refimpl.errors import ScriptingError
from refimpl.messages import encode_cvar_lua, parse_cvar_lua

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ["i", "f", "b", "s", "nope", ""]


def _registry() -> CVarRegistry:
    registry = CVarRegistry()
    registry.register("i", 5, min=-100, max=100)
    registry.register("f", 75.0, min=10.0, max=170.0)
    registry.register("b", True)
    registry.register("s", "text", on_change_lua="OnS")
    return registry


# Text biased towards what the parsers care about: digits, signs, dots, exponents, NUL, spaces.
TEXT = st.one_of(
    st.text(),
    st.text(alphabet="0123456789+-.eEinfatrusl \t\x00"),
    st.sampled_from(["1e999", "-0", "nan", "inf", "1" * 5000, "0x10", "1_000", " 1", "٣"]),
)


@pytest.mark.spec("HOS-FUZZ-CVARLUA", "MSG-PARSE-CVARLUA")
@pytest.mark.timeout(120)
@FUZZ
@given(st.binary(max_size=200) | st.lists(st.binary(max_size=8), max_size=7).map(b"\x00".join))
def test_cvarlua_parser_raises_only_malformed_message(payload: bytes) -> None:
    try:
        message = parse_cvar_lua(payload)
    except ScriptingError:
        assert payload.count(b"\x00") != 3
        return
    assert payload.count(b"\x00") == 3
    parts = (message.handler, message.name, message.old, message.new)
    assert encode_cvar_lua(*parts) == payload


@pytest.mark.spec("HOS-FUZZ-CONSOLE", "LB-CONSOLE-EXECUTE")
@pytest.mark.timeout(120)
@FUZZ
@given(
    st.one_of(
        st.text(),
        st.tuples(
            st.sampled_from(["set", "get", "toggle", "reset", "SET", "exec", ""]),
            st.sampled_from(NAMES) | st.text(max_size=8),
            TEXT,
        ).map(" ".join),
    )
)
def test_console_commands_raise_only_scripting_errors(line: str) -> None:
    registry = _registry()
    try:
        result = execute_console_command(registry, line)
    except ScriptingError:
        return
    assert result is None or isinstance(result, str)


@pytest.mark.spec("HOS-FUZZ-SET-FROM-STRING", "CV-SET-PARSE", "CV-SET-RANGE")
@pytest.mark.timeout(120)
@FUZZ
@given(st.sampled_from(NAMES) | st.text(max_size=8), TEXT)
def test_set_from_string_raises_only_scripting_errors(name: str, value: str) -> None:
    registry = _registry()
    before = registry.get_as_string(name) if name in registry.names() else None
    try:
        registry.set_from_string(name, value)
    except ScriptingError:
        # A refused value changes nothing.
        assert before is None or registry.get_as_string(name) == before
        return
    # An accepted value reads back as its canonical text, and parses again to itself.
    text = registry.get_as_string(name)
    registry.set_from_string(name, text)
    assert registry.get_as_string(name) == text
