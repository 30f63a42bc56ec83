-- plughost's Lua prelude: runs once in every plugin interpreter, before the
-- plugin's own code. It narrows the standard library to the allow-list and
-- makes `pcall`, `xpcall` and `coroutine.resume` unable to swallow the
-- host's time limit. Given by the host: `check_budget`, which raises the time
-- limit error once the hook call's deadline has passed, and `to_script`,
-- which turns an error raised by a binding (an opaque userdata) into the
-- positioned string a script expects.
local check_budget, to_script = ...

local raw_load, raw_pcall, raw_xpcall, raw_resume = load, pcall, xpcall, coroutine.resume
local error, select, setmetatable, type, next, tostring = error, select, setmetatable, type, next, tostring

-- Text chunks only: binary chunks bypass the compiler's checks.
load = function(chunk, name, _mode, env)
  return raw_load(chunk, name, "t", env)
end
dofile, loadfile = nil, nil
string.dump = nil

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
xpcall = function(f, handler, ...)
  if type(handler) ~= "function" then return raw_xpcall(f, handler, ...) end
  return pass(raw_xpcall(f, function(e) return handler(to_script(e)) end, ...))
end
coroutine.resume = function(co, ...) return pass(raw_resume(co, ...)) end

-- Read-only views of the config, built lazily and cached per table.
local function readonly(t)
  local views = {}
  local function view(v)
    if type(v) ~= "table" then return v end
    local existing = views[v]
    if existing then return existing end
    local proxy = setmetatable({}, {
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
    return proxy
  end
  return view(t)
end

return readonly
