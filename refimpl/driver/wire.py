"""The driver protocol's data layer (spec/driver-protocol.md): JSON values, bytes on the wire,
request validation, the protocol's numeric bounds and its own error codes (DRV-JSONL,
DRV-BYTES, DRV-REQUEST, DRV-CODES, DRV-UTF8, DRV-NUMBERS)."""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
from dataclasses import dataclass

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]
JsonObject = dict[str, Json]
RequestId = int | str

PROTOCOL_VERSION = 2
MAX_INT = 2**53 - 1
"""The largest integer magnitude a request may carry (ids and integer arguments): what a JSON
number holds exactly in every language (DRV-NUMBERS)."""
MAX_MS = 86_400_000
"""The longest ``wait_ms`` or ``timeout_ms``: one day (DRV-NUMBERS)."""


class ProtocolCode(enum.Enum):
    """Error codes of the protocol itself, next to the spec's error table (DRV-CODES)."""

    BAD_REQUEST = "BadRequest"
    UNKNOWN_OP = "UnknownOp"
    UNKNOWN_HANDLE = "UnknownHandle"
    UNKNOWN_ID = "UnknownId"
    INVALID_ARGUMENT = "InvalidArgument"
    INTERNAL = "Internal"


class ProtocolError(Exception):
    """A request the driver cannot serve; answered with ``code``, never raised further.
    ``rid`` is the id to answer with when the request itself was unreadable."""

    def __init__(self, code: ProtocolCode, detail: str, rid: RequestId | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.rid = rid


def encode_bytes(data: bytes) -> JsonObject:
    """Bytes on the wire: ``{"b64": "<standard base64>"}`` (DRV-BYTES)."""
    return {"b64": base64.b64encode(data).decode("ascii")}


def decode_bytes(value: Json, what: str) -> bytes:
    """The inverse of :func:`encode_bytes`; a plain JSON string is taken as UTF-8 text (one
    that is not valid Unicode, such as a lone surrogate escape, is ``InvalidArgument``)."""
    if isinstance(value, str):
        try:
            return value.encode()
        except UnicodeEncodeError as exc:
            raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"{what}: not Unicode") from exc
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"{what}: bad base64") from exc
    raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"{what}: expected bytes")


def is_int(value: Json) -> bool:
    """A JSON integer within the protocol's bounds (DRV-NUMBERS); ``true`` is not one."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_INT


def is_number(value: Json) -> bool:
    """A finite JSON number within the protocol's bounds (DRV-NUMBERS)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return is_int(value)


def is_ms(value: Json) -> bool:
    """A valid ``wait_ms`` or ``timeout_ms``: an integer from 0 to :data:`MAX_MS`."""
    return isinstance(value, int) and is_int(value) and 0 <= value <= MAX_MS


@dataclass(frozen=True)
class Request:
    """One validated request line (DRV-REQUEST)."""

    id: RequestId
    thread: str
    op: str
    args: JsonObject
    wait_ms: int | None


def _refuse(token: str) -> Json:
    raise ValueError(f"{token} is not JSON")


def loads(line: bytes | str) -> Json:
    """One line as JSON: strict UTF-8 (DRV-UTF8) and strict JSON (no ``NaN``, no
    ``Infinity``). Raises :class:`ProtocolError` ``BadRequest``, never anything else."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
    except UnicodeDecodeError as exc:
        raise ProtocolError(ProtocolCode.BAD_REQUEST, f"not UTF-8: {exc.reason}") from exc
    try:
        value: Json = json.loads(text, parse_constant=_refuse)
    except (ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, digit limit
        raise ProtocolError(ProtocolCode.BAD_REQUEST, f"not JSON: {str(exc)[:200]}") from exc
    return value


def parse_request(line: bytes | str) -> Request:
    """Validate one line (DRV-REQUEST, DRV-BAD-REQUEST, DRV-NUMBERS). Raises
    :class:`ProtocolError` whose ``rid`` is the line's ``id`` when it has a usable one."""
    value = loads(line)
    if not isinstance(value, dict):
        raise ProtocolError(ProtocolCode.BAD_REQUEST, "a request is a JSON object")
    rid = value.get("id")
    if not (is_int(rid) or isinstance(rid, str)):
        raise ProtocolError(ProtocolCode.BAD_REQUEST, "id must be an integer or a string")
    assert isinstance(rid, int | str)
    thread = value.get("thread", "main")
    op = value.get("op")
    args = value.get("args", {})
    wait_ms = value.get("wait_ms")
    if not isinstance(thread, str) or not thread:
        raise ProtocolError(ProtocolCode.BAD_REQUEST, "thread must be a non-empty string", rid)
    if not isinstance(op, str):
        raise ProtocolError(ProtocolCode.BAD_REQUEST, "op must be a string", rid)
    if not isinstance(args, dict):
        raise ProtocolError(ProtocolCode.BAD_REQUEST, "args must be an object", rid)
    if wait_ms is not None and not is_ms(wait_ms):
        raise ProtocolError(
            ProtocolCode.BAD_REQUEST, f"wait_ms must be an integer from 0 to {MAX_MS}", rid
        )
    assert wait_ms is None or isinstance(wait_ms, int)
    return Request(rid, thread, op, args, wait_ms)


def ok(rid: RequestId | None, result: Json) -> JsonObject:
    return {"id": rid, "status": "ok", "result": result}


def error(rid: RequestId | None, code: str, detail: str = "") -> JsonObject:
    answer: JsonObject = {"id": rid, "status": "error", "code": code}
    if detail:
        answer["detail"] = detail
    return answer


def pending(rid: RequestId) -> JsonObject:
    return {"id": rid, "status": "pending"}


def dumps(answer: JsonObject) -> str:
    """One response line: compact JSON, ASCII only, no embedded newline (DRV-JSONL)."""
    return json.dumps(answer, ensure_ascii=True, separators=(",", ":"))
