#!/usr/bin/env python3
"""HTTP load test of the example app against the reference stack, with CPU and memory.

Runs ``../shared/bench/run_bench.py`` (wrk against ``list`` and ``detail``) for tenantry and for
the reference FastAPI stack, alternating their order run by run (T F, F T, T F, ...), and watches
each run from outside:

- CPU time of the app (every process of its session: tenantry's one process, or uvicorn's
  master and workers) and of the PostgreSQL backends of the bench's database, from
  ``/proc/<pid>/stat``, summed over the measured wrk run of each scenario (not its warm-up),
  divided by the requests wrk counted: CPU per request;
- the app's resident memory (RSS, summed over its processes) once wrk has been loading it for
  60 s in total (warm-ups included), and its maximum;
- the load average before and after each run.

It writes ``<out>/<label>-<time>.json`` (run_bench.py's report) and beside it
``<label>-<time>.watch.json``, then prints medians (min-max) per label and scenario and the
ratios tenantry / reference. Nothing here asserts anything about time: run_bench.py checks the
answers (200, 50 invoices of the right tenant) before loading.

    python3 benches/http/run.py --runs 3 --app-cmd "exec $PWD/target/release/tenantry-example"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN_BENCH = (HERE / "../../../shared/bench/run_bench.py").resolve()
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def procs() -> list[tuple[int, str, list[str]]]:
    """(pid, stat line, argv) of every process."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        out.append((int(d), stat, [a.decode(errors="replace") for a in argv if a]))
    return out


def fields(stat: str) -> list[str]:
    # The command name (field 2) may hold spaces; everything after its ')' splits cleanly.
    return stat[stat.rindex(")") + 2 :].split()


def cpu_s(stat: str) -> float:
    f = fields(stat)
    return (int(f[11]) + int(f[12])) / TICK  # utime + stime


def parent(stat: str) -> int:
    return int(fields(stat)[1])


def session(stat: str) -> int:
    return int(fields(stat)[3])


def rss_bytes(stat: str) -> int:
    return int(fields(stat)[21]) * PAGE


