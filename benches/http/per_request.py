#!/usr/bin/env python3
"""What one request of ``list`` and ``detail`` costs an app, in measures that hold on a loaded machine.

Issue 18 compares the example app with the bare anchor (``../shared/bench/peer-bare-axum``). Req/s
depend on what else runs on the machine; these do not (or much less):

- ``--mode cpu``: CPU time (utime + stime from ``/proc/<pid>/stat``) of the app's processes and of
  the PostgreSQL backends of the bench's database, read before and after a measured wrk run
  (run_bench.py's Lua: a random token, tenant and invoice per request; 2 threads, 32
  connections), divided by the requests wrk counted;
- ``--mode callgrind``: the app runs under ``valgrind --tool=callgrind``; after a warm-up, the
  counters are zeroed (``callgrind_control -z``), a fixed number of requests is sent, and the
  profile is dumped (``callgrind_control -d``): instructions per request, and calls to the
  allocator (``malloc``, ``calloc``, ``realloc``, ``posix_memalign``) per request, from the dump;
- ``--mode wire``: the app reaches PostgreSQL through a proxy here that counts each protocol
  message by type, in both directions, over a fixed number of requests after a warm-up:
  statements (``Execute`` + simple ``Query``) and messages per request.

Each mode creates a fresh database and role, starts the app in ``cloudflare`` mode with
``TENANTRY_ENV=production`` and seeds 50 tenants x 2,000 invoices, with run_bench.py's own
functions (imported, unchanged), and checks every answer is 200. Fixed-count modes pick from
``--identities`` identities (default 1 under callgrind): both apps re-read a principal every second
at most, which a slowed-down app would otherwise pay on a large share of its requests.

    python3 benches/http/per_request.py --mode cpu --label tenantry --bin target/release/tenantry-example
    python3 benches/http/per_request.py --mode callgrind --label bare --bin /tmp/bare-axum-target/release/bare-axum
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import re
import secrets
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.client import HTTPConnection
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN_BENCH = (HERE / "../../../shared/bench/run_bench.py").resolve()
_spec = importlib.util.spec_from_file_location("run_bench", RUN_BENCH)
rb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rb)  # type: ignore[union-attr]

TICK = os.sysconf("SC_CLK_TCK")
ALLOC_FNS = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc"}


# --- /proc --------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        s = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return s[s.rindex(")") + 2 :].split()


def cpu_ticks(pid: int) -> int:
    f = _stat(pid)
    return 0 if f is None else int(f[11]) + int(f[12])


def session_pids(sid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _stat(int(d))
            if f is not None and int(f[3]) == sid:
                out.append(int(d))
    return out


def backends(dbname: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if argv.startswith("postgres:") and f" {dbname} " in argv:
            out.append(int(d))
    return out


def snapshot(app_sid: int, dbname: str) -> dict[str, dict[int, int]]:
    return {
        "app": {p: cpu_ticks(p) for p in session_pids(app_sid)},
        "pg": {p: cpu_ticks(p) for p in backends(dbname)},
    }


def delta_s(before: dict[int, int], after: dict[int, int]) -> float:
    # A process new since `before` ran only since then.
    return sum(max(t - before.get(p, 0), 0) for p, t in after.items()) / TICK


# --- a protocol-counting proxy ---------------------------------------------------------------


class WireCounter:
    """Forwards 127.0.0.1:<port> to PostgreSQL and counts each protocol message by type."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.counts: Counter[str] = Counter()
        self.queries: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _client(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection(*self.upstream)
        await asyncio.gather(self._pump(cr, sw, "F"), self._pump(sr, cw, "B"), return_exceptions=True)
        cw.close()
        sw.close()

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, side: str) -> None:
        try:
            if side == "F":  # the startup packet has no type byte
                head = await r.readexactly(4)
                body = await r.readexactly(struct.unpack("!I", head)[0] - 4)
                w.write(head + body)
            while True:
                t = await r.readexactly(1)
                head = await r.readexactly(4)
                body = await r.readexactly(struct.unpack("!I", head)[0] - 4)
                kind = t.decode()
                with self.lock:
                    self.counts[f"{side}:{kind}"] += 1
                    if side == "F" and kind == "Q":
                        self.queries[body[:-1].decode(errors="replace")[:120]] += 1
                w.write(t + head + body)
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()

    def take(self) -> tuple[Counter[str], Counter[str]]:
        with self.lock:
            return Counter(self.counts), Counter(self.queries)


# --- a fixed-count client ----------------------------------------------------------------


