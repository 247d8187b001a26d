"""The seed's "StatePool API" table: a fixed set of reusable resources (Lua states), leased.

One lock and one condition (``released``). ``acquire`` blocks until a lease is returned (D7);
any thread may lease (D12). The pool's allocator holds its slot table, as the seed's pool holds
its resource array, so the ledger shows the pool itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from refimpl.allocator import TrackingAllocator
from refimpl.errors import (
    InvalidArgument,
    InvalidRelease,
    LeasesOutstanding,
    ShutDown,
    StatePoolExhausted,
)
from refimpl.sync import THREADING, Sync, wait_for

log = logging.getLogger(__name__)

R = TypeVar("R")

# The seed's pool stores one pointer per resource.
SLOT_SIZE = 8


class StatePool(Generic[R]):
    """``capacity`` resources made by ``create_fn(allocator)`` at init, destroyed by
    ``destroy_fn`` at deinit; the slot table is one buffer of ``allocator`` while the pool lives.
    A capacity below 1 raises :class:`InvalidArgument` before anything is made; a failure while
    building destroys what was made and frees the slot table (SP-INIT-CREATE, SP-INIT-SLOTS,
    SP-INIT-FAIL, SP-INIT-CAPACITY, CMP-POOL-REUSE).

    ``available + leased() == capacity`` at every instant (SP-AVAILABLE).
    ``acquire_waiters`` counts threads parked in ``acquire`` (SP-WAITERS).
    Any thread may acquire and release (THR-POOL-ANY-THREAD).
    """

    def __init__(
        self,
        allocator: TrackingAllocator,
        capacity: int,
        create_fn: Callable[[TrackingAllocator], R],
        destroy_fn: Callable[[R], None],
        *,
        sync: Sync = THREADING,
    ) -> None:
        if capacity < 1:
            raise InvalidArgument(f"StatePool capacity must be >= 1, got {capacity}")
        self.allocator = allocator
        self.capacity = capacity
        self._destroy_fn = destroy_fn
        self._sync = sync
        self._mutex = sync.lock()
        self._released = sync.condition(self._mutex)
        self._slots = allocator.alloc(capacity * SLOT_SIZE, tag="StatePool slots")
        self._free: list[R] = []
        self._leased: dict[int, R] = {}
        self._closed = False
        self.acquire_waiters = 0
        try:
            for _ in range(capacity):
                self._free.append(create_fn(allocator))
        except BaseException:
            self._destroy_all()
            raise

    @property
    def available(self) -> int:
        """Resources free to lease now (the seed's ``available`` semaphore value; SP-AVAILABLE)."""
        with self._mutex:
            return len(self._free)

    def leased(self) -> int:
        """Resources currently leased."""
        with self._mutex:
            return len(self._leased)

    def acquire(self, timeout: float | None = None) -> R:
        """Lease a resource, waiting until one is released; with a ``timeout`` that expires,
        raise :class:`StatePoolExhausted`. A leased resource goes to no other lease until it is
        released (SP-ACQUIRE-BLOCKS, SP-ACQUIRE-TIMEOUT, SP-ACQUIRE-EXCLUSIVE, SP-WAITERS,
        THR-POOL-ANY-THREAD)."""
        with self._released:
            self._check_open()
            self.acquire_waiters += 1
            try:
                ready = wait_for(
                    self._sync, self._released, lambda: bool(self._free) or self._closed, timeout
                )
            finally:
                self.acquire_waiters -= 1
            self._check_open()
            if not ready:
                raise StatePoolExhausted(f"all {self.capacity} states in use for {timeout} s")
            return self._lease()

    def try_acquire(self) -> R | None:
        """Lease a resource if one is free now, else ``None`` (SP-TRY-ACQUIRE,
        SP-ACQUIRE-EXCLUSIVE)."""
        with self._mutex:
            self._check_open()
            return self._lease() if self._free else None

    def release(self, resource: R) -> None:
        """Return a leased resource and wake one waiter. A resource that is not leased from
        this pool (foreign, or released already) raises :class:`InvalidRelease` and changes
        nothing; after ``deinit`` it raises :class:`ShutDown` (SP-RELEASE, SP-RELEASE-FOREIGN,
        SP-RELEASE-TWICE, SP-AFTER-DEINIT, THR-POOL-ANY-THREAD)."""
        with self._released:
            self._check_open()
            if self._leased.pop(id(resource), None) is None:
                raise InvalidRelease(f"{resource!r} is not leased from this pool")
            self._free.append(resource)
            self._released.notify()

    def deinit(self) -> None:
        """Destroy every resource and free the slot table. With leases outstanding, raise
        :class:`LeasesOutstanding` and change nothing. Afterwards ``acquire``, ``try_acquire``
        and ``release`` raise :class:`ShutDown` and a second ``deinit`` does nothing
        (SP-DEINIT-DESTROY, SP-DEINIT-LEASED, SP-AFTER-DEINIT)."""
        with self._released:
            if self._closed:
                return
            if self._leased:
                raise LeasesOutstanding(
                    f"{len(self._leased)} of {self.capacity} states still leased"
                )
            self._closed = True
            self._released.notify_all()
        self._destroy_all()

    def _lease(self) -> R:
        resource = self._free.pop()
        self._leased[id(resource)] = resource
        return resource

    def _destroy_all(self) -> None:
        resources, self._free = self._free, []
        for resource in resources:
            self._destroy_fn(resource)
        self.allocator.free(self._slots)

    def _check_open(self) -> None:
        if self._closed:
            raise ShutDown("StatePool is deinitialised")
