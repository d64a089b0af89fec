-- wrk script for bench/gateway.py: POST the README's order as JSON.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"customerId":"customer-123","items":[{"productId":"prod-1","quantity":2,"price":19.99},{"productId":"prod-2","quantity":1,"price":49.99}]}'
