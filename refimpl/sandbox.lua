-- The sandbox every pooled state runs user code in (spec/lua-helpers.md, the SBX rules).
--
-- Loaded once per state by refimpl.lua.LuaState, before any user code, with the real globals
-- and every standard library still in reach. It captures what it needs as upvalues and returns
-- a kernel table that only Python holds. User code never sees the real globals:
--   * PROTECTED holds the read-only standard libraries and the engine modules
--     (SBX-PROTECTED-GLOBALS, SBX-PROTECTED-FIELDS);
--   * USER holds the script-defined globals, which persist across leases (SBX-GLOBALS-PERSIST);
--   * each chunk runs in a fresh, empty environment whose reads fall through to USER, then
--     PROTECTED, and whose writes go to USER, except names in PROTECTED (SBX-PROTECTED-GLOBALS).
-- Every chunk and handler runs in a coroutine of its own with an instruction-count hook
-- (SBX-MAX-INSTRUCTIONS, SBX-LIMIT-NO-ESCAPE, SBX-LIMIT-PER-CALL); the memory cap is the
-- runtime's (SBX-MAX-MEMORY).

local max_instructions, host_libraries, print_sink = ...

local G = _G
local sethook, rawgetmetatable = debug.sethook, debug.getmetatable
local cocreate, coresume, costatus, corunning = coroutine.create, coroutine.resume,
    coroutine.status, coroutine.running
local load, pcall, error, type, tostring = load, pcall, error, type, tostring
local setmetatable, getmetatable, rawget, rawset, next, select = setmetatable, getmetatable,
    rawget, rawset, next, select
local tpack, tunpack, tconcat = table.pack, table.unpack, table.concat
local collectgarbage = collectgarbage

local STEP = 1000
local budget, exceeded = 0, false
-- The coroutines of the current call, all hooked (weak keys: dead ones are collected).
local hooked = setmetatable({}, { __mode = "k" })

-- Counts instructions in steps of STEP; once the budget is spent it raises on every instruction
-- of every coroutine of the call, so a script that catches the error with pcall, or in a
-- coroutine, still cannot go on.
local function hook()
  if not exceeded then
    budget = budget - STEP
    if budget >= 0 then return end
    exceeded = true
    for c in next, hooked do sethook(c, hook, "", 1) end
  end
  error("instruction limit exceeded", 0)
end

-- The read-only views and the chunk environments, which the rawset scripts see must respect
-- (weak keys: a dead environment is collected).
local READONLY = setmetatable({}, { __mode = "k" })
local ENVS = setmetatable({}, { __mode = "k" })

-- A read-only view of t. Nothing on it hands out t itself: not getmetatable, not pairs.
local function readonly(t, name)
  local proxy = {}
  READONLY[proxy] = name
  return setmetatable(proxy, {
    __index = t,
    __newindex = function() error("attempt to modify read-only table '" .. name .. "'", 2) end,
    __pairs = function() return function(_, k) return next(t, k) end, proxy, nil end,
    __len = function() return #t end,
    __metatable = false,
  })
end

local function copy(t, names)
  local out = {}
  for _, k in ipairs(names) do out[k] = t[k] end
  return out
end

local PROTECTED = {}
local USER = setmetatable({}, { __index = PROTECTED })

local ENV_MT = {
  __index = USER,
  __newindex = function(_, k, v)
    if PROTECTED[k] ~= nil then
      error("cannot assign to protected global '" .. tostring(k) .. "'", 2)
    end
    USER[k] = v
  end,
  __metatable = false,
}

local function new_env()
  local env = setmetatable({}, ENV_MT)
  rawset(env, "_G", env)
  ENVS[env] = true
  return env
end

-- lua.c's rule for error objects: strings as they are, numbers converted, anything else through
-- a working __tostring, else "(error object is a <type> value)" (LH-EXEC-ERROR-NONSTRING,
-- LH-EXEC-ERROR-TOSTRING).
local function plain(e)
  local t = type(e)
  if t == "string" then return e end
  if t == "number" then return tostring(e) end
  return "(error object is a " .. t .. " value)"
end

-- As lua.c's msghandler: the raw metatable's __tostring is called and only a string result
-- counts (a number returned by __tostring does not).
local function describe(e)
  if type(e) ~= "string" and type(e) ~= "number" then
    local mt = rawgetmetatable(e)
    local h = mt and rawget(mt, "__tostring")
    if h ~= nil then
      local ok, s = pcall(h, e)
      if ok and type(s) == "string" then return s end
    end
  end
  return plain(e)
end

local function body(f, ...)
  local r = tpack(pcall(f, ...))
  if r[1] then return true end
  return false, describe(r[2])
end

