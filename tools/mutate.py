"""``make mutation``: the mutation score of the port-facing suite over ``refimpl/``, with mutmut.

For each module of ``[tool.mutmut] only_mutate`` (or those named), ``mutmut run
"refimpl.<module>.*"`` runs ``tests/conformance/mutation_suite.py`` (every conformance case, in
process) against each mutant, on one worker process. Then a sample of the module's mutants (every
``--sample``-th; every one with ``--driver-all``; none with ``--sample 0``) is run again through
``python -m refimpl.driver`` (``REFIMPL_MUTATION_DRIVER=1``). Each survivor is classified:
equivalent when it only changes text that no port can observe (the detail of an exception,
whose code alone crosses the protocol, or a log line the spec does not word) or when
:data:`ARGUED` holds an argument for it; otherwise it is a gap of the suite. The score is
killed / (mutants - equivalent). Writes ``build/mutation/results.json`` and
``build/mutation/report.md``; prints the table. Slow (minutes per module): not part of
``make check``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "mutation"
MUTMUT = [sys.executable, "-m", "mutmut"]
KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout"}
KILLED |= {255: "timeout", -11: "crashed", -9: "crashed", -6: "crashed"}
NOT_RUN = {0: "survived", 5: "no tests", 33: "no tests"}
OPERATORS = (ast.operator, ast.cmpop, ast.boolop, ast.unaryop)
# The refimpl's own helpers that only log their text argument, or only put it in an exception.
LOGGERS = {"_drop"}
TEXT_ONLY = {
    "_check_main": "the operation's name, which only the ThreadAffinityError text shows",
    "check_text": "the field's label, which only the exception's text shows",
    "_string": "the argument's label, which only the Lua error's text shows (LB-ARG-CHECK "
    "words only the function's name)",
}
WORDED = 10  # a log text is worded by the spec when a piece this long is in a quoted span
LOG_CALLS = {"debug", "info", "warning", "error", "exception"}

# Survivors argued by hand, keyed by (function, first line of the statement changed) for any
# mutation inside that statement, or by (function, statement, mutated code) for one mutation.
# EQUIVALENT: no port-facing behaviour changes, so the mutant leaves the count. EXPLAINED: the
# behaviour changes but no deterministic case can see it; the mutant stays counted, unkilled.
UNSEEN_COUNTER = "a counter of the refimpl's own that no protocol operation reports"
TRUTH_ONLY = "the flag is only ever tested for truth: None reads as False"
LEDGER_TAG = "a ledger tag: a label for leak reports that no protocol operation returns"
DESCRIPTION = "text for leak reports and error messages, in no protocol answer"
NO_SUCH_CALL = (
    "no protocol path makes this call with a count below 1: the driver answers k < 1 itself "
    "(InvalidArgument), copies bytes with dupe, and the pool and the state factory allocate "
    "8 x capacity and 64 bytes"
)
NOT_OK_OR_ERROR = "`_finish` counts every outcome but OK and ERROR as cancelled: None is one"
BYTES_ONLY = "unreachable through the protocol: scripts, names and preludes arrive as bytes"
SEALED = (
    "`_seal` does nothing on a sealed state, and every state the protocol builds is sealed by "
    "`load_prelude` before its first call"
)
UNSEALED_ROLE = "before the seal the kernel ignores the role (`enter` reads it only once sealed)"
BOTH_PATHS = (
    "both paths hand Lua the same values: they differ only in the memory the push needs, and "
    "where a port draws that line is implementation-defined (SBX-CROSSING-FITS)"
)
TIGHTER = (
    "a stricter fit: a value at the very edge of the cap goes the packed way or is refused, "
    "which SBX-CROSSING-FITS leaves to each implementation"
)
LOOSER = (
    "a margin of the fit shrunk by a few hundred bytes or a factor: only a push within those "
    "bytes of the cap could fail, and no request can place the heap in use to the byte"
)
DEPTH = (
    "the host's own depth bound, one off or gone: the sandbox's encoder refuses data deeper "
    "than MAX_DEPTH before the host decodes any, and the host encodes only data it decoded"
)
UNREACHED_TAG = "the sandbox's encoder writes only the tags decoded above"
SCALAR_KEY = "keys are never tables (the sandbox refuses them), so a key's depth is never read"
PACKED_SCALARS = "packed values are scalars or ready encodings, whose depth is never read"
HOST_ERROR = (
    "reached only when a binding raises something other than a ScriptingError, which no "
    "binding does on any protocol path (`lua_binding` turns every refusal into one)"
)
LABEL = "the name a crossing is made with shows only in the log line of a failing binding"
NO_PYTHON = (
    "a second line of defence: chunk environments are built from an allow-list, so the real "
    "global table where lupa puts `python` is reachable from no sandboxed code (SBX-NO-PYTHON "
    "holds on every state)"
)
CLOSE_TIMEOUT = (
    "only `Engine.close(timeout=)` reaches it, a Python surface the protocol does not have: "
    "`engine.close` and `engine.runner_deinit` take no timeout (ENG-CLOSE-TIMEOUT is not "
    "portable; the refimpl's own tests/hostile/test_hostile_driver.py checks it)"
)
CLI_HOOK = (
    "`on_script_result` is the hook of the refimpl's command line (ENG-CLI-EXEC, not "
    "portable): the protocol's engine.new passes none"
)
CREATOR = (
    "every state is built by engine.new on the thread that is the engine's main thread, so "
    "the default (the creating thread) is that thread"
)
EQUIVALENT_FUNCTIONS: dict[str, str] = {
    "_lua_type_name": "type names appear only in the text of an argument error (LB-ARG-CHECK "
    "words only the function's name)",
    "CVarRegistry.names": "no protocol operation lists the registry: a refimpl-only surface",
}
EQUIVALENT: dict[tuple[str, ...], str] = {
    ("Buffer.__repr__", "state = f'freed on {self.freed_on}' if self.freed_on else 'live'"): (
        DESCRIPTION
    ),
    ("Buffer.describe", "label = f' {self.tag!r}' if self.tag else ''"): DESCRIPTION,
    ("TrackingAllocator.__init__", "self.name = name"): DESCRIPTION,
    ("TrackingAllocator.__init__", "self.allocations = 0"): UNSEEN_COUNTER,
    ("TrackingAllocator.__init__", "self.frees = 0"): UNSEEN_COUNTER,
    ("TrackingAllocator._allocate", "self.allocations += 1"): UNSEEN_COUNTER,
    ("TrackingAllocator.free", "self.frees += 1"): UNSEEN_COUNTER,
    ("TrackingAllocator.__init__", "self._serials = itertools.count(1)"): (
        "serials only need to be distinct: where they start changes nothing"
    ),
    ("TrackingAllocator.__init__", "self._fail_countdown = 0"): TRUTH_ONLY,
    (
        "TrackingAllocator._allocate",
        "buf = self._new_buffer(next(self._serials), tag, data)",
        "None",
    ): (LEDGER_TAG),
    (
        "TrackingAllocator._new_buffer",
        "return Buffer(self, serial, tag, threading.current_thread().name, data)",
    ): "the tag and the allocating thread's name are " + DESCRIPTION,
    ("ScriptingSystem.__init__", "self._closed = False"): TRUTH_ONLY,
    (
        "CVarRegistry._check_bounds",
        "if isinstance(value, bool) or not isinstance(value, int | float):",
    ): (
        "only int and float CVars have bounds (register refuses them on the others, "
        "CV-REGISTER-TYPE), so a bool or str value reaches no comparison either way"
    ),
    (
        "_allocate_event",
        "for text, tag in ((change.name, 'event.name'), (change.old, 'event.old_value'), "
        "(change.new, 'event.new_value'), (change.on_change_lua, 'event.on_change_lua')):",
    ): LEDGER_TAG,
    ("LuaState._call_kernel", "return (False if name == b'run' else b'error', MEMORY_ERROR)"): (
        "for `run` the caller tests `ok is True`: False and b'error' both read as a failure"
    ),
    ("invoke_named_handler", "raw = [a.encode() if isinstance(a, str) else a for a in args]"): (
        "unreachable through the protocol: handler arguments arrive as bytes on every path"
    ),
    ("ScriptingSystem.deinit", "self._deferred = None"): (
        "after deinit the deferred slot is only read through a falsy test"
    ),
    ("TrackingAllocator.alloc", "return self._allocate(bytes(n), tag)", "None"): LEDGER_TAG,
    ("TrackingAllocator.dupe", "return self._allocate(raw, tag)", "None"): LEDGER_TAG,
    ("Buffer.__getitem__", "return bytes(self)[index]"): (
        "unreachable through the protocol: no operation indexes a buffer"
    ),
    ("TrackingAllocator.alloc", "if n < 0:"): NO_SUCH_CALL,
    ("TrackingAllocator.fail_at", "if k < 0:"): NO_SUCH_CALL,
    ("ActionQueue.__init__", "self._closed = False"): TRUTH_ONLY,
    ("StatePool.__init__", "self._closed = False"): TRUTH_ONLY,
    ("ActionQueue.__init__", "self.pushed = 0"): UNSEEN_COUNTER,
    ("ActionQueue.__init__", "self.popped = 0"): UNSEEN_COUNTER,
    ("ActionQueue.push", "self.pushed += 1"): UNSEEN_COUNTER,
    ("ActionQueue._take", "self.popped += 1"): UNSEEN_COUNTER,
    ("ActionQueue.push", "if len(self._actions) > self.high_water:"): (
        "at equality the mark is set to the value it already has"
    ),
    (
        "ActionQueue._wait_for_room",
        "if timeout is not None and timeout <= 0:",
        "timeout < 0",
    ): (
        "`< 0` sends timeout 0 into the wait, whose deadline has already passed: the push is "
        "rejected at once all the same (the boundary `<= 1` is not equivalent)"
    ),
    (
        "encode_cvar_lua",
        "for label, value in zip(('handler', 'name', 'old', 'new'), fields, strict=True):",
    ): (
        "the labels only name the field in the exception text, and `strict` cannot fire on "
        "two sequences of four"
    ),
    (
        "ScriptRunner._publish",
        "self.action_queue.push(Action(ActionKind.ScriptResult, message), timeout=0)",
    ): "`push` without a timeout is `push(timeout=0.0)`: its default is the same non-blocking push",
    ("ScriptRunner._run", "outcome = _Outcome.CANCELLED"): NOT_OK_OR_ERROR,
    ("ScriptRunner.deinit", "self._finish(item, _Outcome.CANCELLED)"): NOT_OK_OR_ERROR,
    ("ScriptRunner.__init__", "self._closed = False"): TRUTH_ONLY,
    ("ScriptingSystem.__init__", "self.on_script_result = on_script_result"): CLI_HOOK,
    ("ScriptingSystem._log_result", "self.on_script_result(payload)"): CLI_HOOK,
    ("ScriptingSystem._publish_cvar_event", "self._drop_cvar(name, exc)", "None"): (
        "the CVar's name goes only into the drop's log line, whose text the spec does not word "
        "(SS-EVENT-QUEUE-FULL and SS-EVENT-ENCODE-FAIL ask for a line, a free and a count)"
    ),
    ("ScriptRunner.deinit", "return self.wait_idle(timeout)"): CLOSE_TIMEOUT,
    (
        "ScriptRunner.enqueue_script",
        "item = _WorkItem(copy, on_complete, bytes(copy)[:PREVIEW_BYTES])",
    ): "the preview is read only to name a stuck script: " + CLOSE_TIMEOUT,
    # bindings
    (
        "create_lua_state",
        "L = state_type(limits, print_sink=lambda line: log.info('%s',"
        " line.decode(errors='replace')), main_thread=context.main_thread)",
        "None",
    ): CREATOR,
    (
        "create_lua_state",
        "L = state_type(limits, print_sink=lambda line: log.info('%s', line.decode("
        "errors='replace')), main_thread=context.main_thread)",
        "state_type(limits, print_sink=lambda line: log.info('%s', line.decode(errors='replace')))",
    ): CREATOR,
    (
        "create_lua_state",
        "L.load_prelude([s.encode() if isinstance(s, str) else s for s in prelude])",
    ): BYTES_ONLY,
    (
        "destroy_lua_state",
        "L.allocation = None",
    ): "a state is destroyed once: the field is never read again",
    # cvar
    (
        "CVarRegistry.register",
        "def xǁCVarRegistryǁregister__mutmut_orig(self, name: str, default: Value, *, "
        "min: float | None=None, max: float | None=None, on_change_lua: str='') -> None:",
    ): ("the driver passes on_change_lua on every register (empty when the request has none)"),
    # lua
    ("_decode", "if tag != _OPEN or depth >= MAX_DEPTH:"): DEPTH + "; " + UNREACHED_TAG,
    ("_decode", "key, pos = _decode(buf, pos, depth + 1)"): SCALAR_KEY + "; " + DEPTH,
    ("_decode", "value, pos = _decode(buf, pos, depth + 1)"): DEPTH,
    ("_encode", "if isinstance(value, dict) and depth < MAX_DEPTH:"): DEPTH,
    ("_encode", "_encode(k, depth + 1, out)"): SCALAR_KEY,
    ("_encode", "_encode(v, depth + 1, out)"): DEPTH,
    ("decode_data", "data, _ = _decode(encoded, 0, 0)"): DEPTH,
    ("encode_data", "_encode(data, 0, out)"): DEPTH,
    ("pack_values", "_encode(value, 0, out)"): PACKED_SCALARS,
    ("pack_values", "return packed.ljust(PACKED_MIN, b'\\x00')"): (
        "the sandbox reads the count and the values and never the padding"
    ),
    ("_encode", "out.append(b'n')"): (
        "nil is packed only beside a table or a string result, and no binding returns one so"
    ),
    ("_encode", "raw = value.encode() if isinstance(value, str) else value"): (
        "component strings arrive from Lua as bytes: a Python str reaches here only from the "
        "refimpl's own Python API"
    ),
    ("_text", "return str(value).encode()"): "the kernel hands back every text as a string",
    ("_unbox", "args[i] = Opaque(_text(value).decode())"): (
        "a function, thread or userdata argument is refused by every binding whatever it "
        "becomes: only the type name in the error's text differs"
    ),
    (
        "execute_lua_buffer",
        "ok, error_text = L.run_chunk(script.encode() if isinstance(script, str) else"
        " bytes(script))",
    ): BYTES_ONLY,
    (
        "invoke_named_handler",
        "name = handler_name.encode() if isinstance(handler_name, str) else handler_name",
    ): BYTES_ONLY,
    (
        "LuaState.__init__",
        "self._runtime = lua54.LuaRuntime(encoding=None, register_eval=False,"
        " register_builtins=False, unpack_returned_tuples=True, max_memory=limits.max_memory,"
        " attribute_filter=_deny_attributes)",
    ): NO_PYTHON,
    ("LuaState._load_kernel", "loaded[b'python'] = None"): NO_PYTHON,
    ("LuaState._load_kernel", "globals_[b'python'] = None"): NO_PYTHON,
    (
        "LuaState._load_kernel",
        "kernel = self._runtime.execute(self.sandbox_source(), limits.max_instructions,"
        " limits.host_libraries, self._crossing('print', self._print), limits.max_host_bytes,"
        " MAX_DEPTH, MAX_COMPONENT_VALUES, HOST_CALL_COST, MAX_HOST_ARGS)",
    ): LABEL,
    (
        "LuaState.register_global",
        "self._kernel_fn(b'global')(name.encode(), self._crossing(name, function))",
    ): LABEL,
    (
        "LuaState.register_module",
        "impls = self._runtime.table_from({k.encode(): self._crossing(f'{name}.{k}', f) for k, f"
        " in functions.items()})",
    ): LABEL,
    (
        "LuaState.__init__",
        "self.main_thread = threading.get_ident() if main_thread is None else main_thread",
    ): CREATOR,
    ("LuaState.__init__", "self._sealed = False"): TRUTH_ONLY,
    ("LuaState.__init__", "self.closed = False"): TRUTH_ONLY,
    ("LuaState.__init__", "self.allocation: Buffer | None = None"): (
        "create_lua_state sets the allocation of every state it returns"
    ),
    ("LuaState.__init__", "self._log_left = limits.max_log_bytes"): (
        "every call into the kernel sets the log budget afresh before any output"
    ),
    (
        "LuaState._call_kernel",
        "role = _get_ident() == self.main_thread if self._sealed else None",
    ): UNSEALED_ROLE,
    ("LuaState._call_kernel", "return (first, rest[0] if rest else None)"): (
        "a kernel entry answers one value (not a tuple) or at least two"
    ),
    ("LuaState._call_kernel", "if 2 * used + need <= cap:", "2 * used + need < cap"): TIGHTER,
    ("LuaState._call_kernel", "if 2 * used + need <= cap:", "3"): TIGHTER,
    (
        "LuaState._call_kernel",
        "if used + len(packed) + STRING_COST + PUSH_MARGIN > cap:",
        "used + len(packed) + STRING_COST + PUSH_MARGIN >= cap",
    ): TIGHTER,
    (
        "LuaState._fit",
        "if plain and 2 * used + strings + PUSH_MARGIN <= cap:",
        "2 * used + strings + PUSH_MARGIN < cap",
    ): TIGHTER,
    (
        "LuaState._fit",
        "if plain and 2 * used + strings + PUSH_MARGIN <= cap:",
        "3",
    ): TIGHTER,
    (
        "LuaState._fit",
        "if used + len(packed) + STRING_COST + PUSH_MARGIN > cap:",
        "used + len(packed) + STRING_COST + PUSH_MARGIN >= cap",
    ): TIGHTER,
    (
        "LuaState._fit",
        "if value is not None and (not isinstance(value, bool | int | float)):",
    ): BOTH_PATHS,
    ("LuaState._fit", "plain = False"): TRUTH_ONLY,
    ("LuaState._fit", "strings, plain = (0, True)"): TIGHTER + "; or " + BOTH_PATHS,
    ("LuaState._crossing", "outcome = (False, f'internal error in {name}'.encode())"): HOST_ERROR,
    ("LuaState._crossing", "if self.admit_log(TRACEBACK_COST):"): HOST_ERROR,
    ("LuaState._crossing", "outcome = function(*(_unbox(mask, raw) if mask else raw))"): (
        "with a mask of 0 `_unbox` leaves every argument as it is"
    ),
    ("LuaState._print", "line = _text(args[0]) if args else b''"): (
        "the sandbox's print always hands over one line"
    ),
    ("LuaState._run", "return (ok is True, b'' if ok is True else _text(message))"): (
        "on success the caller reports OK and never reads the text"
    ),
    (
        "LuaState.call_global",
        "return (_OUTCOMES[_text(status)], b'' if detail is None else _text(detail))",
    ): ("the detail is read only for the outcomes that carry one"),
    ("LuaState.admit_log", "self._log_left = -1"): "any negative budget reads as spent",
    (
        "LuaState.from_lua",
        "problem = value.problem if isinstance(value, Table) else None",
        "isinstance(value, Table) or True",
    ): "`ecs.addComponent`, its only caller, hands it tables alone (it checks `is_table` first)",
    ("LuaState.call_global", "if not self._sealed:"): SEALED,
    ("LuaState.run_chunk", "if not self._sealed:"): SEALED,
    ("LuaState.reset_globals", "with self._headroom(PUSH_MARGIN * 256):", "257"): (
        "more headroom than needed"
    ),
    (
        "LuaState.recover_after_failure",
        "if self._runtime.get_memory_used() > self.limits.max_memory // 2:",
        "self.limits.max_memory / 2",
    ): ("for the even caps of every request, half the cap is the same number either way"),
}
NO_UTF8_FORM = (
    "the code answered for a value with no UTF-8 form (a lone surrogate), which only JSON's "
    "surrogate escapes could carry to a driver: CV-TEXT-UTF8 is not portable"
)
EXPLAINED: dict[tuple[str, ...], str] = {
    ("CVarRegistry.set_from_string", "check_text('value', value, InvalidValue)"): NO_UTF8_FORM,
    ("CVarRegistry.register", "check_text('default', default, InvalidValue)"): NO_UTF8_FORM,
    ("_cvar_text", "return format_value(value)"): (
        "`cvar.set(name, true)`: the refimpl takes a boolean as its text, a case the spec does "
        "not settle (LB-CVAR-SET speaks of set_from_string's text), so no case asserts it"
    ),
    ("LuaState._call_kernel", "if 2 * used + need <= cap:"): LOOSER,
    ("LuaState._call_kernel", "if used + len(packed) + STRING_COST + PUSH_MARGIN > cap:"): LOOSER,
    (
        "LuaState._call_kernel",
        "need = PUSH_MARGIN + STRING_COST * len(args) + sum(map(len, args))",
    ): LOOSER,
    ("LuaState._fit", "if plain and 2 * used + strings + PUSH_MARGIN <= cap:"): LOOSER,
    ("LuaState._fit", "if used + len(packed) + STRING_COST + PUSH_MARGIN > cap:"): LOOSER,
    ("LuaState._fit", "strings += len(value) + STRING_COST"): LOOSER,
    ("LuaState.reset_globals", "with self._headroom(PUSH_MARGIN * 256):"): (
        "the headroom for dropping the globals: dropping them allocates nothing in every case "
        "measured, and no request can make the Lua stack grow during it"
    ),
    (
        "LuaState.recover_after_failure",
        "if self._runtime.get_memory_used() > self.limits.max_memory // 2:",
    ): (
        "the threshold met to the byte: no request can set the heap in use to exactly half the cap"
    ),
    ("ScriptRunner.enqueue_script", "self.allocator.free(copy)"): (
        "runs only when deinit lands between the two checks of enqueue_script, a race no case "
        "can schedule through the protocol"
    ),
    ("StatePool.__init__", "self._released = sync.condition(self._mutex)"): (
        "the condition gets a lock of its own, so `available` and `try_acquire` no longer "
        "exclude `acquire` and `release`: a data race that only an unlucky interleaving shows"
    ),
    ("ScriptRunner.__init__", "self._idle = sync.condition(self._mutex)"): (
        "the condition gets a lock of its own, so the in-flight set is changed under two locks "
        "(enqueue under one, finish under the other): a data race that only an unlucky "
        "interleaving shows, each counter still changed under one lock"
    ),
}


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str
    status: str
    mode: str  # "in process" or "driver"
    original: str = ""
    mutated: str = ""
    function: str = ""
    statement: str = ""
    equivalent: str = ""  # why no port can observe it, if none can
    explained: str = ""  # why no deterministic case sees it, for a change that is real


def modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return [Path(p).stem for p in config["only_mutate"]]


def drop_stale_stats() -> None:
    """Make mutmut collect its statistics again when a case changed since it last did: it
    collects them anew only for new tests, so a changed case would keep the functions it
    reached before, and the mutants of the functions it now reaches would never meet it."""
    cases = sorted((ROOT / "refimpl" / "conformance").glob("*.py"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in cases)).hexdigest()
    mark, stats = ROOT / "mutants" / "cases.sha256", ROOT / "mutants" / "mutmut-stats.json"
    if stats.exists() and (not mark.exists() or mark.read_text() != digest):
        stats.unlink()
    mark.parent.mkdir(exist_ok=True)
    mark.write_text(digest)


def run_mutmut(names: Sequence[str], through_driver: bool) -> None:
    drop_stale_stats()
    env = dict(os.environ, REFIMPL_MUTATION_DRIVER="1" if through_driver else "")
    subprocess.run([*MUTMUT, "run", "--max-children", "1", *names], cwd=ROOT, env=env)


def exit_codes(module: str) -> dict[str, int | None]:
    meta = ROOT / "mutants" / "refimpl" / f"{module}.py.meta"
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return codes


def mutant_names(module: str) -> list[str]:
    """The mutants mutmut generated for ``module`` (none before its first run)."""
    if not (ROOT / "mutants" / "refimpl" / f"{module}.py.meta").exists():
        return []
    return sorted(exit_codes(module))


def called_name(call: ast.Call) -> str:
    """The name a call is made by: ``f`` of ``f(...)`` and of ``obj.f(...)``."""
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return call.func.id if isinstance(call.func, ast.Name) else ""


def status(code: int | None) -> str:
    if code is None:
        return "not run"
    return KILLED.get(code) or NOT_RUN.get(code) or f"exit {code}"


# -- classifying survivors -----------------------------------------------------------------


def functions(module: str) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function of the mutated copy of ``module`` (originals and mutants), by name."""
    tree = ast.parse((ROOT / "mutants" / "refimpl" / f"{module}.py").read_text())
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[node.name] = node
    return found


