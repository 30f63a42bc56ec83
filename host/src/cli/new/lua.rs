//! The Lua scaffold's script, `main.lua`: every hook, each with a comment
//! saying when it runs. `@name@` stands for the plugin's name.

/// `main.lua`.
pub(super) const MAIN_LUA: &str = r#"-- @name@: greets the name of each @name@.in event on @name@.out.
--
-- Every hook is optional: delete the ones you do not need. The bindings
-- used here (bus, config, state, log, outcome) and the others (telemetry,
-- timer) are described in docs/lua.md of the plughost repository.

-- Runs once after the plugin loads, and again after each reload, before any
-- event. An error here keeps the plugin from starting.
function init()
  -- `state` survives reloads: set a key only when it is not there yet.
  state.count = state.count or 0
  log.info("greeting with " .. tostring(config.greeting))
end

-- Runs for each event matching `subscriptions` in plugin.yaml, one at a
-- time, in publish order. Returning nothing acknowledges the event; an
-- error raised dead-letters it, and the plugin goes on with the next one.
function on_event(event)
  local name = event.payload.name
  if type(name) ~= "string" then
    -- Dead-letters the event (on plughost.dead_letter) with this reason.
    return outcome.drop("payload.name must be a string")
  end
  state.count = state.count + 1
  bus.publish("@name@.out", {
    text = tostring(config.greeting) .. ", " .. name .. "!",
    count = state.count,
  })
end

-- Runs when a save of plugin.yaml changed only `config`; the global `config`
-- already holds the new values. Without this hook the plugin is reloaded.
function on_config(new_config)
  log.info("greeting now with " .. tostring(new_config.greeting))
end

-- Runs before the plugin stops: host shutdown, unload, or a reload
-- replacing it.
function shutdown()
  log.info("greeted " .. state.count .. " time(s)")
end
"#;
