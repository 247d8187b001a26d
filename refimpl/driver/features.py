"""The features of driver protocol 2: what a driver declares in ``hello`` and what each feature
brings (DRV-FEATURES, DRV-OPS).

A feature names operations, optional arguments of an operation, and result fields. A case
declares the features it needs (``@case(..., features=...)``); the suite runs it only against a
driver that declares them all, refuses a call the case did not declare, and hides result fields
of undeclared features from the case, so a case cannot depend on what it did not declare.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

CORE = "core"


@dataclass(frozen=True)
class Feature:
    """One feature: its operations, the optional arguments it adds to operations of other
    features (``op -> args``), and the result fields it adds (``op -> fields``)."""

    name: str
    ops: tuple[str, ...] = ()
    args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    brings: str = ""


_ENGINE_OPS = (
    "engine.new",
    "engine.enqueue",
    "engine.completions",
    "engine.wait_idle",
    "engine.update",
    "engine.execute",
    "engine.cvar_register",
    "engine.cvar_set",
    "engine.cvar_get",
    "engine.cvar_set_handler",
    "engine.cvar_get_handler",
    "engine.cvar_take",
    "engine.close",
    "lua.execute",
    "lua.call_handler",
)

FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature(
            CORE,
            ops=(
                "hello",
                "await",
                "logs.take",
                "allocator.new",
                "allocator.alloc",
                "allocator.free",
                "buffer.read",
                "ledger",
            ),
            brings="always provided: the handshake, await, logs and the allocator ledger",
        ),
        Feature("allocator.fail_at", ops=("allocator.fail_at",), brings="injected failures"),
        Feature(
            "queue",
            ops=(
                "queue.new",
                "queue.push",
                "queue.try_pop",
                "queue.pop",
                "queue.deinit",
                "queue.stats",
            ),
            fields={"queue.stats": ("len", "capacity")},
            brings="the ActionQueue",
        ),
        Feature(
            "queue.timeout",
            args={"queue.push": ("timeout_ms",), "queue.pop": ("timeout_ms",)},
            brings="timeouts on push and pop",
        ),
        Feature(
            "queue.counters",
            fields={"queue.stats": ("pop_waiters", "push_waiters", "high_water", "full_count")},
            brings="the queue's waiter counts, high-water mark and full count",
        ),
        Feature(
            "pool",
            ops=(
                "pool.new",
                "pool.acquire",
                "pool.try_acquire",
                "pool.release",
                "pool.deinit",
                "pool.stats",
            ),
            fields={"pool.stats": ("available", "capacity", "created", "destroyed")},
            brings="the StatePool over opaque resources",
        ),
        Feature("pool.timeout", args={"pool.acquire": ("timeout_ms",)}, brings="acquire(timeout)"),
        Feature("pool.counters", fields={"pool.stats": ("waiters",)}, brings="the waiter count"),
        Feature(
            "pool.fail_create",
            args={"pool.new": ("fail_create_at",)},
            brings="a create_fn that fails on request",
        ),
        Feature(
            "messages",
            ops=("msg.encode_cvar_lua", "msg.parse_cvar_lua", "msg.is_error_result"),
            brings="the message formats",
        ),
        Feature(
            "engine",
            ops=_ENGINE_OPS,
            brings="runner, dispatcher, registry, bindings and Lua helpers, wired",
        ),
        Feature("engine.stats", ops=("engine.stats",), brings="the runner's and system's counters"),
        Feature(
            "engine.lifecycle",
            ops=("engine.runner_deinit", "engine.threads_shutdown", "engine.system_deinit"),
            brings="each part's deinit alone",
        ),
        Feature("engine.limits", args={"engine.new": ("limits",)}, brings="Lua limits per engine"),
        Feature(
            "engine.callback_raises",
            args={"engine.enqueue": ("callback_raises",)},
            brings="an on_complete that fails",
        ),
        Feature("bindings.ecs", brings="the ecs Lua module"),
        Feature(
            "bindings.input",
            ops=("engine.input_set_key", "engine.input_set_mouse"),
            brings="the input Lua module and its host-side writes",
        ),
        Feature("sandbox", brings="every Lua state sandboxed as the SBX rules say"),
    )
}

ALL = frozenset(FEATURES)

# The fields of engine.stats' two parts, in the order the C ABI's struct has them (DRV-STATS).
RUNNER_STATS = ("enqueued", "ok", "errors", "cancelled", "dropped", "callback_errors")
SYSTEM_STATS = (
    "cvar_events",
    "cvar_actions",
    "cvar_dropped",
    "handlers_invoked",
    "handler_failures",
    "deferred",
    "malformed",
    "script_ok",
    "script_errors",
    "native_ignored",
)


_OP_FEATURE = {op: f.name for f in FEATURES.values() for op in f.ops}
_ARG_FEATURE = {(op, a): f.name for f in FEATURES.values() for op, a_ in f.args.items() for a in a_}
_FIELD_FEATURE = {
    (op, k): f.name for f in FEATURES.values() for op, ks in f.fields.items() for k in ks
}


def needed(op: str, args: Iterable[str]) -> set[str]:
    """The features a request needs: its operation's, and those of the optional arguments it
    carries. An operation of no feature needs ``{"unknown:<op>"}``, which no driver declares."""
    need = {_OP_FEATURE.get(op, f"unknown:{op}")}
    need |= {_ARG_FEATURE[(op, a)] for a in args if (op, a) in _ARG_FEATURE}
    return need


def visible_fields(op: str, result: dict[str, object], declared: frozenset[str]) -> set[str]:
    """The keys of ``result`` a case that declared ``declared`` may read: those of no feature
    (structure) and those of a declared one."""
    return {k for k in result if _FIELD_FEATURE.get((op, k), CORE) in declared | {CORE}}


def unknown(names: Iterable[str]) -> list[str]:
    return sorted(set(names) - ALL)
