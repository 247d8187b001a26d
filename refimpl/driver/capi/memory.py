"""The allocator vtable the harness hands a port: a ``TrackingAllocator`` over C memory
(DRV-CAPI-ALLOCATOR).

Every allocation is a :class:`CBuffer`: a ledger entry of the suite's own ``TrackingAllocator``
backed by ``malloc``'d memory the port reads and writes, so the ledger shows what the port
really holds (MEM-LEDGER-LIVE), ``fail_at`` makes the vtable's ``alloc`` return NULL
(MEM-FAIL-AT) and a bad free through the vtable is caught (MEM-LEDGER-WRONG-ALLOCATOR,
MEM-LEDGER-DOUBLE-FREE). A freed block stays allocated in a quarantine for a while, so a double
free is recognised as one and never frees a newer allocation at the same address; the quarantine
is bounded in blocks and in bytes, so the harness's own keeping does not count against a port's
memory bound (HOS-MEMORY-BOUND).

A misuse found inside a callback cannot be raised through C: it is logged and kept as a fault
of the calling thread, and :func:`checked` raises it as the answer of the C call during which
it happened.
"""

from __future__ import annotations

import collections
import ctypes
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.driver.capi.abi import ALLOC_FN, FREE_FN, OWNS_FN, AllocatorVTable, raise_for
from refimpl.errors import (
    DoubleFree,
    InvalidArgument,
    OutOfMemory,
    ScriptingError,
    WrongAllocator,
)

log = logging.getLogger("refimpl.driver.capi")

_LIBC = ctypes.CDLL(None)
_malloc = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t)(("malloc", _LIBC))
_free = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(("free", _LIBC))

QUARANTINE = 4096  # freed blocks kept allocated before they go back to malloc
QUARANTINE_BYTES = 4 * 1024 * 1024  # and at most this many bytes of them

_memory = threading.Lock()  # guards the address maps, and reads of C memory against its release
_live: dict[int, CBuffer] = {}
_quarantine: collections.OrderedDict[int, CBuffer] = collections.OrderedDict()
_quarantined_bytes = 0
_allocators: dict[int, CAllocator] = {}
_keys = itertools.count(1)
_faults_lock = threading.Lock()
_faults: dict[int, list[ScriptingError]] = {}


@dataclass(eq=False, repr=False)
class CBuffer(Buffer):
    """A ledger entry whose bytes live in C memory at ``address``; reading it reads them."""

    address: int = 0

    @property
    def size(self) -> int:
        return len(self._data)

    def __bytes__(self) -> bytes:
        with _memory:
            super().__bytes__()  # raises UseAfterFree once freed
            return ctypes.string_at(self.address, self.size)


class CAllocator(TrackingAllocator):
    """A ``TrackingAllocator`` whose buffers are C memory, with the vtable a port calls
    (DRV-CAPI-ALLOCATOR). ``vtable`` lives as long as the allocator: pass it by reference."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.key = next(_keys)
        _allocators[self.key] = self
        self.vtable = AllocatorVTable(self.key, _ALLOC, _FREE, _OWNS)

    def _new_buffer(self, serial: int, tag: str, data: bytes) -> Buffer:
        address = _malloc(max(len(data), 1))  # a zero-length allocation has its own address
        if not address:
            raise OutOfMemory(f"allocator {self.name!r}: malloc failed")
        ctypes.memmove(address, data, len(data))
        buf = CBuffer(self, serial, tag, threading.current_thread().name, data, address=address)
        with _memory:
            _live[address] = buf
        return buf

    def free(self, buf: Buffer) -> None:
        """Free as ``TrackingAllocator.free`` does, then quarantine the C memory."""
        super().free(buf)
        if isinstance(buf, CBuffer):
            _retire(buf)

    def owns(self, address: int | None, size: int) -> bool:
        """Whether ``address`` is a live allocation of ``size`` bytes of this allocator."""
        buf = buffer_at(address)
        return buf is not None and buf.allocator is self and buf.size == size


def buffer_at(address: int | None) -> CBuffer | None:
    """The live buffer at ``address``, of any allocator of the harness."""
    with _memory:
        return _live.get(address or 0)


def _retire(buf: CBuffer) -> None:
    global _quarantined_bytes
    with _memory:
        del _live[buf.address]
        _quarantine[buf.address] = buf
        _quarantined_bytes += buf.size
        while len(_quarantine) > QUARANTINE or _quarantined_bytes > QUARANTINE_BYTES:
            address, oldest = _quarantine.popitem(last=False)
            _quarantined_bytes -= oldest.size
            _free(address)


def checked(invoke: Callable[[], int]) -> None:
    """Run one C call on this thread; raise the first allocator misuse it made, else the error
    its code names (DRV-CAPI-ALLOCATOR, DRV-CAPI-CODES)."""
    ident = threading.get_ident()
    with _faults_lock:
        _faults[ident] = []
    try:
        code = invoke()
    finally:
        with _faults_lock:
            faults = _faults.pop(ident)
    if faults:
        raise faults[0]
    raise_for(code)


def _fault(error: ScriptingError) -> None:
    log.error("port misused an allocator: %s", error)
    with _faults_lock:
        pending = _faults.get(threading.get_ident())
        if pending is not None:
            pending.append(error)


def _allocator(ctx: int | None) -> CAllocator:
    allocator = _allocators.get(ctx or 0)
    if allocator is None:
        raise WrongAllocator(f"the port called an allocator the harness never gave (ctx {ctx})")
    return allocator


def _c_alloc(ctx: int | None, size: int) -> int | None:
    try:
        buf = _allocator(ctx).alloc(size, tag="allocated by the port")
    except OutOfMemory:
        return None
    except ScriptingError as exc:
        _fault(exc)
        return None
    assert isinstance(buf, CBuffer)
    return buf.address


def _c_free(ctx: int | None, address: int | None, size: int) -> None:
    try:
        allocator = _allocator(ctx)
        buf = buffer_at(address)
        if buf is None:
            with _memory:
                freed = _quarantine.get(address or 0)
            if freed is not None:
                raise DoubleFree(f"{freed.describe()} freed again by the port")
            raise WrongAllocator(
                f"the port freed {address}, which no allocator of the harness gave"
            )
        if buf.size != size:
            raise InvalidArgument(f"the port freed {buf.describe()} as {size} bytes")
        allocator.free(buf)
    except ScriptingError as exc:
        _fault(exc)


def _c_owns(ctx: int | None, address: int | None, size: int) -> bool:
    try:
        return _allocator(ctx).owns(address, size)
    except ScriptingError as exc:
        _fault(exc)
        return False


_ALLOC = ALLOC_FN(_c_alloc)
_FREE = FREE_FN(_c_free)
_OWNS = OWNS_FN(_c_owns)
