"""The seed's "Message Formats" section: CVarLua framing and ScriptResult text.

CVarLua is ``handler NUL name NUL old NUL new``: exactly three NUL bytes, four fields, no
trailing NUL (D3, D4). ScriptResult is ``OK`` or ``ERROR: `` followed by the Lua error text (D5),
cut to ``MAX_RESULT_TEXT`` bytes with a marker (HOS-RESULT-BOUNDED).
Everything here is bytes: Lua strings are byte strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from refimpl.errors import MalformedMessage

NUL = b"\x00"
CVARLUA_FIELDS = 4
OK = b"OK"
ERROR_PREFIX = b"ERROR: "
# The most error text a ScriptResult (or a logged handler error) carries: a queue of 256 results
# then holds at most 16 MiB, whatever the scripts raised.
MAX_RESULT_TEXT = 64 * 1024


@dataclass(frozen=True)
class CVarLuaMessage:
    """A parsed CVarLua payload: the handler to call and its three arguments."""

    handler: bytes
    name: bytes
    old: bytes
    new: bytes


def encode_cvar_lua(handler: bytes, name: bytes, old: bytes, new: bytes) -> bytes:
    """Frame the four fields; a field holding NUL cannot be framed and raises
    :class:`MalformedMessage` naming the field (MSG-CVARLUA-LAYOUT, MSG-CVARLUA-EXAMPLE,
    MSG-CVARLUA-ENCODE, MSG-CVARLUA-ENCODE-NUL, MSG-CVARLUA-EMPTY-FIELDS, MSG-CVARLUA-ROUNDTRIP)."""
    fields = (handler, name, old, new)
    for label, value in zip(("handler", "name", "old", "new"), fields, strict=True):
        if NUL in value:
            raise MalformedMessage(f"CVarLua {label} field contains NUL: {value!r}")
    return NUL.join(fields)


def parse_nul_separated(buffer: bytes) -> list[bytes]:
    """Split at every NUL, keeping the final field (MSG-PARSE-ALL-FIELDS, D3)."""
    return buffer.split(NUL)


def parse_cvar_lua(buffer: bytes) -> CVarLuaMessage:
    """Parse a CVarLua payload; any field count but four raises :class:`MalformedMessage`
    (MSG-PARSE-CVARLUA, MSG-CVARLUA-EMPTY-FIELDS, MSG-CVARLUA-ROUNDTRIP)."""
    parts = parse_nul_separated(buffer)
    if len(parts) != CVARLUA_FIELDS:
        raise MalformedMessage(f"CVarLua message has {len(parts)} fields, expected 4")
    handler, name, old, new = parts
    return CVarLuaMessage(handler, name, old, new)


def bounded_text(text: bytes, limit: int = MAX_RESULT_TEXT) -> bytes:
    """``text`` when it has at most ``limit`` bytes, else its first ``limit`` bytes followed by
    ``... [truncated: N bytes in all]`` (HOS-RESULT-BOUNDED)."""
    if len(text) <= limit:
        return text
    return text[:limit] + b"... [truncated: %d bytes in all]" % len(text)


def script_result_payload(success: bool, message: bytes) -> bytes:
    """``OK`` on success, else ``ERROR: `` + the Lua error text, bounded (MSG-RESULT-OK,
    MSG-RESULT-ERROR, HOS-RESULT-BOUNDED)."""
    return OK if success else ERROR_PREFIX + bounded_text(message)


def is_error_result(payload: bytes) -> bool:
    """The consumer's check from the seed's error-handling section (MSG-RESULT-IS-ERROR)."""
    return payload.startswith(b"ERROR:")
