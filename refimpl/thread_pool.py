"""The seed's ThreadPool, as far as the ScriptRunner needs it: a thin wrapper over
``concurrent.futures.ThreadPoolExecutor`` (SR-POOL-WORKERS, SR-POOL-SHUTDOWN)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, Protocol, TypeVar

from refimpl.errors import InvalidArgument, ShutDown

P = ParamSpec("P")
R = TypeVar("R")


class Executor(Protocol):
    """What the ScriptRunner needs from a thread pool (the deterministic scheduler's pool
    provides the same)."""

    num_workers: int

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...

    def owns_current_thread(self) -> bool: ...


class ThreadPool:
    """``num_workers`` worker threads; ``shutdown`` runs the queued work and waits for it."""

    def __init__(self, num_workers: int) -> None:
        if num_workers < 1:
            raise InvalidArgument(f"ThreadPool needs >= 1 worker, got {num_workers}")
        self.num_workers = num_workers
        self._worker_idents: set[int] = set()
        self._executor = ThreadPoolExecutor(
            max_workers=num_workers, thread_name_prefix="worker", initializer=self._register
        )

    def _register(self) -> None:
        self._worker_idents.add(threading.get_ident())

    def owns_current_thread(self) -> bool:
        """Whether the calling thread is one of this pool's workers (CMP-RUNNER-AFFINITY)."""
        return threading.get_ident() in self._worker_idents

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Run ``fn(*args)`` on one of at most ``num_workers`` worker threads, started in
        submission order; after ``shutdown`` raise :class:`ShutDown` (SR-POOL-WORKERS,
        SR-POOL-SHUTDOWN)."""
        try:
            return self._executor.submit(fn, *args, **kwargs)
        except RuntimeError as exc:
            raise ShutDown("ThreadPool is shut down") from exc

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting work and wait for every submitted item to finish (SR-POOL-SHUTDOWN);
        with ``wait=False``, return at once and let the workers finish on their own."""
        self._executor.shutdown(wait=wait)
