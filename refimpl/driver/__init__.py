"""The reference driver: the refimpl served over the driver protocol (spec/driver-protocol.md).

``python -m refimpl.driver`` reads requests from standard input and writes answers to standard
output, one JSON object per line. A port's author copies this package's shape.
"""

from refimpl.driver.wire import PROTOCOL_VERSION, Json, JsonObject, ProtocolCode

__all__ = ["PROTOCOL_VERSION", "Json", "JsonObject", "ProtocolCode"]
