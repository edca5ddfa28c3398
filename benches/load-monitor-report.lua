-- wrk script for load-monitor: GET /report/<server> for servers picked at random among N.
-- Usage: wrk -s benches/load-monitor-report.lua http://127.0.0.1:PORT -- [SERVERS]
local servers = 10000

function init(args)
  if args[1] then servers = tonumber(args[1]) end
  math.randomseed(os.time() + math.random(1, 1000000))
end

function request()
  return wrk.format("GET", string.format("/report/server%05d", math.random(0, servers - 1)))
end
