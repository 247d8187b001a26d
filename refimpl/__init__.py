"""refimpl: the executable reference of the multi-threaded Lua scripting subsystem.

Every public name of the seed's tables, in Python spelling, importable from here
(CMP-PUBLIC-NAMES).
"""

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.bindings import BindingContext, create_lua_state, destroy_lua_state
from refimpl.cvar import CVarChangeEvent, CVarRegistry
from refimpl.ecs import World
from refimpl.engine import Engine
from refimpl.errors import (
    DoubleFree,
    ErrorCode,
    InvalidArgument,
    InvalidRelease,
    InvalidValue,
    LeasesOutstanding,
    LuaRuntimeError,
    MalformedMessage,
    OutOfMemory,
    QueueFull,
    ScriptingError,
    ShutDown,
    StatePoolExhausted,
    ThreadAffinityError,
    UnknownCVar,
    UseAfterFree,
    WrongAllocator,
)
from refimpl.input import InputState
from refimpl.lua import ExecuteResult, LuaLimits, LuaState, call_named_handler, execute_lua_buffer
from refimpl.script_runner import ScriptRunner
from refimpl.scripting_system import ScriptingSystem
from refimpl.state_pool import StatePool
from refimpl.thread_pool import ThreadPool

__all__ = [
    "Action",
    "ActionKind",
    "ActionQueue",
    "BindingContext",
    "Buffer",
    "CVarChangeEvent",
    "CVarRegistry",
    "DoubleFree",
    "Engine",
    "ErrorCode",
    "ExecuteResult",
    "InputState",
    "InvalidArgument",
    "InvalidRelease",
    "InvalidValue",
    "LeasesOutstanding",
    "LuaLimits",
    "LuaRuntimeError",
    "LuaState",
    "MalformedMessage",
    "OutOfMemory",
    "QueueFull",
    "ScriptRunner",
    "ScriptingError",
    "ScriptingSystem",
    "ShutDown",
    "StatePool",
    "StatePoolExhausted",
    "ThreadAffinityError",
    "ThreadPool",
    "TrackingAllocator",
    "UnknownCVar",
    "UseAfterFree",
    "World",
    "WrongAllocator",
    "call_named_handler",
    "create_lua_state",
    "destroy_lua_state",
    "execute_lua_buffer",
]
