-- plughost's Lua prelude: runs once in every plugin interpreter, before the
-- plugin's own code. It narrows the standard library to the allow-list and
-- makes `pcall`, `xpcall`, `coroutine.resume` and `coroutine.close` unable to swallow the
-- host's time limit. Given by the host: `check_budget`, which raises the time
-- limit error once the hook call's deadline has passed, `over_budget`, which
-- says whether it has, `to_script`, which turns an error raised by a
-- binding (an opaque userdata) into the positioned string a script expects,
-- `refuse`, which raises an error positioned at the script's line, and
-- `place_overflow`, which names the line where a chunk nests too deeply.
local check_budget, over_budget, to_script, refuse, place_overflow = ...

local raw_load, raw_pcall, raw_xpcall, raw_resume, raw_close =
  load, pcall, xpcall, coroutine.resume, coroutine.close
local error, select, type, next, tostring, rawget = error, select, type, next, tostring, rawget
local raw_setmetatable, sub = setmetatable, string.sub

-- Text chunks only: binary chunks bypass the compiler's checks.
-- Lua's parser reports a chunk nested too deeply without chunk or line.
load = function(chunk, name, _mode, env)
  local f, err = raw_load(chunk, name, "t", env)
  if f == nil and type(chunk) == "string" and type(err) == "string"
      and sub(err, 1, 16) == "C stack overflow" then
    err = place_overflow(chunk, name) or err
  end
  return f, err
end
dofile, loadfile = nil, nil
string.dump = nil

-- No finalizers: Lua runs `__gc` with hooks off, where no time limit can
-- stop it. Lua 5.4 marks an object for finalization only when its metatable
-- has `__gc` as `setmetatable` is called, so refusing such a metatable there
-- is enough (a `__gc` added later is never called).
setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    refuse("setmetatable: a metatable with `__gc` is refused (finalizers cannot be stopped by the time limit)")
  end
  return raw_setmetatable(t, mt)
end

-- `collectgarbage`: the collector's settings are the host's; a script may
-- collect, step, and read the count.
local raw_collectgarbage = collectgarbage
local gc_allowed = { collect = true, count = true, step = true, isrunning = true }
collectgarbage = function(opt, ...)
  opt = opt == nil and "collect" or opt
  if not gc_allowed[opt] then
    refuse("collectgarbage: option '" .. tostring(opt) .. "' is not allowed (only collect, count, step, isrunning)")
  end
  return raw_collectgarbage(opt, ...)
end

-- `os`: only time, clock and date.
local os_time, os_clock, os_date = os.time, os.clock, os.date
os = { time = os_time, clock = os_clock, date = os_date }

-- An error caught after the deadline becomes the time limit error: the limit
-- cannot be caught, and the loop that caught something else is reported for
-- what stopped it.
local function pass(ok, ...)
  if ok then return ok, ... end
  check_budget()
  return ok, to_script((...))
end
pcall = function(f, ...) return pass(raw_pcall(f, ...)) end
-- A message handler never runs past the deadline: Lua calls it for an error
-- the time hook raised while hooks are still off, so a handler that loops
-- there would never be stopped. Past the deadline the error goes on as it is.
xpcall = function(f, handler, ...)
  return pass(raw_xpcall(f, function(e)
    if over_budget() then return e end
    return handler(to_script(e))
  end, ...))
end
coroutine.resume = function(co, ...) return pass(raw_resume(co, ...)) end
-- `close` catches what a `__close` raised, the time limit included.
coroutine.close = function(co) return pass(raw_close(co)) end

-- Every read-only view, so that `rawset` cannot write into one either.
local views_made = raw_setmetatable({}, { __mode = "k" })
local raw_rawset = rawset
rawset = function(t, k, v)
  if views_made[t] then
    refuse("config is read-only (tried to set `" .. tostring(k) .. "` with rawset); keep mutable data in `state`")
  end
  return raw_rawset(t, k, v)
end

-- Read-only views of the config, built lazily and cached per table.
local function readonly(t)
  local views = {}
  local function view(v)
    if type(v) ~= "table" then return v end
    local existing = views[v]
    if existing then return existing end
    local proxy = raw_setmetatable({}, {
      __index = function(_, k) return view(v[k]) end,
      __newindex = function(_, k)
        error("config is read-only (tried to set `" .. tostring(k) .. "`); keep mutable data in `state`", 2)
      end,
      __pairs = function()
        local k
        return function()
          local value
          k, value = next(v, k)
          return k, view(value)
        end
      end,
      __len = function() return #v end,
      __metatable = false,
      -- Lets the host convert a view to JSON as the data it shows.
      __plughost_view = v,
    })
    views[v] = proxy
    views_made[proxy] = true
    return proxy
  end
  return view(t)
end

return readonly
