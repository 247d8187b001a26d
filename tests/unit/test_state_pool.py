"""StatePool: a fixed set of resources leased one holder at a time (spec/state-pool.md)."""

import threading

import pytest
from support import DEADLINE, Background, wait_until

from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.errors import (
    InvalidArgument,
    InvalidRelease,
    LeasesOutstanding,
    OutOfMemory,
    ShutDown,
    StatePoolExhausted,
)
from refimpl.state_pool import StatePool


class Resource:
    """A pooled resource that owns one buffer of the pool's allocator, like a Lua state."""

    def __init__(self, allocator: TrackingAllocator, serial: int) -> None:
        self.serial = serial
        self.memory: Buffer = allocator.alloc(16, tag=f"resource {serial}")
        self.holder: int | None = None


class Factory:
    """create_fn/destroy_fn pair that records every call; ``fail_on`` makes the n-th create
    raise."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.created: list[Resource] = []
        self.destroyed: list[Resource] = []
        self.fail_on = fail_on

    def create(self, allocator: TrackingAllocator) -> Resource:
        if self.fail_on is not None and len(self.created) + 1 == self.fail_on:
            raise RuntimeError("create failed")
        resource = Resource(allocator, len(self.created))
        self.created.append(resource)
        return resource

    def destroy(self, resource: Resource) -> None:
        self.destroyed.append(resource)
        resource.memory.allocator.free(resource.memory)


def make_pool(alloc: TrackingAllocator, capacity: int) -> tuple[StatePool[Resource], Factory]:
    factory = Factory()
    return StatePool(alloc, capacity, factory.create, factory.destroy), factory


@pytest.mark.spec("SP-INIT-CREATE")
def test_init_calls_create_fn_capacity_times_and_all_are_available() -> None:
    alloc = TrackingAllocator("pool")
    calls: list[TrackingAllocator] = []
    factory = Factory()

    def create(allocator: TrackingAllocator) -> Resource:
        calls.append(allocator)
        return factory.create(allocator)

    pool = StatePool(alloc, 3, create, factory.destroy)
    assert calls == [alloc, alloc, alloc]
    assert pool.available == 3
    leased = [pool.acquire(timeout=0) for _ in range(3)]
    assert {r.serial for r in leased} == {0, 1, 2}
    for resource in leased:
        pool.release(resource)
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SP-INIT-SLOTS")
def test_live_pool_holds_one_slot_table_buffer_freed_at_deinit() -> None:
    alloc = TrackingAllocator("pool")
    pool = StatePool(alloc, 2, lambda a: object(), lambda r: None)
    assert len(alloc.live()) == 1
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SP-INIT-FAIL")
@pytest.mark.parametrize("fail_on", [1, 2, 3])
def test_create_failure_destroys_what_was_created_and_reraises(fail_on: int) -> None:
    alloc = TrackingAllocator("pool")
    factory = Factory(fail_on=fail_on)
    with pytest.raises(RuntimeError, match="create failed"):
        StatePool(alloc, 3, factory.create, factory.destroy)
    assert len(factory.created) == fail_on - 1
    assert sorted(r.serial for r in factory.destroyed) == [r.serial for r in factory.created]
    assert alloc.live() == []


@pytest.mark.spec("SP-INIT-FAIL", "ERR-OOM")
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_allocation_failure_while_building_leaves_nothing_live(k: int) -> None:
    # Allocation 1 is the slot table, 2..4 the three resources' memory.
    alloc = TrackingAllocator("pool")
    factory = Factory()
    alloc.fail_at(k)
    with pytest.raises(OutOfMemory):
        StatePool(alloc, 3, factory.create, factory.destroy)
    assert len(factory.created) == max(k - 2, 0)
    assert factory.destroyed == factory.created
    assert alloc.live() == []


@pytest.mark.spec("SP-INIT-CAPACITY")
@pytest.mark.parametrize("capacity", [0, -3])
def test_capacity_below_one_raises_before_anything_is_made(capacity: int) -> None:
    alloc = TrackingAllocator("pool")
    factory = Factory()
    with pytest.raises(InvalidArgument):
        StatePool(alloc, capacity, factory.create, factory.destroy)
    assert factory.created == []
    assert alloc.live() == []
    assert alloc.allocations == 0


@pytest.mark.spec("SP-ACQUIRE-EXCLUSIVE")
def test_leased_resources_are_distinct() -> None:
    alloc = TrackingAllocator("pool")
    pool, _ = make_pool(alloc, 3)
    leased = [pool.acquire(), pool.acquire(), pool.try_acquire()]
    assert len({id(r) for r in leased}) == 3
    assert pool.try_acquire() is None
    for resource in leased:
        assert resource is not None
        pool.release(resource)
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SP-ACQUIRE-EXCLUSIVE")
@pytest.mark.timeout(20)
def test_no_resource_has_two_holders_under_contention() -> None:
    alloc = TrackingAllocator("pool")
    pool, _ = make_pool(alloc, 2)
    violations: list[int] = []

    def worker() -> None:
        me = threading.get_ident()
        for _ in range(300):
            resource = pool.acquire(timeout=DEADLINE)
            if resource.holder is not None:
                violations.append(resource.serial)
            resource.holder = me
            threading.Event().wait(0)  # let others run while held
            if resource.holder != me:
                violations.append(resource.serial)
            resource.holder = None
            pool.release(resource)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 2)
    assert violations == []
    assert pool.available == 2
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SP-ACQUIRE-BLOCKS")
@pytest.mark.timeout(10)
def test_acquire_blocks_until_a_resource_is_released() -> None:
    alloc = TrackingAllocator("pool")
    pool, _ = make_pool(alloc, 1)
    held = pool.acquire()
    waiter = Background(pool.acquire)
    wait_until(lambda: pool.acquire_waiters == 1)
    assert waiter.thread.is_alive()
    pool.release(held)
    waiter.join()
    assert waiter.done and waiter.error is None
    assert waiter.value is held
    pool.release(held)
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SP-ACQUIRE-TIMEOUT")
@pytest.mark.parametrize("timeout", [0.0, 0.02])
def test_acquire_with_timeout_raises_state_pool_exhausted(timeout: float) -> None:
    alloc = TrackingAllocator("pool")
    pool, _ = make_pool(alloc, 1)
    held = pool.acquire()
    with pytest.raises(StatePoolExhausted):
        pool.acquire(timeout=timeout)
    assert pool.acquire_waiters == 0
    assert pool.available == 0
    pool.release(held)
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SP-TRY-ACQUIRE")
def test_try_acquire_returns_none_when_none_free_and_a_resource_otherwise() -> None:
    alloc = TrackingAllocator("pool")
    pool, factory = make_pool(alloc, 1)
    first = pool.try_acquire()
    assert first is factory.created[0]
    assert pool.try_acquire() is None
    assert pool.acquire_waiters == 0
    pool.release(first)
    assert pool.try_acquire() is first
    pool.release(first)
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SP-AVAILABLE")
def test_available_counts_resources_not_leased() -> None:
    alloc = TrackingAllocator("pool")
    pool, _ = make_pool(alloc, 3)
    assert pool.available == 3
    a = pool.acquire()
    b = pool.try_acquire()
    assert b is not None
    assert pool.available == 1
    pool.release(a)
    assert pool.available == 2
    pool.release(b)
    assert pool.available == 3
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SP-WAITERS")
@pytest.mark.timeout(10)
def test_acquire_waiters_counts_threads_blocked_in_acquire() -> None:
    alloc = TrackingAllocator("pool")
    pool, _ = make_pool(alloc, 1)
    held = pool.acquire()
    assert pool.acquire_waiters == 0
    waiters = [Background(pool.acquire), Background(pool.acquire)]
    wait_until(lambda: pool.acquire_waiters == 2)
    pool.release(held)
    wait_until(lambda: pool.acquire_waiters == 1)
    pool.release(held)
    for waiter in waiters:
        waiter.join()
    assert pool.acquire_waiters == 0
    pool.release(held)
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SP-RELEASE")
@pytest.mark.timeout(10)
def test_release_makes_the_resource_available_and_wakes_one_waiter() -> None:
    alloc = TrackingAllocator("pool")
    pool, _ = make_pool(alloc, 1)
    held = pool.acquire()
    waiters = [Background(pool.acquire), Background(pool.acquire)]
    wait_until(lambda: pool.acquire_waiters == 2)
    pool.release(held)
    wait_until(lambda: sum(w.done for w in waiters) == 1)
    assert pool.acquire_waiters == 1
    woken = next(w for w in waiters if w.done)
    assert woken.value is held and pool.available == 0
    pool.release(held)
    for waiter in waiters:
        waiter.join()
    assert all(w.value is held for w in waiters)
    pool.release(held)
    assert pool.available == 1
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SP-RELEASE-FOREIGN")
def test_release_of_a_foreign_object_raises_invalid_release_and_changes_nothing() -> None:
    alloc = TrackingAllocator("pool")
    pool, _ = make_pool(alloc, 2)
    other_pool, _ = make_pool(alloc, 1)
    held = pool.acquire()
    stranger = other_pool.acquire()
    loose = Resource(alloc, 99)
    for foreign in (loose, stranger):
        with pytest.raises(InvalidRelease):
            pool.release(foreign)
    assert pool.available == 1 and pool.leased() == 1
    assert other_pool.available == 0
    alloc.free(loose.memory)
    pool.release(held)
    other_pool.release(stranger)
    pool.deinit()
    other_pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SP-RELEASE-TWICE")
def test_release_of_a_resource_not_leased_raises_invalid_release() -> None:
    alloc = TrackingAllocator("pool")
    pool, factory = make_pool(alloc, 2)
    held = pool.acquire()
    pool.release(held)
    with pytest.raises(InvalidRelease):
        pool.release(held)
    never_leased = next(r for r in factory.created if r is not held)
    with pytest.raises(InvalidRelease):
        pool.release(never_leased)
    assert pool.available == 2 and pool.leased() == 0
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SP-DEINIT-DESTROY")
def test_deinit_destroys_each_resource_once_and_frees_the_slot_table() -> None:
    alloc = TrackingAllocator("pool")
    pool, factory = make_pool(alloc, 3)
    resource = pool.acquire()
    pool.release(resource)
    pool.deinit()
    assert len(factory.destroyed) == 3
    assert {id(r) for r in factory.destroyed} == {id(r) for r in factory.created}
    assert alloc.live() == []


@pytest.mark.spec("SP-DEINIT-LEASED")
def test_deinit_with_a_lease_out_raises_leases_outstanding_and_changes_nothing() -> None:
    alloc = TrackingAllocator("pool")
    pool, factory = make_pool(alloc, 2)
    held = pool.acquire()
    live_before = alloc.live()
    with pytest.raises(LeasesOutstanding):
        pool.deinit()
    assert factory.destroyed == []
    assert alloc.live() == live_before
    assert pool.available == 1
    other = pool.try_acquire()
    assert other is not None
    pool.release(other)
    pool.release(held)
    pool.deinit()
    assert len(factory.destroyed) == 2
    assert alloc.live() == []


@pytest.mark.spec("SP-AFTER-DEINIT")
def test_calls_after_deinit_raise_shut_down_and_a_second_deinit_does_nothing() -> None:
    alloc = TrackingAllocator("pool")
    pool, factory = make_pool(alloc, 1)
    resource = factory.created[0]
    pool.deinit()
    with pytest.raises(ShutDown):
        pool.acquire()
    with pytest.raises(ShutDown):
        pool.acquire(timeout=0)
    with pytest.raises(ShutDown):
        pool.try_acquire()
    with pytest.raises(ShutDown):
        pool.release(resource)
    pool.deinit()
    assert len(factory.destroyed) == 1
    assert alloc.live() == []
