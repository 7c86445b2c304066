-- wrk script: every request is a POST of a small KServe-V1-like JSON body.
-- No request()/response() callbacks: they would make wrk itself the bottleneck on the direct path.
-- Keep this body in sync with BODY in run.py (bombardier sends the same bytes).
wrk.method = "POST"
wrk.body = '{"instances":[[1.0,2.0,3.0,4.0],[5.0,6.0,7.0,8.0]]}'
wrk.headers["Content-Type"] = "application/json"
