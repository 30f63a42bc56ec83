-- heartbeat: a timer-driven source of text.raw events.

function init()
  state.beats = state.beats or 0
  timer.every(config.interval_ms, function()
    state.beats = state.beats + 1
    local sentences = config.sentences
    local text = sentences[(state.beats - 1) % #sentences + 1]
    local id = bus.publish("text.raw", { text = text, beat = state.beats })
    log.debug("beat", { beat = state.beats, id = id })
  end)
  log.info("heartbeat every " .. config.interval_ms .. " ms")
end

function shutdown()
  log.info("heartbeat stopping after " .. state.beats .. " beats")
end