local function protected_call(f, ...)
  local co = cocreate(body)
  budget, exceeded = max_instructions, false
  for c in next, hooked do hooked[c] = nil end
  hooked[co] = true
  sethook(co, hook, "", STEP)
  local ok, success, message = coresume(co, f, ...)
  if not ok then return false, plain(success) end
  if costatus(co) ~= "dead" then return false, "attempt to yield from outside a coroutine" end
  -- A script that caught the limit error (in a coroutine or with pcall) still fails.
  if exceeded then return false, "instruction limit exceeded" end
  return success, message
end

-- The standard library as scripts see it (SBX-STDLIBS-OPEN, SBX-HOST-LIBS-ABSENT,
-- SBX-HOST-LIBS-OPTION, SBX-LOAD-TEXT).
for _, k in ipairs({ "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall",
  "rawequal", "rawget", "rawlen", "select", "setmetatable", "tonumber", "tostring",
  "type", "xpcall", "_VERSION" }) do
  PROTECTED[k] = G[k]
end
-- rawset bypasses __newindex: refuse it on a read-only view and on a protected global, so it
-- cannot shadow a protected field or global (SBX-PROTECTED-FIELDS, SBX-PROTECTED-GLOBALS).
PROTECTED.rawset = function(t, k, v)
  if READONLY[t] ~= nil then
    error("attempt to modify read-only table '" .. READONLY[t] .. "'", 2)
  end
  if ENVS[t] and PROTECTED[k] ~= nil then
    error("cannot assign to protected global '" .. tostring(k) .. "'", 2)
  end
  return rawset(t, k, v)
end
PROTECTED.load = function(chunk, name, _, env)
  return load(chunk, name, "t", env or new_env())
end
PROTECTED.collectgarbage = function(opt, ...)
  opt = opt or "collect"
  if opt == "collect" or opt == "count" or opt == "step" or opt == "isrunning" then
    return collectgarbage(opt, ...)
  end
  error("collectgarbage option '" .. tostring(opt) .. "' is not allowed", 2)
end
PROTECTED.print = function(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  print_sink(tconcat(parts, "\t"))
end
for _, lib in ipairs({ "string", "table", "math", "utf8" }) do
  PROTECTED[lib] = readonly(G[lib], lib)
end
local co = copy(coroutine, { "close", "isyieldable", "resume", "running", "status", "yield" })
-- New coroutines draw on the same instruction budget (PUC Lua keeps hooks per coroutine,
-- SBX-LIMIT-COROUTINES).
co.create = function(f)
  local c = cocreate(f)
  hooked[c] = true
  sethook(c, hook, "", exceeded and 1 or STEP)
  return c
end
co.wrap = function(f)
  local c = co.create(f)
  return function(...)
    local r = tpack(coresume(c, ...))
    if not r[1] then error(r[2], 2) end
    return tunpack(r, 2, r.n)
  end
end
PROTECTED.coroutine = readonly(co, "coroutine")
if host_libraries then
  for _, k in ipairs({ "io", "os", "debug", "package", "require", "dofile", "loadfile" }) do
    PROTECTED[k] = G[k]
  end
else
  PROTECTED.os = readonly(copy(os, { "clock", "date", "difftime", "time" }), "os")
end
-- The string metatable is shared by every string; hide it so its __index cannot be reached.
getmetatable("").__metatable = false

local kernel = {}

function kernel.run(src, chunkname)
  local f, err = load(src, chunkname, "t", new_env())
  if not f then return false, err end
  return protected_call(f)
end

-- Calls USER[name] (falling through to PROTECTED as any global read does). The first result
-- says what happened: "ok", "missing", "not_function" or "error" with the message.
function kernel.call(name, ...)
  local h = USER[name]
  if h == nil then return "missing" end
  if type(h) ~= "function" then return "not_function", type(h) end
  local ok, message = protected_call(h, ...)
  if ok then return "ok" end
  return "error", message
end

-- Installs an engine module: a read-only table of Lua functions over Python implementations.
-- Each implementation returns true plus its results, or false plus an error message, which
-- becomes a Lua error at the caller's position (so pcall sees a string, never a Python object).
local function wrap(impl)
  return function(...)
    local r = tpack(impl(...))
    if not r[1] then error(r[2], 2) end
    return tunpack(r, 2, r.n)
  end
end

function kernel.module(name, impls)
  local m = {}
  for fname, impl in pairs(impls) do m[fname] = wrap(impl) end
  PROTECTED[name] = readonly(m, name)
end

-- Installs one global function over a Python implementation, with the same error convention.
function kernel.global(name, impl)
  PROTECTED[name] = wrap(impl)
end

function kernel.reset_globals()
  for k in next, USER do USER[k] = nil end
end

return kernel
