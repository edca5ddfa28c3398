-- wrk script for load-monitor: POST /addserver with a record for one of N servers, cycling
-- through the servers so every request updates a different server's rings (no "dt": now).
-- Usage: wrk -s benches/load-monitor-post.lua http://127.0.0.1:PORT/addserver -- [SERVERS]
local servers = 10000
local counter = 0

function init(args)
  if args[1] then servers = tonumber(args[1]) end
  -- Each wrk thread starts at a different offset so threads do not post in lockstep.
  counter = math.random(0, servers - 1)
end

function request()
  counter = counter + 1
  local i = counter % servers
  local cpu = (counter % 997) / 10
  local body = string.format('{"server":"server%05d","cpu":%.1f,"ram":%.1f}', i, cpu, cpu * 5)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
