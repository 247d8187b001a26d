"""Throughput of the fast queue checker on linearizable histories.

Usage: ``python tools/bench_checker.py [--sizes 10000 100000 1000000] [--search-budget S]``.
Each history comes from :func:`refimpl.conformance.simulate.queue_history` (4 threads, capacity
8, so calls overlap as they would with 4 real threads, with ``QueueFull``, empty answers and
calls left pending at the end); the times printed (wall clock and CPU) are
:func:`refimpl.conformance.checker.check_queue` alone, not the generation. The verdict's reason
counts the local repairs the just-in-time linearization needed.
"""

from __future__ import annotations

import argparse
import random
import time

from refimpl.conformance.checker import check_queue
from refimpl.conformance.simulate import queue_history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--search-budget", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"{'ops':>10} {'seconds':>9} {'cpu s':>7} {'ops/s':>10}  verdict")
    for size in args.sizes:
        history = queue_history(random.Random(args.seed), size, args.capacity, args.threads)
        start, cpu = time.perf_counter(), time.process_time()
        result = check_queue(history, args.capacity, search_budget_s=args.search_budget)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        rate = size / elapsed
        verdict = f"{result.verdict.value}: {result.reason}"
        print(f"{size:>10} {elapsed:>9.2f} {cpu:>7.2f} {rate:>10.0f}  {verdict}")


if __name__ == "__main__":
    main()
