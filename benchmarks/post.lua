-- wrk script: every request is a POST of a small KServe-V1-like JSON body.
-- Keep this body in sync with BODY in run.py.
wrk.method = "POST"
wrk.body = '{"instances":[[1.0,2.0,3.0,4.0],[5.0,6.0,7.0,8.0]]}'
wrk.headers["Content-Type"] = "application/json"

-- Fixed-rate mode, for the added-latency table. With MLCHAOS_BENCH_RATE set (total req/s, one wrk
-- thread), the requests follow one schedule with a slot every 1000/rate ms. After each response,
-- wrk asks delay() how long that connection waits: the connection takes the next free slot and waits
-- until then. The total rate is the schedule's and does not depend on response times, as long as the
-- connections keep up. A connection that finds the schedule behind sends at once. Slots more than
-- LATE_MS behind are dropped (the schedule restarts from now): a path that cannot hold the rate shows
-- it in wrk's Requests/sec instead of catching up in bursts. wrk starts a request's latency clock after the wait. wrk's timers take whole
-- milliseconds, so each wait is rounded up or down at random; the schedule itself stays exact.
-- Without the variable, delay() does not exist: wrk calls it only if the script defines it, and
-- the throughput runs must not pay for it.
local rate = tonumber(os.getenv("MLCHAOS_BENCH_RATE") or "")
if rate and rate > 0 then
   local ffi = require("ffi")
   ffi.cdef[[
      struct mlchaos_timespec { long tv_sec; long tv_nsec; };
      int clock_gettime(int clk_id, struct mlchaos_timespec *tp);
   ]]
   local CLOCK_MONOTONIC = 1
   local ts = ffi.new("struct mlchaos_timespec")
   local function now_ms()
      ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
      return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
   end

   local interval_ms = 1000 / rate
   local LATE_MS = 5
   local next_slot = nil

   function delay()
      local now = now_ms()
      if next_slot == nil or next_slot < now - LATE_MS then
         next_slot = now
      end
      local wait = next_slot - now
      next_slot = next_slot + interval_ms
      if wait <= 0 then
         return 0
      end
      return math.floor(wait + math.random())
   end
end