def first_difference(
    a: ast.AST, b: ast.AST, parents: tuple[ast.AST, ...] = ()
) -> tuple[ast.AST, ast.AST, tuple[ast.AST, ...]] | None:
    """The outermost pair of nodes where ``a`` and ``b`` first differ, with ``a``'s ancestors."""
    if type(a) is not type(b):
        return a, b, parents
    for field, value in ast.iter_fields(a):
        if not parents and field == "name":  # the mutant's own name
            continue
        other = getattr(b, field)
        if isinstance(value, list) and isinstance(other, list):
            if len(value) != len(other):
                return a, b, parents
            for x, y in zip(value, other, strict=True):
                if isinstance(x, OPERATORS) and type(x) is not type(y):
                    return a, b, parents
                if isinstance(x, ast.AST) and isinstance(y, ast.AST):
                    found = first_difference(x, y, (*parents, a))
                    if found:
                        return found
                elif x != y:
                    return a, b, parents
        elif isinstance(value, OPERATORS) and type(value) is not type(other):
            return a, b, parents  # shown with its operands: an operator alone unparses to ""
        elif isinstance(value, ast.AST) and isinstance(other, ast.AST):
            found = first_difference(value, other, (*parents, a))
            if found:
                return found
        elif value != other:
            return a, b, parents
    return None


