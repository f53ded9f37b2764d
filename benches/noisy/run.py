#!/usr/bin/env python3
"""Issue 19's noisy neighbour, over HTTP: one steady tenant beside a flooding one.

Starts the example app in ``cloudflare`` mode with ``TENANTRY_ENV=production`` on a fresh
database (the setup of ``../shared/bench/run_bench.py``, whose helpers it imports: a local certs
server, 50 tenants x 2,000 invoices, one partner per tenant), then runs four phases of
``--duration`` seconds with wrk:

1. **baseline**: tenant B alone, 4 connections of ``GET /api/invoices?limit=50``;
2. **flood**: B as before, and tenant A with 64 connections alternating
   ``GET /api/invoices?limit=500`` and ``POST /api/invoices``;
3. **locks**: B as before, while a session holds row locks on 100 of A's invoices (A's own long
   transaction) and A's 64 connections PATCH those invoices (each PATCH waits for its row up to
   ``TENANTRY_DB_LOCK_TIMEOUT``, holding a pooled connection);
4. **after**: B alone again.

It prints, per phase, B's requests, p50 and p99 latency and errors (non-2xx and socket errors)
and A's answers by status, and writes them to ``<out>/noisy-<share>-<time>.json`` with the app's
``/metrics`` at the end. ``--share off`` runs the app with fair sharing off (what tenantry did
before issue 19); the default runs it with its defaults (``TENANTRY_TENANT_SHARE=50%``). Nothing
here asserts anything about time; traffic goes to 127.0.0.1 only and every phase is bounded.

    /tmp/bench-venv/bin/python benches/noisy/run.py --app-cmd "exec $PWD/target/release/tenantry-example"
    /tmp/bench-venv/bin/python benches/noisy/run.py --share off --app-cmd "..."
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str((HERE / "../../../shared/bench").resolve()))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql as pgsql  # noqa: E402

import run_bench as rb  # noqa: E402  (the shared bench's setup: certs, seed, URLs)

A, B = "bench-1", "bench-2"

# Counts answers by status in each thread; `done` prints them with the latency summary.
LUA = r"""
local data = dofile("%(data)s")
local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end
function init(args)
  statuses = {}
  n = 0
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
end
function request()
  n = n + 1
  wrk.headers["Cf-Access-Jwt-Assertion"] = data.token
  wrk.headers["X-Tenant"] = data.tenant
  wrk.headers["Content-Type"] = "application/json"
  %(request)s
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do all[k] = (all[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(all) do table.insert(parts, string.format('"%%d":%%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%%d,"duration_us":%%d,"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d},' ..
    '"statuses":{%%s},"latency_us":{"p50":%%d,"p90":%%d,"p99":%%d,"max":%%d}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ","), latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""

STEADY = 'return wrk.format("GET", "/api/invoices?limit=50")'
FLOOD = r"""if n % 2 == 0 then
    return wrk.format("GET", "/api/invoices?limit=500")
  end
  local body = string.format('{"project_id":"%s","number":"F-%d-%d-%d","amount_cents":100,"currency":"EUR"}',
    data.project, tid, n, math.random(1000000000))
  return wrk.format("POST", "/api/invoices", nil, body)"""
LOCKS = r"""local id = data.locked[math.random(#data.locked)]
  return wrk.format("PATCH", "/api/invoices/" .. id, nil, '{"status":"paid"}')"""


def lua_file(work: Path, name: str, data: dict, request: str) -> Path:
    data_path = work / f"{name}_data.lua"

    def lua(v):
        if isinstance(v, list):
            return "{" + ",".join(lua(x) for x in v) + "}"
        return json.dumps(v)

    data_path.write_text("return {" + ",".join(f"{k}={lua(v)}" for k, v in data.items()) + "}\n")
    path = work / f"{name}.lua"
    path.write_text(LUA % {"data": str(data_path), "request": request})
    return path


def wrk(base_url: str, lua: Path, connections: int, duration: int, out: dict, key: str) -> threading.Thread:
    def go() -> None:
        cmd = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(lua), base_url]
        text = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
        line = next((ln for ln in text.splitlines() if ln.startswith("WRK_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk produced no result:\n{text}")
        out[key] = json.loads(line[len("WRK_JSON "):])

    t = threading.Thread(target=go)
    t.start()
    return t


def summary(r: dict) -> dict:
    errors = r["errors"]
    return {
        "requests": r["requests"],
        "p50_ms": r["latency_us"]["p50"] / 1000,
        "p99_ms": r["latency_us"]["p99"] / 1000,
        "errors": errors["status"] + errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "statuses": r["statuses"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--app-cmd", required=True)
    ap.add_argument("--share", default="50%", help="TENANTRY_TENANT_SHARE (50%%, 0.25, off)")
    ap.add_argument("--queue", help="TENANTRY_TENANT_QUEUE (default: the app's, the pool size)")
    ap.add_argument("--pg-admin-url", default=os.environ.get("PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--duration", type=int, default=20, help="seconds per phase (max 120)")
    ap.add_argument("--flood", type=int, default=64, help="A's connections")
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args()
    args.duration = min(args.duration, 120)
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="noisy-"))
    suffix = secrets.token_hex(4)
    dbname, role, pw = f"peer_bench_{suffix}", f"peer_bench_app_{suffix}", secrets.token_hex(12)
    admin = psycopg.connect(args.pg_admin_url, autocommit=True)
    admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD {}").format(pgsql.Identifier(role), pgsql.Literal(pw)))
    admin.execute(pgsql.SQL("CREATE DATABASE {} OWNER {}").format(pgsql.Identifier(dbname), pgsql.Identifier(role)))
    app_db_url = rb._url(args.pg_admin_url, dbname, role, pw) + "?sslmode=disable"
    certs = rb.Certs()
    port, metrics_port = rb.free_port(), rb.free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTRY_") and k != "DATABASE_URL"}
    env.update(
        DATABASE_URL=app_db_url,
        TENANTRY_BIND=f"127.0.0.1:{port}",
        TENANTRY_ENV="production",
        TENANTRY_AUTH_MODE="cloudflare",
        TENANTRY_CF_TEAM_DOMAIN=rb.TEAM,
        TENANTRY_CF_AUDIENCE=rb.AUD,
        TENANTRY_CF_CERTS_URL=certs.url,
        TENANTRY_TENANT_SHARE=args.share,
        TENANTRY_METRICS_BIND=f"127.0.0.1:{metrics_port}",
        RUST_LOG="warn",
    )
    if args.queue:
        env["TENANTRY_TENANT_QUEUE"] = args.queue
    log = open(work / "app.log", "wb")
    proc = None
    locker = None
    try:
        proc = subprocess.Popen(args.app_cmd, shell=True, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base_url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"app did not start; log {work / 'app.log'}")
            time.sleep(0.2)
        owner_url = rb._url(args.pg_admin_url, dbname, None, None)
        with psycopg.connect(owner_url, autocommit=True) as db:
            for stmt in (s.strip() for s in rb.SEED_SQL.split(";\n")):
                if stmt:
                    db.execute(stmt, {"tenants": 50, "invoices": 2000})
            db.execute("ANALYZE")
            who = {
                slug: (email, project, locked)
                for slug, email, project, locked in db.execute(
                    """
                    SELECT t.slug, u.email, (SELECT p.id::text FROM projects p WHERE p.tenant_id = t.id LIMIT 1),
                           (SELECT array_agg(id::text) FROM (SELECT i.id FROM invoices i WHERE i.tenant_id = t.id
                                                              ORDER BY i.number LIMIT 100) x)
                    FROM tenants t JOIN memberships m ON m.tenant_id = t.id JOIN users u ON u.id = m.user_id
                    WHERE t.slug IN (%s, %s)
                    """,
                    (A, B),
                ).fetchall()
            }
        data = {
            slug: {"token": certs.token(email, ttl=3600), "tenant": slug, "project": project, "locked": locked}
            for slug, (email, project, locked) in who.items()
        }
        steady = lua_file(work, "steady", data[B], STEADY)
        flood = lua_file(work, "flood", data[A], FLOOD)
        locks = lua_file(work, "locks", data[A], LOCKS)
        # warm-up: B and a little of A, so that pools and caches are filled
        warm: dict = {}
        for t in (wrk(base_url, steady, 4, 3, warm, "b"), wrk(base_url, flood, 8, 3, warm, "a")):
            t.join()

        d = args.duration
        phases: dict = {}

        def phase(name: str, noise: Path | None) -> None:
            out: dict = {}
            threads = []
            if noise is not None:
                # A starts first and ends last: B's whole run is under load.
                threads.append(wrk(base_url, noise, args.flood, d + 4, out, "a"))
                time.sleep(2)
            threads.append(wrk(base_url, steady, 4, d, out, "b"))
            for t in threads:
                t.join()
            phases[name] = {"b": summary(out["b"]), "a": summary(out["a"]) if "a" in out else None}
            b, a = phases[name]["b"], phases[name]["a"]
            a_text = "—" if a is None else f"{a['requests']:,} requests, by status {a['statuses']}"
            print(f"{name:8s} B p50 {b['p50_ms']:8.1f} ms  p99 {b['p99_ms']:8.1f} ms  errors {b['errors']} of {b['requests']:,}  |  A: {a_text}", flush=True)

        phase("baseline", None)
        phase("flood", flood)
        locker = psycopg.connect(owner_url)
        locker.execute("SELECT 1 FROM invoices WHERE id = ANY(%s::uuid[]) FOR UPDATE", (data[A]["locked"],))
        phase("locks", locks)
        locker.rollback()
        locker.close()
        locker = None
        phase("after", None)
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        report = {
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "share": args.share,
            "queue": args.queue,
            "duration_s": d,
            "flood_connections": args.flood,
            "load_average": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "phases": phases,
            "metrics": metrics,
        }
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"noisy-{args.share.replace('%', 'pct')}-{dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / "last-metrics.txt").write_text(metrics)
        print(f"report: {out}; the instance's /metrics at the end: {out_dir / 'last-metrics.txt'}")
        return 0
    finally:
        if locker is not None:
            locker.close()
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        certs.stop()
        admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(dbname)))
        admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(role)))


if __name__ == "__main__":
    sys.exit(main())
