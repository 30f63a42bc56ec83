-- Word helpers, loaded with `require "words"` from the plugin's own folder.
local M = {}

function M.split(text, min_length)
  local list = {}
  for word in text:gmatch("%S+") do
    if #word >= min_length then
      list[#list + 1] = word
    end
  end
  return list
end

function M.longest(list)
  local best = ""
  for _, word in ipairs(list) do
    if #word > #best then best = word end
  end
  return best
end

return M
