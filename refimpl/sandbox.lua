-- The sandbox every pooled state runs user code in (spec/lua-helpers.md, the SBX rules).
--
-- Loaded once per state by refimpl.lua.LuaState, before any user code, with the real globals
-- and every standard library still in reach. It captures what it needs as upvalues and returns
-- a kernel table that only Python holds. User code never sees the real globals. Names resolve,
-- first to last, through:
--   * the script globals of the calling role: MAIN for calls on the main thread, WORKER for
--     calls on other threads; both persist across leases (SBX-GLOBALS-PERSIST); a main-thread
--     call never sees what a worker defined, a worker sees the main thread's globals with their
--     tables through read-only views (SBX-ROLE-GLOBALS);
--   * PRELUDE, what the prelude defined: fixed names once it has run (SBX-PRELUDE-FIXED), its
--     tables seen through read-only views (SBX-PRELUDE-READONLY);
--   * PROTECTED, the read-only standard libraries and the engine modules
--     (SBX-PROTECTED-GLOBALS, SBX-PROTECTED-FIELDS).
-- Each chunk runs in a fresh, empty environment whose reads fall through that chain and whose
-- writes go to the calling role's globals (to PRELUDE while the prelude runs).
-- Every chunk and handler runs in the kernel's coroutine, under an instruction-count hook
-- (SBX-MAX-INSTRUCTIONS, SBX-LIMIT-NO-ESCAPE, SBX-LIMIT-PER-CALL); the memory cap is the
-- runtime's (SBX-MAX-MEMORY). Host functions take and return only Lua strings, numbers,
-- booleans and nil; tables cross as an encoding built and read here, under the limits
-- (SBX-BINDING-VALUES, SBX-CONVERSION-BOUND).

local max_instructions, host_libraries, print_impl, max_host_bytes, max_depth, max_values,
    call_cost, max_args = ...

local G = _G
local sethook, rawgetmetatable = debug.sethook, debug.getmetatable
local cocreate, coresume, coyield, coclose = coroutine.create, coroutine.resume,
    coroutine.yield, coroutine.close
local load, pcall, xpcall, error, type, tostring = load, pcall, xpcall, error, type, tostring
local setmetatable, getmetatable, rawget, rawset, next, select = setmetatable, getmetatable,
    rawget, rawset, next, select
local tpack, tunpack, tconcat = table.pack, table.unpack, table.concat
local spack, sunpack, sbyte = string.pack, string.unpack, string.byte
local mtype = math.type
local collectgarbage = collectgarbage

local MEMORY_ERROR = "not enough memory"
local LIMIT_ERROR = "instruction limit exceeded"
local STEP = 1000
local budget, exceeded, host_left = 0, false, 0
-- The coroutines of the current call, all hooked (weak keys: dead ones are collected).
local hooked = setmetatable({}, { __mode = "k" })

local hook
-- The budget is spent: every coroutine of the call now stops at every instruction.
local function spent()
  exceeded = true
  for c in next, hooked do sethook(c, hook, "", 1) end
end

-- Counts instructions in steps of STEP; once the budget is spent it raises on every instruction
-- of every coroutine of the call, so a script that catches the error with pcall, or in a
-- coroutine, still cannot go on. The coroutine the hook fires in is armed too, whichever call
-- armed it before (SBX-COROUTINE-LATER-CALL).
hook = function()
  if not exceeded then
    budget = budget - STEP
    if budget >= 0 then return end
    spent()
  end
  sethook(hook, "", 1)
  error(LIMIT_ERROR, 0)
end

-- Charges n instructions to the budget for work done outside the VM (SBX-HOST-CALL-COST).
local function charge(n)
  budget = budget - n
  if budget < 0 and not exceeded then spent() end
  if exceeded then
    sethook(hook, "", 1)
    error(LIMIT_ERROR, 0)
  end
end

-- A coroutine about to run in this call draws on this call's budget (SBX-LIMIT-COROUTINES).
local function arm(c)
  if type(c) == "thread" then
    hooked[c] = true
    sethook(c, hook, "", exceeded and 1 or STEP)
  end
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

