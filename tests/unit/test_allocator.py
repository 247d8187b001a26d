"""TrackingAllocator: the ownership ledger every other test leans on."""

import threading

import pytest

from refimpl.allocator import TrackingAllocator
from refimpl.errors import DoubleFree, ErrorCode, OutOfMemory, UseAfterFree, WrongAllocator


@pytest.mark.spec("MEM-LEDGER-LIVE")
def test_live_lists_unfreed_buffers_oldest_first() -> None:
    a = TrackingAllocator("a")
    first, second = a.dupe(b"one"), a.alloc(3)
    assert a.live() == [first, second]
    a.free(first)
    assert a.live() == [second]
    a.free(second)
    assert a.live() == []


@pytest.mark.spec("MEM-FREE-ONCE")
def test_double_free_raises_and_names_the_buffer() -> None:
    a = TrackingAllocator("a")
    buf = a.dupe(b"x", tag="payload")
    a.free(buf)
    with pytest.raises(DoubleFree, match="payload") as info:
        a.free(buf)
    assert info.value.code is ErrorCode.DOUBLE_FREE


@pytest.mark.spec("MEM-RIGHT-ALLOCATOR")
def test_free_through_another_allocator_raises_and_keeps_the_buffer_live() -> None:
    a, b = TrackingAllocator("a"), TrackingAllocator("b")
    buf = a.dupe(b"x")
    with pytest.raises(WrongAllocator):
        b.free(buf)
    assert a.live() == [buf]
    a.free(buf)


@pytest.mark.spec("MEM-USE-AFTER-FREE")
def test_read_after_free_raises() -> None:
    a = TrackingAllocator("a")
    buf = a.dupe(b"abc")
    assert bytes(buf) == b"abc" and len(buf) == 3
    a.free(buf)
    with pytest.raises(UseAfterFree):
        bytes(buf)
    with pytest.raises(UseAfterFree):
        len(buf)


@pytest.mark.spec("MEM-ZERO-LENGTH")
def test_zero_length_buffers_are_allocations_too() -> None:
    a = TrackingAllocator("a")
    empty = a.alloc(0)
    also_empty = a.dupe(b"")
    assert a.live() == [empty, also_empty]
    a.free(empty)
    a.free(also_empty)
    assert a.live() == []


@pytest.mark.spec("MEM-OOM-INJECT")
def test_fail_at_fails_exactly_the_kth_allocation() -> None:
    a = TrackingAllocator("a")
    a.fail_at(3)
    one, two = a.alloc(1), a.alloc(1)
    with pytest.raises(OutOfMemory):
        a.alloc(1)
    three = a.alloc(1)
    assert a.live() == [one, two, three]
    for buf in (one, two, three):
        a.free(buf)


@pytest.mark.spec("MEM-LEDGER-LIVE")
def test_ledger_is_exact_under_concurrent_allocation() -> None:
    a = TrackingAllocator("a")

    def churn() -> None:
        for i in range(2000):
            a.free(a.dupe(i.to_bytes(4, "little")))

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert a.live() == []
    assert a.allocations == a.frees == 8000
