#!/usr/bin/env bash
# Usage: citus_vs_direct.sh BIN — `list` and `detail` of the example (dev mode, release BIN),
# straight to PostgreSQL (tenantry_bench_direct on :5432) and through the Citus coordinator
# (citus_bench on :5440, the plan applied), each database migrated and seeded as BENCHMARKS.md
# says. wrk: 2 threads, 32 connections, 3 s warm-up, 10 s measured.
set -u
BIN=$1
run() { # name db_url port
    local name=$1 url=$2 port=$3
    DATABASE_URL=$url TENANTRY_AUTH_MODE=dev TENANTRY_DEV_USER_EMAIL=dev@example.com \
        TENANTRY_BIND=127.0.0.1:$port RUST_LOG=warn timeout 60 "$BIN" > /tmp/bench-$name.log 2>&1 &
    for _ in $(seq 1 50); do curl -s -o /dev/null http://127.0.0.1:$port/healthz && break; sleep 0.2; done
    local id
    id=$(curl -s "http://127.0.0.1:$port/api/invoices?limit=1" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
    wrk -t2 -c32 -d3s "http://127.0.0.1:$port/api/invoices?limit=50" > /dev/null
    echo "== $name list";   wrk -t2 -c32 -d10s --latency "http://127.0.0.1:$port/api/invoices?limit=50" | grep -E "Requests/sec|99%|Non-2xx"
    wrk -t2 -c32 -d3s "http://127.0.0.1:$port/api/invoices/$id" > /dev/null
    echo "== $name detail"; wrk -t2 -c32 -d10s --latency "http://127.0.0.1:$port/api/invoices/$id" | grep -E "Requests/sec|99%|Non-2xx"
}
run direct postgres://postgres@127.0.0.1:5432/tenantry_bench_direct 3410

run citus postgres://postgres@127.0.0.1:5440/citus_bench 3411
