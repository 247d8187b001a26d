"""Benchmarks of the reference implementation against its natural baselines (``make bench``)."""