-- A deep read-only view: tables read through it are views too, one per table
-- (SBX-PRELUDE-READONLY, SBX-ROLE-GLOBALS).
local VIEWS = setmetatable({}, { __mode = "k" })
local view
local function viewed(v)
  if type(v) == "table" then return view(v) end
  return v
end
view = function(t)
  local proxy = VIEWS[t]
  if proxy then return proxy end
  proxy = {}
  READONLY[proxy] = "shared table"
  VIEWS[t] = proxy
  return setmetatable(proxy, {
    __index = function(_, k) return viewed(t[k]) end,
    __newindex = function() error("attempt to modify read-only table 'shared table'", 2) end,
    __pairs = function()
      local k
      return function()
        local v
        k, v = next(t, k)
        if k == nil then return nil end
        return viewed(k), viewed(v)
      end, proxy, nil
    end,
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
local PRELUDE = setmetatable({}, { __index = PROTECTED })
local MAIN = setmetatable({}, { __index = PRELUDE })
-- Workers read the main thread's globals too, its tables through read-only views.
local WORKER = setmetatable({}, {
  __index = function(_, k)
    local v = rawget(MAIN, k)
    if v == nil then return PRELUDE[k] end
    return viewed(v)
  end,
})
local sealed = false
local current = PRELUDE

local function is_protected(k)
  if sealed then return PRELUDE[k] ~= nil end
  return PROTECTED[k] ~= nil
end

-- One metatable for every chunk environment: its __index is the calling role's globals, set at
-- the start of each call, so prelude functions too resolve globals in the role that calls them.
local ENV_MT = {
  __index = PRELUDE,
  __newindex = function(_, k, v)
    if is_protected(k) then
      error("cannot assign to protected global '" .. tostring(k) .. "'", 2)
    end
    rawset(current, k, v)
  end,
  __metatable = false,
}

local function new_env()
  local env = setmetatable({}, ENV_MT)
  rawset(env, "_G", env)
  ENVS[env] = true
  return env
end

local function enter(main)
  if sealed then current = main and MAIN or WORKER end
  ENV_MT.__index = current
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

-- The kernel's coroutine serves call after call: each resume brings a function and its
-- arguments, each yield of RESULT (a value no script can reach) its outcome.
local RESULT = {}
local function serve(f, ...)
  local ok, message = body(f, ...)
  f = nil -- not kept alive until the next call
  return serve(coyield(RESULT, ok, message))
end
local kernel_co

local function protected_call(f, ...)
  local co = kernel_co
  if co == nil then
    co = cocreate(serve)
    kernel_co = co
  end
  budget, exceeded, host_left = max_instructions, false, max_host_bytes
  for c in next, hooked do hooked[c] = nil end
  hooked[co] = true
  sethook(co, hook, "", STEP)
  local ok, tag, success, message = coresume(co, f, ...)
  if not ok then
    kernel_co = nil
    return false, plain(tag)
  end
  if tag ~= RESULT then
    -- The script yielded the kernel's coroutine itself: closed, so that no later call can
    -- resume it, and replaced.
    kernel_co = nil
    coclose(co)
    return false, "attempt to yield from outside a coroutine"
  end
  -- A script that caught the limit error (in a coroutine or with pcall) still fails.
  if exceeded then return false, LIMIT_ERROR end
  return success, message
end

-- Values that cross to and from the host. A table crosses as one string: a tag byte per value
-- ("s" string, "i" integer, "d" float, "t"/"f" booleans, "n" nil, "{" key value ... "}" a
-- table), little-endian, lengths as 4 bytes. Built and read here, so its cost is counted.
local NOT_PLAIN = "component data holds a value that is not plain data"
local TOO_MANY = "component data holds more than " .. max_values .. " values"
local S, I, D, T, F, N, OPEN, CLOSE = sbyte("sidtfn{}", 1, 8)

local function encode(root)
  local parts, n, count, path = {}, 0, 0, {}
  local function put(x, depth, key)
    count = count + 1
    if count > max_values then error(TOO_MANY, 0) end
    local t = type(x)
    n = n + 1
    if t == "string" then
      parts[n] = spack("<Bs4", S, x)
    elseif t == "number" then
      parts[n] = mtype(x) == "integer" and spack("<Bi8", I, x) or spack("<Bd", D, x)
    elseif t == "boolean" then
      parts[n] = x and "t" or "f"
    elseif t == "table" and not key and not path[x] and depth < max_depth then
      path[x] = true
      parts[n] = "{"
      for k, v in next, x do
        put(k, depth + 1, true)
        put(v, depth + 1, false)
      end
      n = n + 1
      parts[n] = "}"
      path[x] = nil
    else
      error(NOT_PLAIN, 0)
    end
  end
  local ok, err = pcall(put, root, 0, false)
  if ok then return tconcat(parts) end
  if err == NOT_PLAIN or err == TOO_MANY then return nil, err end
  error(err, 0) -- the memory or instruction limit, not a refusal of the data
end

local function decode(s, pos)
  local tag = sbyte(s, pos)
  pos = pos + 1
  if tag == S then return sunpack("<s4", s, pos) end
  if tag == I then return sunpack("<i8", s, pos) end
  if tag == D then return sunpack("<d", s, pos) end
  if tag == T then return true, pos end
  if tag == F then return false, pos end
  if tag == N then return nil, pos end
  local t = {}
  while sbyte(s, pos) ~= CLOSE do
    local k, v
    k, pos = decode(s, pos)
    v, pos = decode(s, pos)
    t[k] = v
  end
  return t, pos + 1
end

-- A packed list of values: a count byte, then the values, padded to a long string.
local function unpack_values(packed)
  local out, pos = {}, 2
  local count = sbyte(packed, 1)
  for i = 1, count do out[i], pos = decode(packed, pos) end
  return out, count
end

-- A host function as Lua sees it. Arguments: strings, numbers, booleans and nil as they are,
-- charged to the call's host-data budget (SBX-HOST-BYTES); a table as its encoding, a table
-- that cannot be encoded as the reason, anything else as its type name, each flagged in a mask
-- (bit i-1, i+15, i+31 for argument i). The host answers (status, packed, values...): status
-- nil when the results would not fit under the memory cap; packed a string of encoded values
-- when they are not plain. A Python error never reaches Lua as an object (SBX-NO-PYTHON).
local function crossing(name, impl)
  local prefix = name .. ": "
  return function(...)
    charge(call_cost)
    local n = select("#", ...)
    if n > max_args then n = max_args end
    local args, mask, bytes = { ... }, 0, 0
    for i = 1, n do
      local v = args[i]
      local t = type(v)
      if t == "string" then
        bytes = bytes + #v
      elseif t == "table" then
        local encoded, why = encode(v)
        if encoded then
          bytes = bytes + #encoded
          args[i], mask = encoded, mask | (1 << (i - 1))
        else
          args[i], mask = why, mask | (1 << (i + 15))
        end
      elseif t ~= "number" and t ~= "boolean" and t ~= "nil" then
        args[i], mask = t, mask | (1 << (i + 31))
      end
    end
    if bytes > host_left then error(prefix .. "host data limit exceeded", 2) end
    host_left = host_left - bytes
    local r = tpack(pcall(impl, mask, tunpack(args, 1, n)))
    if not r[1] then error(prefix .. "internal error", 2) end
    local status, packed = r[2], r[3]
    if status == nil then error(MEMORY_ERROR, 0) end
    if packed ~= nil then
      local values, count = unpack_values(packed)
      if status then return tunpack(values, 1, count) end
      error(values[1], 2)
    end
    if status then return tunpack(r, 4, r.n) end
    error(r[4], 2)
  end
end

-- The standard library as scripts see it (SBX-STDLIBS-OPEN, SBX-HOST-LIBS-ABSENT,
-- SBX-HOST-LIBS-OPTION, SBX-LOAD-TEXT).
for _, k in ipairs({ "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall",
  "rawequal", "rawget", "rawlen", "select", "tonumber", "tostring", "type", "_VERSION" }) do
  PROTECTED[k] = G[k]
end
-- rawset bypasses __newindex: refuse it on a read-only view and on a protected global, so it
-- cannot shadow a protected field or global (SBX-PROTECTED-FIELDS, SBX-PROTECTED-GLOBALS).
PROTECTED.rawset = function(t, k, v)
  if READONLY[t] ~= nil then
    error("attempt to modify read-only table '" .. READONLY[t] .. "'", 2)
  end
  if ENVS[t] and is_protected(k) then
    error("cannot assign to protected global '" .. tostring(k) .. "'", 2)
  end
  return rawset(t, k, v)
end
-- Lua runs finalisers with hooks off, so no script may create one: a metatable with a __gc
-- field is refused (Lua marks an object for finalisation only if the field is there when the
-- metatable is set) (SBX-NO-FINALIZERS).
PROTECTED.setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc metamethods are not allowed in the sandbox", 2)
  end
  return setmetatable(t, mt)
end
-- Lua calls a message handler for the hook's own error inside the hook, with hooks off: once
-- the budget is spent the handler is skipped and the error goes on (SBX-HANDLER-AFTER-LIMIT).
PROTECTED.xpcall = function(f, handler, ...)
  if type(handler) ~= "function" then return xpcall(f, handler, ...) end
  return xpcall(f, function(e)
    if exceeded then return e end
    return handler(e)
  end, ...)
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
local print_line = crossing("print", print_impl)
PROTECTED.print = function(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  return print_line(tconcat(parts, "\t"))
end
for _, lib in ipairs({ "string", "table", "math", "utf8" }) do
  PROTECTED[lib] = readonly(G[lib], lib)
end
local co = copy(coroutine, { "isyieldable", "running", "status", "yield" })
-- Every coroutine draws on the budget of the call that runs it (PUC Lua keeps hooks per
-- coroutine): armed when made, and again whenever it is resumed or closed, in whatever call
-- (SBX-LIMIT-COROUTINES, SBX-COROUTINE-LATER-CALL).
co.create = function(f)
  local c = cocreate(f)
  arm(c)
  return c
end
co.resume = function(c, ...)
  arm(c)
  return coresume(c, ...)
end
co.close = function(c)
  arm(c)
  return coclose(c)
end
co.wrap = function(f)
  local c = co.create(f)
  return function(...)
    arm(c)
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

-- The entries Python calls take the caller's role first (true: main thread, false: a worker,
-- nil: the prelude), then either packed arguments or the arguments themselves.
function kernel.run(main, packed, src, chunkname)
  if packed then
    local values = unpack_values(packed)
    src, chunkname = values[1], values[2]
  end
  enter(main)
  local f, err = load(src, chunkname, "t", new_env())
  if not f then return false, err end
  return protected_call(f)
end

-- Calls the global `name` as the calling role sees it (falling through to PRELUDE and
-- PROTECTED as any global read does). The first result says what happened: "ok", "missing",
-- "not_function" or "error" with the message.
function kernel.call(main, packed, name, ...)
  if packed then
    local values, count = unpack_values(packed)
    return kernel.call(main, nil, tunpack(values, 1, count))
  end
  enter(main)
  local h = current[name]
  if h == nil then return "missing" end
  if type(h) ~= "function" then return "not_function", type(h) end
  local ok, message = protected_call(h, ...)
  if ok then return "ok" end
  return "error", message
end

-- Installs an engine module: a read-only table of host functions.
function kernel.module(name, impls)
  local m = {}
  for fname, impl in pairs(impls) do m[fname] = crossing(name .. "." .. fname, impl) end
  PROTECTED[name] = readonly(m, name)
end

-- Installs one global host function.
function kernel.global(name, impl)
  PROTECTED[name] = crossing(name, impl)
end

-- Ends the prelude: its names become fixed and its tables are seen through read-only views
-- (SBX-PRELUDE-FIXED, SBX-PRELUDE-READONLY).
function kernel.seal()
  for k, v in next, PRELUDE do rawset(PRELUDE, k, viewed(v)) end
  sealed = true
end

-- Drops every script-defined global of both roles; the prelude's stay (SBX-RESET-KEEPS-PRELUDE).
function kernel.reset_globals()
  for _, ns in ipairs({ MAIN, WORKER }) do
    for k in next, ns do ns[k] = nil end
  end
end

return kernel
