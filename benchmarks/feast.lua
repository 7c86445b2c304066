-- wrk script: every request asks a Feast feature server (through mlchaos) for the four features of
-- benchmarks/feast_paired.py's feature repo, for two known drivers and an unknown one.
-- Keep this body in sync with BODY in feast_paired.py.
wrk.method = "POST"
wrk.path = "/get-online-features"
wrk.body = '{"features":["driver_hourly_stats:conv_rate","driver_hourly_stats:acc_rate",' ..
   '"driver_hourly_stats:avg_daily_trips","driver_hourly_stats:city"],"entities":{"driver_id":[1001,1002,99999]}}'
wrk.headers["Content-Type"] = "application/json"