def session_of(pid: int) -> int:
    try:
        return session(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return -1


class Watch(threading.Thread):
    """Samples the app's and the bench database's backends' CPU, and the app's RSS."""

    def __init__(self, driver: int, duration: int) -> None:
        super().__init__(daemon=True)
        self.driver = driver  # run_bench.py's pid: the app is its child, in a session of its own
        self.duration = duration
        self.stop = threading.Event()
        self.cpu = {}  # scenario -> {"app": s, "pg": s}
        self.loaded_s = 0.0  # seconds during which a wrk ran
        self.rss_at_60 = None
        self.rss_max = 0

    def run(self) -> None:
        last: dict[int, float] = {}
        last_t = time.monotonic()
        while not self.stop.is_set():
            time.sleep(0.1)
            now = time.monotonic()
            ps = procs()
            wrk = [a for _, _, a in ps if a and a[0].endswith("wrk")]
            measured = None
            for a in wrk:
                if f"-d{self.duration}s" in a:
                    lua = next((x for x in a if x.endswith(".lua")), "")
                    measured = Path(lua).stem
            sids = {session(st) for _, st, _ in ps if parent(st) == self.driver and session(st) != session_of(self.driver)}
            app = {pid: st for pid, st, _ in ps if sids and session(st) in sids}
            pg = {pid: st for pid, st, a in ps if a and a[0].startswith("postgres:") and "peer_bench_" in a[0]}
            cur = {pid: cpu_s(st) for pid, st in {**app, **pg}.items()}
            if wrk:
                self.loaded_s += now - last_t
                rss = sum(rss_bytes(st) for st in app.values())
                self.rss_max = max(self.rss_max, rss)
                if self.rss_at_60 is None and self.loaded_s >= 60:
                    self.rss_at_60 = rss
            if measured:
                bucket = self.cpu.setdefault(measured, {"app": 0.0, "pg": 0.0})
                for pid, c in cur.items():
                    # A process new since the last sample ran only since then.
                    delta = c - last[pid] if pid in last else c
                    bucket["app" if pid in app else "pg"] += max(delta, 0.0)
            last = cur
            last_t = now


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def one_run(label: str, app_cmd: str | None, args: argparse.Namespace, python: str) -> dict:
    cmd = [python, str(RUN_BENCH), "--label", label, "--out", args.out, "--duration", str(args.duration), "--warmup", str(args.warmup)]
    if app_cmd:
        cmd += ["--app-cmd", app_cmd]
    before = loadavg()
    started = time.time()
    driver = subprocess.Popen(cmd)
    # The app is the child run_bench.py starts in a new session (uvicorn's workers share it).
    watch = Watch(driver.pid, args.duration)
    watch.start()
    if driver.wait() != 0:
        raise SystemExit(f"run_bench.py failed for {label}")
    watch.stop.set()
    watch.join()
    after = loadavg()
    report = max(
        (p for p in Path(args.out).glob(f"{label}-*.json") if not p.name.endswith(".watch.json")),
        key=lambda p: p.stat().st_mtime,
    )
    assert report.stat().st_mtime >= started, "run_bench.py wrote no report"
    rep = json.loads(report.read_text())
    watched = {
        "load_before": before,
        "load_after": after,
        "rss_at_60s_mb": None if watch.rss_at_60 is None else watch.rss_at_60 / 2**20,
        "rss_max_mb": watch.rss_max / 2**20,
        "cpu_us_per_request": {
            scen: {k: v * 1e6 / rep["results"][scen]["requests"] for k, v in watch.cpu.get(scen, {}).items()}
            for scen in rep["results"]
        },
    }
    report.with_suffix(".watch.json").write_text(json.dumps(watched, indent=2) + "\n")
    print(f"{label}: load {before} -> {after}; RSS at 60 s {watched['rss_at_60s_mb']} MB; CPU/req {watched['cpu_us_per_request']}", flush=True)
    return {"report": rep, "watch": watched}


def med(vals: list[float]) -> str:
    return f"{statistics.median(vals):,.1f} ({min(vals):,.1f}-{max(vals):,.1f})" if len(vals) > 1 else f"{vals[0]:,.1f}"


def summarize(runs: dict[str, list[dict]]) -> None:
    print("\n| label | scenario | runs | req/s | p50 ms | p99 ms | app CPU µs/req | PG CPU µs/req | non-2xx |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    medians: dict[tuple[str, str], dict[str, float]] = {}
    for label, rs in runs.items():
        for scen in ("list", "detail"):
            res = [r["report"]["results"][scen] for r in rs]
            cpu = [r["watch"]["cpu_us_per_request"][scen] for r in rs]
            rps = [x["rps"] for x in res]
            p50 = [x["latency_us"]["p50"] / 1000 for x in res]
            p99 = [x["latency_us"]["p99"] / 1000 for x in res]
            app = [c.get("app", 0.0) for c in cpu]
            pg = [c.get("pg", 0.0) for c in cpu]
            medians[(label, scen)] = {"rps": statistics.median(rps), "p99": statistics.median(p99)}
            print(
                f"| {label} | {scen} | {len(rs)} | {med(rps)} | {med(p50)} | {med(p99)} | {med(app)} | {med(pg)} | "
                f"{sum(x['errors']['status'] for x in res)} |"
            )
    if "tenantry" in runs and "fastapi" in runs:
        for scen in ("list", "detail"):
            t, f = medians[("tenantry", scen)], medians[("fastapi", scen)]
            print(f"{scen}: throughput x{t['rps'] / f['rps']:.1f}, p99 {t['p99']:.2f} ms vs {f['p99']:.2f} ms (1/{f['p99'] / t['p99']:.1f})")
    for label, rs in runs.items():
        rss = [r["watch"]["rss_at_60s_mb"] for r in rs if r["watch"]["rss_at_60s_mb"] is not None]
        mx = [r["watch"]["rss_max_mb"] for r in rs]
        loads = [f"{r['watch']['load_before']} -> {r['watch']['load_after']}" for r in rs]
        print(f"{label}: RSS after 60 s of load {med(rss) if rss else '?'} MB, max {med(mx)} MB; load averages {loads}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--app-cmd", required=True, help="tenantry's command, e.g. exec $PWD/target/release/tenantry-example")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--python", default=os.environ.get("BENCH_PYTHON", "/tmp/bench-venv/bin/python"))
    ap.add_argument("--only", choices=["tenantry", "fastapi"], help="run one label only")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {"tenantry": [], "fastapi": []}
    for i in range(args.runs):
        order = ["tenantry", "fastapi"] if i % 2 == 0 else ["fastapi", "tenantry"]
        for label in order:
            if args.only and label != args.only:
                continue
            runs[label].append(one_run(label, args.app_cmd if label == "tenantry" else None, args, args.python))
    summarize({k: v for k, v in runs.items() if v})
    return 0


if __name__ == "__main__":
    sys.exit(main())
