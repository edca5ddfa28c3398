-- wrk script: POST /register-request with a small JSON body, as reprice sends it.
wrk.method = "POST"
wrk.body = '{"tick":1,"book":null,"avg_comp_price":6210.35}'
wrk.headers["Content-Type"] = "application/json"
