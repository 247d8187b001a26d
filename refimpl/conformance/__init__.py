"""Conformance tooling: recorded histories of concurrent calls and their checkers."""
