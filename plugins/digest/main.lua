-- digest: summarises text.stats and reports dead letters.

function init()
  state.seen = state.seen or 0
  state.words = state.words or 0
end

function on_event(event)
  if event.topic == "plughost.dead_letter" then
    log.warn("dead letter from " .. event.payload.plugin, { error = event.payload.error })
    return
  end
  state.seen = state.seen + 1
  state.words = state.words + event.payload.words
  if state.seen % config.every == 0 then
    log.info(string.format("digest: %d texts, %d words, longest so far %q",
      state.seen, state.words, event.payload.longest))
  end
end