def fixed_requests(base_url: str, entries: list[dict], scenario: str, n: int, conns: int, seed: int) -> int:
    """Sends `n` requests over `conns` keep-alive connections; returns how many answered 200."""
    host, port = base_url.removeprefix("http://").split(":")
    ok = [0] * conns
    bad: list[str] = []

    def worker(i: int) -> None:
        rnd = random.Random(seed * 1000 + i)
        c = HTTPConnection(host, int(port), timeout=120)
        for _ in range(n // conns + (1 if i < n % conns else 0)):
            e = rnd.choice(entries)
            path = "/api/invoices?limit=50" if scenario == "list" else f"/api/invoices/{rnd.choice(e['ids'])}"
            c.request("GET", path, headers={"Cf-Access-Jwt-Assertion": e["token"], "X-Tenant": e["tenant"]})
            r = c.getresponse()
            body = r.read()
            if r.status == 200:
                ok[i] += 1
            elif len(bad) < 3:
                bad.append(f"{r.status} {body[:200]!r}")
        c.close()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if bad:
        raise RuntimeError(f"non-200 answers: {bad}")
    return sum(ok)


# --- callgrind ---------------------------------------------------------------------------


def callgrind_dump(pid: int, out_dir: Path, before: set[Path]) -> Path:
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True, timeout=600)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        new = sorted(set(out_dir.glob(f"cg.{pid}.*")) - before)
        if new:
            time.sleep(1.0)  # let valgrind finish writing it
            return new[-1]
        time.sleep(0.2)
    raise RuntimeError("callgrind wrote no dump")


def callgrind_totals(path: Path) -> dict[str, int]:
    """Instructions (Ir) of the dump and the calls into the allocator it records."""
    names: dict[str, str] = {}
    total = 0
    allocs = 0
    cfn = None
    name_re = re.compile(r"^\((\d+)\)(?: (.*))?$")

    def fn_name(spec: str) -> str:
        m = name_re.match(spec)
        if not m:
            return spec
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), "")

    with path.open() as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
            elif line.startswith("fn="):
                fn_name(line[3:].strip())
            elif line.startswith("cfn="):
                cfn = fn_name(line[4:].strip())
            elif line.startswith("calls=") and cfn is not None:
                if cfn in ALLOC_FNS:
                    allocs += int(line[6:].split()[0])
                cfn = None
    return {"instructions": total, "allocations": allocs}


