-- wordcount: counts words in text.raw and publishes text.stats.
local words = require "words"

function init()
  state.total = state.total or 0
end

function on_event(event)
  local text = event.payload.text
  if type(text) ~= "string" then
    return outcome.drop("payload.text must be a string")
  end
  local list = words.split(text, config.min_length)
  state.total = state.total + #list
  bus.publish("text.stats", {
    text = text,
    words = #list,
    longest = words.longest(list),
    total = state.total,
  })
end
