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


@pytest.mark.spec("MEM-LEDGER-DOUBLE-FREE")
def test_double_free_raises_and_names_the_buffer() -> None:
    a = TrackingAllocator("a")
    buf = a.dupe(b"x", tag="payload")
    a.free(buf)
    with pytest.raises(DoubleFree, match="payload") as info:
        a.free(buf)
    assert info.value.code is ErrorCode.DOUBLE_FREE


@pytest.mark.spec("MEM-LEDGER-WRONG-ALLOCATOR")
def test_free_through_another_allocator_raises_and_keeps_the_buffer_live() -> None:
    a, b = TrackingAllocator("a"), TrackingAllocator("b")
    buf = a.dupe(b"x")
    with pytest.raises(WrongAllocator):
        b.free(buf)
    assert a.live() == [buf]
    a.free(buf)


@pytest.mark.spec("MEM-LEDGER-USE-AFTER-FREE")
def test_read_after_free_raises() -> None:
    a = TrackingAllocator("a")
    buf = a.dupe(b"abc")
    assert bytes(buf) == b"abc" and len(buf) == 3
    assert (buf[0], buf[2]) == (ord("a"), ord("c"))
    a.free(buf)
    with pytest.raises(UseAfterFree):
        bytes(buf)
    with pytest.raises(UseAfterFree):
        len(buf)
    with pytest.raises(UseAfterFree):
        buf[0]


@pytest.mark.spec("MEM-ZERO-LENGTH")
def test_zero_length_buffers_are_allocations_too() -> None:
    a = TrackingAllocator("a")
    empty = a.alloc(0)
    also_empty = a.dupe(b"")
    assert a.live() == [empty, also_empty]
    a.free(empty)
    a.free(also_empty)
    assert a.live() == []


@pytest.mark.spec("MEM-FAIL-AT")
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


@pytest.mark.spec("MEM-FAIL-AT")
def test_fail_at_one_fails_the_very_next_allocation_only() -> None:
    a = TrackingAllocator("a")
    a.fail_at(1)
    with pytest.raises(OutOfMemory) as info:
        a.dupe(b"x")
    assert info.value.code is ErrorCode.OUT_OF_MEMORY
    assert a.live() == []
    after = a.dupe(b"y")
    assert a.live() == [after]
    a.free(after)
    assert a.live() == []


@pytest.mark.spec("MEM-LEDGER-LIVE")
def test_live_belongs_to_one_allocator() -> None:
    a, b = TrackingAllocator("a"), TrackingAllocator("b")
    mine = a.dupe(b"mine")
    theirs = b.alloc(2)
    assert a.live() == [mine]
    assert b.live() == [theirs]
    a.free(mine)
    b.free(theirs)
    assert a.live() == [] and b.live() == []


@pytest.mark.spec("MEM-LEDGER-DOUBLE-FREE")
def test_double_free_of_a_zero_length_buffer_raises() -> None:
    a = TrackingAllocator("a")
    empty = a.alloc(0)
    a.free(empty)
    with pytest.raises(DoubleFree):
        a.free(empty)
    assert a.live() == []


@pytest.mark.spec("MEM-LEDGER-WRONG-ALLOCATOR")
def test_wrong_allocator_free_does_not_count_as_a_free() -> None:
    a, b = TrackingAllocator("a"), TrackingAllocator("b")
    buf = a.dupe(b"x")
    with pytest.raises(WrongAllocator) as info:
        b.free(buf)
    assert info.value.code is ErrorCode.WRONG_ALLOCATOR
    assert bytes(buf) == b"x"
    a.free(buf)  # the right free still succeeds once: it was not consumed
    assert a.live() == [] and b.live() == []
