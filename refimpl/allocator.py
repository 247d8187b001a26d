"""The seed's allocators, modelled: an ownership ledger for every payload.

Python has no manual memory, so each "allocated with X, freed by Y" payload of the seed's
"Memory & Ownership Rules" table is a :class:`Buffer` of a :class:`TrackingAllocator`. The ledger
makes the seed's ownership bugs observable: a leak is a live buffer, a double free or a free
through the wrong allocator raises, and so does any read after free (MEM-LEDGER-DOUBLE-FREE,
MEM-LEDGER-WRONG-ALLOCATOR, MEM-LEDGER-USE-AFTER-FREE, MEM-LEDGER-LIVE, MEM-ZERO-LENGTH,
MEM-FAIL-AT).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

from refimpl.errors import DoubleFree, OutOfMemory, UseAfterFree, WrongAllocator


@dataclass(eq=False)
class Buffer:
    """One allocation: bytes plus the ledger entry that says who allocated and who freed it.

    ``bytes(buf)``, ``len(buf)`` and ``buf[i]`` read it; each raises :class:`UseAfterFree` once
    freed (MEM-LEDGER-USE-AFTER-FREE). Identity is the allocation: two buffers with equal bytes
    are different allocations.
    """

    allocator: TrackingAllocator
    serial: int
    tag: str
    allocated_on: str
    _data: bytes
    freed_on: str | None = field(default=None)

    @property
    def freed(self) -> bool:
        return self.freed_on is not None

    def __bytes__(self) -> bytes:
        if self.freed_on is not None:
            raise UseAfterFree(f"{self.describe()} read after free on {self.freed_on}")
        return self._data

    def __len__(self) -> int:
        return len(bytes(self))

    def __getitem__(self, index: int) -> int:
        return bytes(self)[index]

    def describe(self) -> str:
        """A one-line ledger entry, used in leak reports and error messages."""
        label = f" {self.tag!r}" if self.tag else ""
        return (
            f"{self.allocator.name}#{self.serial}{label} "
            f"({len(self._data)} bytes, allocated on {self.allocated_on})"
        )

    def __repr__(self) -> str:
        state = f"freed on {self.freed_on}" if self.freed_on else "live"
        return f"<Buffer {self.describe()}, {state}>"


class TrackingAllocator:
    """An allocator that keeps a ledger of live buffers and can fail on request.

    Thread-safe: workers and the main thread allocate and free through the same instance.
    Rules: MEM-LEDGER-LIVE, MEM-LEDGER-DOUBLE-FREE, MEM-LEDGER-WRONG-ALLOCATOR, MEM-ZERO-LENGTH,
    MEM-FAIL-AT, ERR-OOM.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._live: dict[int, Buffer] = {}
        self._serials = itertools.count(1)
        self._fail_countdown = 0
        self.allocations = 0
        self.frees = 0

    def alloc(self, n: int, *, tag: str = "") -> Buffer:
        """A zero-filled buffer of ``n`` bytes (``n`` may be 0: it is still an allocation).
        An allocation that fails raises :class:`OutOfMemory`, records nothing, and the same call
        succeeds again once allocation succeeds (MEM-ZERO-LENGTH, ERR-OOM, ERR-OOM-RECOVER)."""
        if n < 0:
            raise ValueError(f"cannot allocate {n} bytes")
        return self._allocate(bytes(n), tag)

    def dupe(self, data: bytes | bytearray | memoryview | str, *, tag: str = "") -> Buffer:
        """A new buffer holding a copy of ``data`` (``str`` is taken as UTF-8); fails like
        :meth:`alloc` (MEM-ZERO-LENGTH, ERR-OOM)."""
        raw = data.encode() if isinstance(data, str) else bytes(data)
        return self._allocate(raw, tag)

    def free(self, buf: Buffer) -> None:
        """Return ``buf``: exactly once (else :class:`DoubleFree`), through the allocator that
        made it (else :class:`WrongAllocator`, the buffer stays live) (MEM-LEDGER-DOUBLE-FREE,
        MEM-LEDGER-WRONG-ALLOCATOR)."""
        if buf.allocator is not self:
            raise WrongAllocator(f"{buf.describe()} freed through allocator {self.name!r}")
        with self._lock:
            if buf.freed_on is not None:
                raise DoubleFree(f"{buf.describe()} already freed on {buf.freed_on}")
            buf.freed_on = threading.current_thread().name
            del self._live[buf.serial]
            self.frees += 1

    def live(self) -> list[Buffer]:
        """Buffers allocated and not yet freed, oldest first: the leak report (MEM-LEDGER-LIVE)."""
        with self._lock:
            return list(self._live.values())

    def fail_at(self, k: int) -> None:
        """Make the k-th allocation from now (k >= 1) raise OutOfMemory and record nothing; the
        allocations before and after it succeed; 0 disarms (MEM-FAIL-AT)."""
        if k < 0:
            raise ValueError("fail_at takes k >= 1, or 0 to disarm")
        with self._lock:
            self._fail_countdown = k

    def _allocate(self, data: bytes, tag: str) -> Buffer:
        with self._lock:
            if self._fail_countdown:
                self._fail_countdown -= 1
                if self._fail_countdown == 0:
                    raise OutOfMemory(
                        f"allocator {self.name!r}: injected failure ({tag or 'untagged'})"
                    )
            buf = self._new_buffer(next(self._serials), tag, data)
            self._live[buf.serial] = buf
            self.allocations += 1
            return buf

    def _new_buffer(self, serial: int, tag: str, data: bytes) -> Buffer:
        """The ledger entry of one allocation, made under the ledger's lock; a subclass may back
        it with other memory (the C ABI driver backs it with C memory)."""
        return Buffer(self, serial, tag, threading.current_thread().name, data)

    def __repr__(self) -> str:
        return f"<TrackingAllocator {self.name!r}: {len(self._live)} live>"
