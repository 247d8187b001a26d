"""The driver protocol's data layer (spec/driver-protocol.md): JSON values, bytes on the wire,
request validation and the protocol's own error codes (DRV-JSONL, DRV-BYTES, DRV-REQUEST,
DRV-CODES)."""

from __future__ import annotations

import base64
import binascii
import enum
import json
from dataclasses import dataclass

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]
JsonObject = dict[str, Json]

PROTOCOL_VERSION = 2


class ProtocolCode(enum.Enum):
    """Error codes of the protocol itself, next to the spec's error table (DRV-CODES)."""

    BAD_REQUEST = "BadRequest"
    UNKNOWN_OP = "UnknownOp"
    UNKNOWN_HANDLE = "UnknownHandle"
    UNKNOWN_ID = "UnknownId"
    INVALID_ARGUMENT = "InvalidArgument"
    INTERNAL = "Internal"


class ProtocolError(Exception):
    """A request the driver cannot serve; answered with ``code``, never raised further."""

    def __init__(self, code: ProtocolCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def encode_bytes(data: bytes) -> JsonObject:
    """Bytes on the wire: ``{"b64": "<standard base64>"}`` (DRV-BYTES)."""
    return {"b64": base64.b64encode(data).decode("ascii")}


def decode_bytes(value: Json, what: str) -> bytes:
    """The inverse of :func:`encode_bytes`; a plain JSON string is taken as UTF-8 text."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"{what}: bad base64") from exc
    raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"{what}: expected bytes")


@dataclass(frozen=True)
class Request:
    """One validated request line (DRV-REQUEST)."""

    id: int | str
    thread: str
    op: str
    args: JsonObject
    wait_ms: int | None


def parse_request(line: str) -> Request:
    """Validate one line. Raises :class:`ProtocolError`; ``request_id`` of the error is the
    line's ``id`` when one could be read (see :func:`request_id`)."""
    try:
        value: Json = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(ProtocolCode.BAD_REQUEST, f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ProtocolError(ProtocolCode.BAD_REQUEST, "a request is a JSON object")
    rid = value.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int | str):
        raise ProtocolError(ProtocolCode.BAD_REQUEST, "id must be an integer or a string")
    thread = value.get("thread", "main")
    op = value.get("op")
    args = value.get("args", {})
    wait_ms = value.get("wait_ms")
    if not isinstance(thread, str) or not thread:
        raise ProtocolError(ProtocolCode.BAD_REQUEST, "thread must be a non-empty string")
    if not isinstance(op, str):
        raise ProtocolError(ProtocolCode.BAD_REQUEST, "op must be a string")
    if not isinstance(args, dict):
        raise ProtocolError(ProtocolCode.BAD_REQUEST, "args must be an object")
    if wait_ms is not None and (
        isinstance(wait_ms, bool) or not isinstance(wait_ms, int) or wait_ms < 0
    ):
        raise ProtocolError(ProtocolCode.BAD_REQUEST, "wait_ms must be a non-negative integer")
    return Request(rid, thread, op, args, wait_ms)


def request_id(line: str) -> int | str | None:
    """The ``id`` of a line that failed validation, if it has a usable one (DRV-BAD-REQUEST)."""
    try:
        value: Json = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    if isinstance(value, dict):
        rid = value.get("id")
        if isinstance(rid, int | str) and not isinstance(rid, bool):
            return rid
    return None


def ok(rid: int | str | None, result: Json) -> JsonObject:
    return {"id": rid, "status": "ok", "result": result}


def error(rid: int | str | None, code: str, detail: str = "") -> JsonObject:
    answer: JsonObject = {"id": rid, "status": "error", "code": code}
    if detail:
        answer["detail"] = detail
    return answer


def pending(rid: int | str) -> JsonObject:
    return {"id": rid, "status": "pending"}


def dumps(answer: JsonObject) -> str:
    """One response line: compact JSON, ASCII only, no embedded newline (DRV-JSONL)."""
    return json.dumps(answer, ensure_ascii=True, separators=(",", ":"))
