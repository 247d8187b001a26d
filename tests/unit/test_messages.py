"""The bytes that cross the ActionQueue: CVarLua framing and ScriptResult text
(spec/message-formats.md)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.errors import MalformedMessage
from refimpl.messages import (
    encode_cvar_lua,
    is_error_result,
    parse_cvar_lua,
    parse_nul_separated,
    script_result_payload,
)

SEED_EXAMPLE = bytes.fromhex(
    "4F6E464F564368616E676564"  # OnFOVChanged
    "00"
    "725F666F76"  # r_fov
    "00"
    "37352E30"  # 75.0
    "00"
    "39302E30"  # 90.0
)

nul_free = st.binary(max_size=24).map(lambda b: b.replace(b"\x00", b""))


@pytest.mark.spec("MSG-CVARLUA-LAYOUT")
def test_cvarlua_is_four_fields_joined_by_three_single_nuls() -> None:
    message = encode_cvar_lua(b"H", b"n", b"o", b"v")
    assert message == b"H\x00n\x00o\x00v"
    assert message.count(b"\x00") == 3
    assert not message.endswith(b"\x00")
    assert len(message) == 4 + 3


@pytest.mark.spec("MSG-CVARLUA-EXAMPLE")
def test_seed_example_encodes_to_the_28_bytes_of_the_layout_table() -> None:
    message = encode_cvar_lua(b"OnFOVChanged", b"r_fov", b"75.0", b"90.0")
    assert len(SEED_EXAMPLE) == 28
    assert message == SEED_EXAMPLE
    assert [i for i, byte in enumerate(message) if byte == 0] == [12, 18, 23]


@pytest.mark.spec("MSG-CVARLUA-ENCODE")
def test_encode_returns_bytes_with_each_field_unchanged() -> None:
    fields = (b"On\xc3\xa9", b"name with space", b"\xff\x01", b"\t\n")
    message = encode_cvar_lua(*fields)
    assert type(message) is bytes
    assert message == b"\x00".join(fields)


@pytest.mark.spec("MSG-CVARLUA-ENCODE-NUL")
@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_encode_rejects_a_field_holding_nul_and_names_it(index: int) -> None:
    labels = ["handler", "name", "old", "new"]
    fields = [b"h", b"n", b"o", b"v"]
    fields[index] = b"bad\x00field"
    with pytest.raises(MalformedMessage, match=labels[index]):
        encode_cvar_lua(*fields)


@pytest.mark.spec("MSG-CVARLUA-EMPTY-FIELDS")
def test_empty_fields_are_framed_and_parsed_like_any_other() -> None:
    message = encode_cvar_lua(b"OnChange", b"", b"", b"")
    assert message == b"OnChange\x00\x00\x00"
    parsed = parse_cvar_lua(message)
    assert (parsed.handler, parsed.name, parsed.old, parsed.new) == (b"OnChange", b"", b"", b"")


@pytest.mark.spec("MSG-CVARLUA-EMPTY-FIELDS")
def test_all_empty_fields_are_still_three_nuls() -> None:
    message = encode_cvar_lua(b"", b"", b"", b"")
    assert message == b"\x00\x00\x00"
    parsed = parse_cvar_lua(message)
    assert (parsed.handler, parsed.name, parsed.old, parsed.new) == (b"", b"", b"", b"")


@pytest.mark.spec("MSG-PARSE-ALL-FIELDS")
@pytest.mark.parametrize(
    ("buffer", "fields"),
    [
        (b"", [b""]),
        (b"abc", [b"abc"]),
        (b"a\x00b", [b"a", b"b"]),
        (b"a\x00", [b"a", b""]),
        (b"\x00", [b"", b""]),
        (SEED_EXAMPLE, [b"OnFOVChanged", b"r_fov", b"75.0", b"90.0"]),
    ],
)
def test_parse_returns_k_plus_one_fields_including_the_last(
    buffer: bytes, fields: list[bytes]
) -> None:
    assert parse_nul_separated(buffer) == fields


@pytest.mark.spec("MSG-PARSE-CVARLUA")
def test_parse_cvar_lua_returns_the_four_fields() -> None:
    parsed = parse_cvar_lua(SEED_EXAMPLE)
    assert parsed.handler == b"OnFOVChanged"
    assert parsed.name == b"r_fov"
    assert parsed.old == b"75.0"
    assert parsed.new == b"90.0"


@pytest.mark.spec("MSG-PARSE-CVARLUA")
@pytest.mark.parametrize(
    "buffer",
    [b"", b"OnFOVChanged", b"h\x00n\x00o", b"h\x00n\x00o\x00v\x00", b"h\x00n\x00o\x00v\x00x"],
)
def test_parse_cvar_lua_rejects_any_other_field_count(buffer: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_cvar_lua(buffer)


@pytest.mark.spec("MSG-CVARLUA-ROUNDTRIP")
@given(nul_free, nul_free, nul_free, nul_free)
def test_parse_inverts_encode(handler: bytes, name: bytes, old: bytes, new: bytes) -> None:
    parsed = parse_cvar_lua(encode_cvar_lua(handler, name, old, new))
    assert (parsed.handler, parsed.name, parsed.old, parsed.new) == (handler, name, old, new)


@pytest.mark.spec("MSG-RESULT-OK")
def test_success_payload_is_exactly_ok() -> None:
    assert script_result_payload(True, b"OK") == b"OK"
    assert script_result_payload(True, b"") == bytes.fromhex("4F4B")


@pytest.mark.spec("MSG-RESULT-ERROR")
def test_failure_payload_is_error_colon_space_then_the_text_unchanged() -> None:
    text = b'[string "script"]:1: attempt to call a nil value \xff'
    payload = script_result_payload(False, text)
    assert payload[:7] == bytes.fromhex("4552524F523A20")
    assert payload == b"ERROR: " + text
    assert script_result_payload(False, b"attempt to call a nil value") == (
        b"ERROR: attempt to call a nil value"
    )


@pytest.mark.spec("MSG-RESULT-IS-ERROR")
@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"ERROR: attempt to call a nil value", True),
        (b"ERROR:", True),
        (b"ERROR:no space", True),
        (b"OK", False),
        (b"", False),
        (b"ERROR", False),
        (b"error: lower case", False),
        (b" ERROR: leading space", False),
    ],
)
def test_is_error_result_is_true_exactly_for_the_error_prefix(
    payload: bytes, expected: bool
) -> None:
    assert is_error_result(payload) is expected