# --- the run -----------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["cpu", "callgrind", "wire"], required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--bin", required=True, help="the app's binary")
    ap.add_argument("--pg-admin-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--duration", type=int, default=20, help="cpu: seconds of the measured wrk run")
    ap.add_argument("--warmup", type=int, default=5, help="cpu: seconds of wrk warm-up")
    ap.add_argument("--requests", type=int, default=2000, help="callgrind/wire: requests measured")
    ap.add_argument("--warmup-requests", type=int, default=300)
    ap.add_argument("--conns", type=int, default=4, help="callgrind/wire: client connections")
    ap.add_argument("--fixed", action="store_true", help="cpu: the fixed-count client instead of wrk")
    ap.add_argument("--identities", type=int, default=None, help="identities picked from (default: all; 1 under callgrind)")
    ap.add_argument("--scenarios", default="list,detail")
    ap.add_argument("--out", default="bench-results/per-request")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the app")
    args = ap.parse_args()
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    identities = args.identities or (1 if args.mode == "callgrind" else 10**9)

    import psycopg
    from psycopg import sql as pgsql

    suffix = secrets.token_hex(4)
    dbname, role, pw = f"peer_bench_{suffix}", f"peer_bench_app_{suffix}", secrets.token_hex(12)
    admin = psycopg.connect(args.pg_admin_url, autocommit=True)
    admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD {}").format(pgsql.Identifier(role), pgsql.Literal(pw)))
    admin.execute(pgsql.SQL("CREATE DATABASE {} OWNER {}").format(pgsql.Identifier(dbname), pgsql.Identifier(role)))
    proxy = None
    admin_url = args.pg_admin_url
    if args.mode == "wire":
        proxy = WireCounter(("127.0.0.1", 5432))
        admin_url = admin_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    app_db_url = rb._url(admin_url, dbname, role, pw) + "?sslmode=disable"
    certs = rb.Certs()
    port = rb.free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTRY_") and k != "DATABASE_URL"}
    env.update(
        DATABASE_URL=app_db_url, TENANTRY_BIND=f"127.0.0.1:{port}", TENANTRY_ENV="production",
        TENANTRY_AUTH_MODE="cloudflare", TENANTRY_CF_TEAM_DOMAIN=rb.TEAM, TENANTRY_CF_AUDIENCE=rb.AUD,
        TENANTRY_CF_CERTS_URL=certs.url, TENANTRY_LOG_LEVEL="warning",
    )
    env.update(dict(kv.split("=", 1) for kv in args.env))
    cmd = [str(Path(args.bin).resolve())]
    if args.mode == "callgrind":
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/cg.%p"] + cmd
    work = Path(tempfile.mkdtemp(prefix="per-request-"))
    log = open(work / "app.log", "wb")
    proc = None
    result: dict = {
        "label": args.label, "mode": args.mode, "bin": args.bin, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_before": Path("/proc/loadavg").read_text().split()[:3], "scenarios": {},
    }
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 600
        while True:
            try:
                if rb.httpx.get(base_url + "/healthz", timeout=5).status_code == 200:
                    break
            except rb.httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"app did not start; log {work / 'app.log'}")
            time.sleep(0.5)
        with psycopg.connect(rb._url(args.pg_admin_url, dbname, None, None), autocommit=True) as db:
            for stmt in (s.strip() for s in rb.SEED_SQL.split(";\n")):
                if stmt:
                    db.execute(stmt, {"tenants": 50, "invoices": 2000})
            db.execute("ANALYZE")
            rows = db.execute(
                """SELECT t.slug, u.email, (array_agg(i.id::text ORDER BY random()))[1:50]
                   FROM tenants t JOIN memberships m ON m.tenant_id = t.id JOIN users u ON u.id = m.user_id
                   JOIN invoices i ON i.tenant_id = t.id GROUP BY t.slug, u.email ORDER BY t.slug"""
            ).fetchall()
        entries = [{"token": certs.token(email), "tenant": slug, "ids": ids} for slug, email, ids in rows]
        picked = entries[:identities]
        for name in args.scenarios.split(","):
            scen: dict = {}
            if args.mode == "cpu" and args.fixed:
                # Every request completes: none is cancelled at the end of a run, as wrk's last
                # ones are (tenantry closes a connection whose transaction was dropped midway,
                # so after a wrk run its pool reopens connections, whose start and cold caches
                # would count here).
                fixed_requests(base_url, picked, name, args.warmup_requests, args.conns, seed=1)
                before = snapshot(proc.pid, dbname)
                t0 = time.monotonic()
                n = fixed_requests(base_url, picked, name, args.requests, args.conns, seed=2)
                el = time.monotonic() - t0
                after = snapshot(proc.pid, dbname)
                scen = {
                    "requests": n, "rps": n / el,
                    "app_cpu_us": delta_s(before["app"], after["app"]) * 1e6 / n,
                    "pg_cpu_us": delta_s(before["pg"], after["pg"]) * 1e6 / n,
                    "pg_backends": len(after["pg"]), "pg_backends_before": len(before["pg"]),
                }
            elif args.mode == "cpu":
                data = work / "bench_data.lua"
                data.write_text(
                    "return {\n" + ",\n".join(
                        "{token=%s, tenant=%s, ids={%s}}" % (json.dumps(e["token"]), json.dumps(e["tenant"]), ",".join(json.dumps(i) for i in e["ids"]))
                        for e in picked
                    ) + "\n}\n"
                )
                lua = work / f"{name}.lua"
                lua.write_text(rb.LUA % {"data": str(data), "path_expr": rb.SCENARIOS[name]})
                rb.run_wrk(base_url, lua, 2, 32, args.warmup)
                before = snapshot(proc.pid, dbname)
                r = rb.run_wrk(base_url, lua, 2, 32, args.duration)
                after = snapshot(proc.pid, dbname)
                n = r["requests"]
                if r["errors"]["status"] or any(v for k, v in r["errors"].items() if k != "status"):
                    raise RuntimeError(f"wrk errors: {r['errors']}")
                scen = {
                    "requests": n, "rps": r["rps"], "p50_ms": r["latency_us"]["p50"] / 1000, "p99_ms": r["latency_us"]["p99"] / 1000,
                    "app_cpu_us": delta_s(before["app"], after["app"]) * 1e6 / n,
                    "pg_cpu_us": delta_s(before["pg"], after["pg"]) * 1e6 / n,
                    "pg_backends": len(after["pg"]),
                }
            else:
                fixed_requests(base_url, picked, name, args.warmup_requests, args.conns, seed=1)
                if args.mode == "callgrind":
                    dumps = set(out_dir.glob(f"cg.{proc.pid}.*"))
                    subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True, timeout=600)
                    n = fixed_requests(base_url, picked, name, args.requests, args.conns, seed=2)
                    dump = callgrind_dump(proc.pid, out_dir, dumps)
                    final = out_dir / f"{args.label}-{name}.callgrind"
                    dump.rename(final)
                    t = callgrind_totals(final)
                    scen = {
                        "requests": n, "instructions_per_request": t["instructions"] / n,
                        "allocations_per_request": t["allocations"] / n, "profile": str(final),
                    }
                else:
                    assert proxy is not None
                    c0, q0 = proxy.take()
                    n = fixed_requests(base_url, picked, name, args.requests, args.conns, seed=2)
                    time.sleep(0.5)
                    c1, q1 = proxy.take()
                    d = {k: (c1[k] - c0[k]) / n for k in sorted(c1) if c1[k] != c0[k]}
                    qs = {k: (q1[k] - q0[k]) / n for k in q1 if q1[k] != q0[k]}
                    scen = {
                        "requests": n, "messages_per_request": d,
                        "client_messages": sum(v for k, v in d.items() if k.startswith("F:")),
                        "server_messages": sum(v for k, v in d.items() if k.startswith("B:")),
                        "statements": d.get("F:E", 0) + d.get("F:Q", 0),
                        "syncs": d.get("F:S", 0), "ready_for_query": d.get("B:Z", 0),
                        "simple_queries": qs,
                    }
            result["scenarios"][name] = scen
            print(f"{args.label} {args.mode} {name}: {json.dumps(scen)}", flush=True)
    finally:
        result["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        certs.stop()
        admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(dbname)))
        admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(role)))
        admin.close()
    out = out_dir / f"{args.label}-{args.mode}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