def is_text(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str | None)) or isinstance(
        node, ast.JoinedStr
    )


def is_log_call(node: ast.AST) -> bool:
    """``log.<level>(...)``, or a helper of the refimpl's that logs its first argument."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    target = node.func.value
    if isinstance(target, ast.Name) and target.id == "log":
        return node.func.attr in LOG_CALLS
    return isinstance(target, ast.Name) and target.id == "self" and node.func.attr in LOGGERS


def unobservable(
    original: ast.AST, mutated: ast.AST, parents: Sequence[ast.AST], spec_text: str
) -> str:
    """Why a change cannot be seen by a port, or ``""`` when it can: a change of an exception's
    text, or of a log call whose text the spec does not word."""
    if in_exception_arguments(parents):
        return "exception detail text: only the error code crosses the protocol (DRV-CODES)"
    if (
        any(isinstance(p, ast.keyword) and p.arg == "tag" for p in parents)
        or dropped_tag(original, mutated)
        or tag_default(original, parents)
    ):
        return LEDGER_TAG
    for node in parents:
        if (
            isinstance(node, ast.Call)
            and (name := called_name(node)) in TEXT_ONLY
            and is_text(original)
        ):
            return TEXT_ONLY[name]
    calls = [p for p in (*parents, original) if is_log_call(p)]
    if calls and isinstance(calls[-1], ast.Call) and calls[-1].args:
        literal = ast.unparse(calls[-1].args[0]).strip("'\"f")
        pieces = [p.strip() for p in re.split(r"%[a-z]|\{[^}]*\}", literal)]
        if not any(len(p) >= WORDED and p in spec_text for p in pieces):
            return "a log line the spec does not word (cases check only the texts it names)"
    return ""


def in_exception_arguments(parents: Sequence[ast.AST]) -> bool:
    """Whether the change is inside the arguments of the exception a ``raise`` builds."""
    for i, node in enumerate(parents):
        if isinstance(node, ast.Raise):
            return i + 1 < len(parents) and isinstance(parents[i + 1], ast.Call)
    return False


def tag_default(original: ast.AST, parents: Sequence[ast.AST]) -> bool:
    """Whether the change is the default value of a parameter named ``tag``."""
    signature = parents[-1] if parents else None
    if not isinstance(signature, ast.arguments):
        return False
    pairs = zip(signature.kwonlyargs, signature.kw_defaults, strict=True)
    return any(arg.arg == "tag" and default is original for arg, default in pairs)


def dropped_tag(original: ast.AST, mutated: ast.AST) -> bool:
    """Whether the mutant is the same call with its ``tag=`` argument left out."""
    if not (isinstance(original, ast.Call) and isinstance(mutated, ast.Call)):
        return False
    kept = [k for k in original.keywords if k.arg != "tag"]
    return ast.dump(ast.Call(original.func, original.args, kept)) == ast.dump(mutated)


def statement(original: ast.AST, parents: Sequence[ast.AST]) -> str:
    """The first line of the statement holding the change: what :data:`ARGUED` is keyed by."""
    for node in (original, *reversed(parents)):
        if isinstance(node, ast.stmt):
            return ast.unparse(node).split("\n")[0]
    return ast.unparse(original)


def classify(module: str, statuses: dict[str, str], mode: str) -> Iterator[Mutant]:
    """Each mutant with its status and, for a survivor, what it changed and whether a port
    could see the change."""
    found = functions(module)
    spec = "\n".join(p.read_text() for p in sorted((ROOT / "spec").glob("*.md")))
    spec_text = "\n".join(re.findall(r"`([^`\n]+)`", spec))  # the texts the spec quotes
    for name, state in sorted(statuses.items()):
        if state in KILLED.values():
            yield Mutant(name, module, state, mode)
            continue
        key = name.removeprefix(f"refimpl.{module}.")
        base = key.rpartition("__mutmut_")[0]
        diff = None
        if key in found and f"{base}__mutmut_orig" in found:
            diff = first_difference(found[f"{base}__mutmut_orig"], found[key])
        if diff is None:
            yield Mutant(name, module, state, mode)
            continue
        original, mutated, parents = diff
        before, after = ast.unparse(original), ast.unparse(mutated)
        function = base[2:].replace("ǁ", ".")
        where = statement(original, parents)
        why = (
            EQUIVALENT.get((function, where, after))
            or EQUIVALENT.get((function, where))
            or EQUIVALENT_FUNCTIONS.get(function)
            or unobservable(original, mutated, parents, spec_text)
        )
        explained = EXPLAINED.get((function, where, after)) or EXPLAINED.get((function, where))
        yield Mutant(
            name, module, state, mode, before, after, function, where, why, explained or ""
        )


# -- the report ----------------------------------------------------------------------------


def score(mutants: Sequence[Mutant]) -> tuple[int, int, int, float]:
    """(killed, equivalent, counted, killed / counted in percent)."""
    killed = sum(m.status in KILLED.values() for m in mutants)  # a timeout is a hang seen
    equivalent = sum(bool(m.equivalent) and m.status not in KILLED.values() for m in mutants)
    counted = len(mutants) - equivalent
    return killed, equivalent, counted, 100.0 * killed / counted if counted else 100.0


def short(code: str, width: int = 90) -> str:
    line = " ".join(code.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def report(results: dict[str, list[Mutant]]) -> str:
    lines = [
        "# Mutation score of the port-facing suite",
        "",
        "| module | mode | mutants | killed | equivalent | score | not killed |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, mutants in sorted(results.items()):
        module, mode = key.split(":")
        killed, equivalent, counted, pct = score(mutants)
        lines.append(
            f"| {module} | {mode} | {len(mutants)} | {killed} | {equivalent} | {pct:.1f}% "
            f"| {counted - killed} |"
        )
    for key, mutants in sorted(results.items()):
        survivors = [m for m in mutants if m.status not in KILLED.values()]
        if not survivors:
            continue
        lines += ["", f"## {key.replace(':', ', ')}: survivors", ""]
        for m in sorted(survivors, key=lambda m: (bool(m.equivalent), m.function, m.name)):
            verdict = (
                f"equivalent: {m.equivalent}"
                if m.equivalent
                else f"not killed: {m.explained}"
                if m.explained
                else "**gap** (not argued)"
            )
            number = m.name.rpartition("__mutmut_")[2]
            lines.append(
                f"- `{m.function}` #{number} ({m.status}) in `{short(m.statement)}`: "
                f"`{short(m.original, 60)}` -> `{short(m.mutated, 60)}`; {verdict}"
            )
    return "\n".join(lines) + "\n"


def load() -> dict[str, list[Mutant]]:
    path = OUT / "results.json"
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {key: [Mutant(**m) for m in items] for key, items in raw.items()}


def save(results: dict[str, list[Mutant]]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    raw = {key: [asdict(m) for m in items] for key, items in results.items()}
    (OUT / "results.json").write_text(json.dumps(raw, indent=1))
    (OUT / "report.md").write_text(report(results))


def ordinal(n: int) -> str:
    """``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def run_in_process(module: str, every: int, results: dict[str, list[Mutant]]) -> list[str]:
    """Run ``module``'s mutants (every ``every``-th, or all) in process; store their verdicts
    and return the names run, sorted."""
    chosen = mutant_names(module)[::every] if every > 1 else []
    run_mutmut(chosen or [f"refimpl.{module}.*"], through_driver=False)
    codes = exit_codes(module)
    statuses = {name: status(codes[name]) for name in chosen or sorted(codes)}
    mode = f"in process, every {ordinal(every)}" if chosen else "in process"
    results[f"{module}:{mode}"] = list(classify(module, statuses, mode))
    save(results)
    return sorted(statuses)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module names (default: every one)")
    parser.add_argument("--sample", type=int, default=10, help="every n-th mutant via driver")
    parser.add_argument("--driver-all", action="store_true", help="every mutant via driver")
    parser.add_argument(
        "--every", type=int, default=1, help="in process, every n-th mutant only (generated ones)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="classify the stored results again"
    )
    parser.add_argument(
        "--driver-only",
        action="store_true",
        help="skip the in-process pass: run the sample of mutants generated before via driver",
    )
    options = parser.parse_args()
    results = load()
    if options.report_only:
        for key, mutants in results.items():
            module, mode = key.split(":")
            results[key] = list(classify(module, {m.name: m.status for m in mutants}, mode))
    for module in [] if options.report_only else options.modules or modules():
        step = 1 if options.driver_all else options.sample
        if options.driver_only:
            names = mutant_names(module)
            if not names:
                parser.error(f"no mutants of {module} yet: run it in process first")
        else:
            names = run_in_process(module, options.every, results)
        sample = names[::step] if step > 0 else []
        if sample:
            run_mutmut(sample, through_driver=True)
            codes = exit_codes(module)
            sampled = {name: status(codes[name]) for name in sample}
            results[f"{module}:driver"] = list(classify(module, sampled, "driver"))
            save(results)
    text = report(results)
    save(results)
    print(text.split("\n\n## ")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
