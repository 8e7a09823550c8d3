"""Tally against DuckDB on the same dataset: load, the timed analyses,
answers checked number for number (and many untimed checks: identity
linking on and off, trend, `--where` and `--by`), timings, sizes and
memory. Run by compare.sh, which prepares the virtualenv and the release
binaries.

Every phase runs as its own process under /usr/bin/time -v, one at a time,
so that wall times and peak memory belong to that phase alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The span the generator covers by default is [2026-08-04, 2026-11-02); the
# queries leave out its first and last week so that "first ever" must look
# before --from and funnels may finish after --to.
RANGE = {"from": "2026-08-10", "to": "2026-10-26"}
ANALYSES = {
    "funnel": {
        "steps": "page_view,signup,invoice_sent,plan_purchased",
        "window": "7d",
        **RANGE,
    },
    "retention": {
        "start": "signup",
        "return": "invoice_sent",
        "period": "week",
        "periods": "8",
        "as-of": "2026-11-02",
        **RANGE,
    },
    "activation": {
        "start": "signup",
        "event": "invoice_sent",
        "count": "2",
        "within": "30d",
        "as-of": "2026-11-02",
        **RANGE,
    },
    # Segmentation (issue 11): SPEC §4 trend and §5 filters and breakdowns.
    "trend#users-day": {"event": "any", "measure": "users", "interval": "day", **RANGE},
    "funnel#by-utm": {"steps": "page_view,signup,invoice_sent,plan_purchased",
                      "window": "7d", "by": "utm_source", "limit": "5", **RANGE},
    "retention#where": {"start": "signup", "return": "invoice_sent", "period": "week",
                        "periods": "8", "as-of": "2026-11-02",
                        "where": ["utm_source = google", "device ~ mob"], **RANGE},
}
NONE = {"identity": "none"}
FUNNEL = {"steps": "page_view,signup,invoice_sent,plan_purchased", "window": "7d", **RANGE}
ACTIVATION = {"start": "signup", "event": "invoice_sent", "count": "2", "within": "30d",
              "as-of": "2026-11-02", **RANGE}
RETENTION = {"start": "signup", "return": "invoice_sent", "period": "week", "periods": "8",
             "as-of": "2026-11-02", **RANGE}
# Not timed, only checked: edge cases of SPEC §4 that the timed queries
# exercise little or not at all (repeated funnel steps, equal-timestamp
# steps, short windows, `any` returns, daily periods, the start event
# counting toward activation, lifecycle and active users).
CHECKS = {
    "funnel#repeated": {"steps": "invoice_sent,invoice_sent,invoice_viewed,invoice_paid",
                        "window": "1d", **RANGE},
    "funnel#views": {"steps": "page_view,page_view,signup,onboarding_completed",
                     "window": "1h", **RANGE},
    "funnel#revenue": {"steps": "signup,plan_purchased,refund_issued", "window": "30d", **RANGE},
    "retention#any-daily": {"start": "signup", "return": "any", "period": "day",
                            "periods": "14", "as-of": "2026-11-02", **RANGE},
    "retention#self": {"start": "plan_purchased", "period": "week", "periods": "6",
                       "as-of": "2026-10-20", **RANGE},
    "activation#self": {"start": "signup", "event": "signup", "count": "1", "within": "7d",
                        "as-of": "2026-10-30", **RANGE},
    "activation#views": {"start": "page_view", "event": "invoice_viewed", "count": "3",
                         "within": "14d", "as-of": "2026-11-02", **RANGE},
    "lifecycle": dict(RANGE),
    "active": {"from": "2026-10-01", "to": "2026-10-26"},
    # SPEC §1 identity linking off: the person is the person key.
    "funnel#none": {**FUNNEL, **NONE},
    "funnel#views-none": {"steps": "page_view,page_view,signup,onboarding_completed",
                          "window": "1h", **RANGE, **NONE},
    "activation#none": {**ACTIVATION, **NONE},
    "retention#none": {**RETENTION, **NONE},
    "lifecycle#none": {**RANGE, **NONE},
    "active#none": {"from": "2026-10-01", "to": "2026-10-26", **NONE},
    "trend#users-none": {"event": "any", "measure": "users", "interval": "week", **RANGE,
                         **NONE},
    # SPEC §4 trend.
    "trend#events-day": {"event": "any", "measure": "events", "interval": "day", **RANGE},
    "trend#events-week": {"event": "any", "measure": "events", "interval": "week", **RANGE},
    "trend#users-week": {"event": "any", "measure": "users", "interval": "week", **RANGE},
    "trend#revenue-day": {"event": "any", "measure": "revenue", "interval": "day", **RANGE},
    "trend#revenue-week": {"event": "any", "measure": "revenue", "interval": "week", **RANGE},
    "trend#signup-users-day": {"event": "signup", "measure": "users", "interval": "day",
                               "from": "2026-08-12T06:30:00Z", "to": "2026-10-20T12:00:00Z"},
    # SPEC §5 --where.
    "funnel#where-google": {**FUNNEL, "where": ["utm_source = google"]},
    "funnel#where-not-us": {**FUNNEL, "where": ["country != US"]},
    "activation#where-mob": {**ACTIVATION, "where": ["device ~ mob"]},
    "activation#where-not-us": {**ACTIVATION, "where": ["country != US"]},
    "retention#where-google": {**RETENTION, "where": ["utm_source = google"]},
    "retention#where-mob-any": {**RETENTION, "return": "any", "where": ["device ~ mob"]},
    "lifecycle#where-not-us": {**RANGE, "where": ["country != US"]},
    "lifecycle#where-mob": {**RANGE, "where": ["device ~ mob"]},
    "lifecycle#where-amount": {**RANGE, "where": ["amount >= 29"]},
    "lifecycle#where-quoted": {**RANGE, "where": ['plan = "pro"', "country !~ U"]},
    "lifecycle#where-str-num": {**RANGE, "where": ["amount ~ 9"]},
    "lifecycle#where-lt": {**RANGE, "where": ["utm_source < m"]},
    "trend#revenue-where": {"event": "any", "measure": "revenue", "interval": "week",
                            "where": ["amount > 100"], **RANGE},
    "trend#where-num-ne": {"event": "any", "measure": "events", "interval": "week",
                           "where": ["steps_completed != 3"], **RANGE},
    "active#where-mob": {"from": "2026-10-01", "to": "2026-10-26", "where": ["device ~ mob"]},
    "funnel#where-none": {**FUNNEL, "where": ["country != US"], **NONE},
    # SPEC §5 --by.
    "funnel#by-country": {**FUNNEL, "by": "country", "limit": "5"},
    "funnel#by-device-none": {**FUNNEL, "by": "device", **NONE},
    "funnel#by-repeated": {"steps": "page_view,page_view,signup", "window": "1h",
                           "by": "path", "limit": "5", **RANGE},
    "activation#by-utm": {**ACTIVATION, "by": "utm_source", "limit": "5"},
    "activation#by-country": {**ACTIVATION, "by": "country", "limit": "5",
                              "where": ["device ~ mob"]},
    "retention#by-utm": {**RETENTION, "by": "utm_source"},
    "retention#by-country": {**RETENTION, "by": "country", "limit": "5"},
    "retention#by-where": {**RETENTION, "return": "any", "by": "device",
                           "where": ["country != US"]},
    "lifecycle#by-country": {**RANGE, "by": "country", "limit": "5"},
    "lifecycle#by-utm": {**RANGE, "by": "utm_source"},
    "trend#by-utm": {"event": "any", "measure": "users", "interval": "day",
                     "by": "utm_source", "limit": "5", **RANGE},
    "trend#by-country-week": {"event": "any", "measure": "events", "interval": "week",
                              "by": "country", "limit": "5", **RANGE},
    "trend#revenue-by-amount": {"event": "any", "measure": "revenue", "interval": "week",
                                "by": "amount", "limit": "5", **RANGE},
}
# Only on data where those properties exist (benches/compare/identity_data.py):
# booleans, nested paths, tied cohort events.
EXTRA_CHECKS = {
    "activation#by-trial": {**ACTIVATION, "by": "trial"},
    "activation#by-utm-dotted": {**ACTIVATION, "by": "utm.source", "limit": "3"},
    "retention#by-utm-ties": {**RETENTION, "by": "utm_source", "limit": "10"},
    "retention#where-trial": {**RETENTION, "where": ["trial = true"]},
    "lifecycle#where-trial-ne": {**RANGE, "where": ["trial != false"]},
    "trend#by-trial": {"event": "signup", "measure": "users", "interval": "week",
                       "by": "trial", **RANGE},
    "trend#where-dotted": {"event": "signup", "measure": "events", "interval": "day",
                           "where": ["utm.source = google"], **RANGE},
}
# Only on benches/compare/edge_events.ndjson, 28 hand-written events for
# SPEC §1 and §5's corners: tied links (the smallest user id wins), an
# earlier link beating a smaller id, a link made after --to by an event a
# filter hides, numbers 1 and 1.0 in one group, object, array and null
# groups, booleans, a string "2" against an unquoted 2, a quoted "1"
# against the number 1, nested paths, cohort events tied on time (the
# smallest value: booleans, numbers, strings, null last) and groups of
# equal counts ordered by value.
E_RANGE = {"from": "2026-08-10", "to": "2026-10-26"}
E_ACT = {"start": "signup", "event": "invoice_sent", "count": "1", "within": "30d",
         "as-of": "2026-10-20", **E_RANGE}
E_RET = {"start": "signup", "return": "any", "period": "week", "periods": "4",
         "as-of": "2026-10-20", **E_RANGE}
E_FUN = {"steps": "page_view,signup,invoice_sent", "window": "30d", **E_RANGE}
EDGE_CHECKS = {
    "funnel#e": E_FUN, "funnel#e-none": {**E_FUN, **NONE},
    "funnel#e-by-n": {**E_FUN, "by": "n"}, "funnel#e-by-g": {**E_FUN, "by": "g"},
    "funnel#e-by-g-limit": {**E_FUN, "by": "g", "limit": "2"},
    "funnel#e-where-flag": {**E_FUN, "where": ["flag = true"]},
    "activation#e": E_ACT, "activation#e-none": {**E_ACT, **NONE},
    "activation#e-by-g": {**E_ACT, "by": "g"},
    "activation#e-by-g-none": {**E_ACT, "by": "g", **NONE},
    "retention#e-by-g": {**E_RET, "by": "g"}, "retention#e-by-n": {**E_RET, "by": "n"},
    "retention#e-where": {**E_RET, "where": ["g != a"]},
    "lifecycle#e": E_RANGE, "lifecycle#e-none": {**E_RANGE, **NONE},
    "active#e": {"from": "2026-09-01", "to": "2026-09-20"},
    "active#e-none": {"from": "2026-09-01", "to": "2026-09-20", **NONE},
}
for path in ("g", "n", "src", "flag", "obj", "arr", "q", "utm.source", "utm", "amount"):
    EDGE_CHECKS[f"lifecycle#e-by-{path}"] = {**E_RANGE, "by": path}
    EDGE_CHECKS[f"trend#e-by-{path}"] = {"event": "any", "measure": "users",
                                          "interval": "week", "by": path, **E_RANGE}
for i, w in enumerate(["q = 2", "q < 2", "q >= 10", 'n = "1"', 'n != "1"', "n = 1", "n = 1.0",
                       "n ~ 1", "n !~ 1", "n < 0", "flag = true", "flag != true",
                       "flag < true", "flag = 1", "obj != x", "obj ~ k", "obj = x",
                       "arr !~ 1", "g >= b", "g < 2", "g = true", "g != null",
                       "utm.source = x", "utm = x", "utm != x", "src=x", " src  =  x ",
                       'src = "x"', "device ~ des", "amount > 10", "amount <= 9",
                       "missing !~ a", "missing = a"]):
    EDGE_CHECKS[f"lifecycle#e-where-{i}"] = {**E_RANGE, "where": [w]}
    EDGE_CHECKS[f"trend#e-where-{i}"] = {"event": "any", "measure": "revenue",
                                          "interval": "day", "where": [w], **E_RANGE}
EDGE_CHECKS["trend#e-events-linked"] = {"event": "any", "measure": "users",
                                        "interval": "day", "from": "2026-09-01",
                                        "to": "2026-09-10"}
EDGE_CHECKS["trend#e-events-none"] = {**EDGE_CHECKS["trend#e-events-linked"], **NONE}
# Medians are seconds with millisecond precision (SPEC §3: the median of
# 1 ms and 2 ms may be given as 0.0015 or rounded).
MEDIAN_TOLERANCE_S = 0.0005
RATE_TOLERANCE = 1e-12


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(cmd: list[str], **kw) -> dict:
    """Runs `cmd` under /usr/bin/time -v: wall seconds, peak RSS (KiB),
    stdout text."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, **kw)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return {"wall_s": wall, "peak_rss_kib": int(rss.group(1)) if rss else None,
            "stdout": p.stdout, "stderr": p.stderr}


def du_bytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def tally_flags(params: dict) -> list[str]:
    out = []
    for k, v in params.items():
        for one in (v if isinstance(v, list) else [v]):
            out += [f"--{k}", one]
    return out


def subcommand(label: str) -> str:
    return label.split("#")[0]


# ---------------------------------------------------------------- dataset


def dataset(bin_dir: Path, work: Path, events: int, seed: int) -> dict:
    """Generates (or reuses) the NDJSON file and measures it."""
    path = work / f"events-{events}-s{seed}.ndjson"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        log(f"reusing {path}")
        return json.loads(meta_path.read_text())
    log(f"generating {events} events into {path}")
    r = timed([str(bin_dir / "gen_dataset"), "--events", str(events), "--seed", str(seed),
               "--out", str(path)])
    gen = json.loads(r["stderr"].strip().splitlines()[0])
    log(f"generated {gen['lines']} lines in {r['wall_s']:.1f} s; gzip -6 for its size")
    gz = subprocess.run(f"gzip -6 -c '{path}' | wc -c", shell=True, capture_output=True,
                        text=True, check=True)
    meta = {
        "path": str(path),
        "events": events,
        "seed": seed,
        "generator": gen,
        "generate_wall_s": r["wall_s"],
        "ndjson_bytes": path.stat().st_size,
        "ndjson_gzip_bytes": int(gz.stdout.strip()),
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


# ---------------------------------------------------------------- Tally


def tally_import(tally: Path, data: Path, file: str, lines: int) -> dict:
    shutil.rmtree(data, ignore_errors=True)
    log("tally import")
    r = timed([str(tally), "import", file, "--data", str(data), "--format", "json"])
    summary = json.loads(r["stdout"])
    summary.pop("errors", None)
    return {**summary, "wall_s": r["wall_s"], "lines_per_s": lines / r["wall_s"],
            "peak_rss_kib": r["peak_rss_kib"], "store_bytes": du_bytes(data)}


def tally_queries(tally: Path, bin_dir: Path, data: Path, runs: int,
                  tally_bin_given: bool = False) -> dict:
    out = {}
    for name, params in ANALYSES.items():
        cmd = [str(tally), subcommand(name), *tally_flags(params), "--data", str(data),
               "--format", "json"]
        log(f"tally {name}: 1 warm-up + {runs} runs (load average {os.getloadavg()[0]:.1f})")
        load_before = os.getloadavg()[0]
        first = timed(cmd)
        walls, rss = [], [first["peak_rss_kib"]]
        for _ in range(runs):
            r = timed(cmd)
            if r["stdout"] != first["stdout"]:
                raise RuntimeError(f"tally {name}: the answer changed between runs")
            walls.append(r["wall_s"] * 1000)
            rss.append(r["peak_rss_kib"])
        out[name] = {
            "command": " ".join(cmd),
            "runs_ms": walls,
            "median_ms": statistics.median(walls),
            "peak_rss_kib": max(rss),
            "load_avg": [load_before, os.getloadavg()[0]],
            "result": json.loads(first["stdout"]),
        }
        # The analysis alone, in one process: store opened once (skipped when
        # query_time was not built, e.g. with TALLY= in compare.sh).
        qt_bin = bin_dir / "query_time" if bin_dir else None
        if qt_bin and qt_bin.exists() and not tally_bin_given:
            pairs = [f"{k}={one}" for k, v in params.items()
                     for one in (v if isinstance(v, list) else [v])]
            qt = timed([str(qt_bin), "--data", str(data), "--runs", str(runs),
                        subcommand(name), *pairs])
            q = json.loads(qt["stdout"])
            if q["result"] != json.loads(first["stdout"]):
                raise RuntimeError(f"query_time {name} disagrees with tally {name}")
            out[name].update(query_only_runs_ms=q["runs_ms"],
                             query_only_median_ms=q["median_ms"], store_open_ms=q["open_ms"])
    return out


def tally_checks(tally: Path, data: Path, checks: dict) -> dict:
    out = {}
    for label, params in checks.items():
        cmd = [str(tally), subcommand(label), *tally_flags(params), "--data", str(data),
               "--format", "json"]
        out[label] = json.loads(timed(cmd)["stdout"])
    return out


def tally_http(tally: Path, bin_dir: Path, data: Path, file: str, concurrency: int) -> dict:
    """Loads the file through `tally serve` with the replay client, then
    answers the analyses from that store (checked against the import's)."""
    shutil.rmtree(data, ignore_errors=True)
    wkey, rkey = "compare-write-key", "compare-read-key"
    server = subprocess.Popen(
        [str(tally), "serve", "--data", str(data), "--listen", "127.0.0.1:0",
         "--write-key", wkey, "--read-key", rkey],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        url = None
        for line in server.stdout:
            m = re.match(r"tally listening on (\S+)", line.strip())
            if m:
                url = m.group(1)
                break
        if not url:
            raise RuntimeError("tally serve did not start")
        log(f"HTTP replay to {url} (batches of 500, {concurrency} in flight)")
        r = timed([str(bin_dir / "replay"), "--url", url, "--key", wkey, "--batch", "500",
                   "--concurrency", str(concurrency), "--json", file])
        rep = json.loads(r["stdout"])
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    rep["store_bytes"] = du_bytes(data)
    answers = {}
    for name, params in ANALYSES.items():
        cmd = [str(tally), subcommand(name), *tally_flags(params), "--data", str(data),
               "--format", "json"]
        answers[name] = json.loads(timed(cmd)["stdout"])
    rep["answers"] = answers
    return rep


# ---------------------------------------------------------------- DuckDB


def duck(python: str, db: Path, file: str, lines: int, runs: int, checks: dict | None,
         reuse: bool) -> dict:
    if reuse and db.exists():
        log(f"duckdb: reusing the loaded database {db}")
        load = None
    else:
        log("duckdb load (validate + dedup into a native table)")
        r = timed([python, str(HERE / "duck.py"), "load", str(db), file, str(lines)])
        load = json.loads(r["stdout"])
        load.update(wall_s=r["wall_s"], peak_rss_kib=r["peak_rss_kib"],
                    lines_per_s=lines / load["seconds"])
    log(f"duckdb queries: 1 warm-up + {runs} runs each (load average {os.getloadavg()[0]:.1f})")
    load_before = os.getloadavg()[0]
    r = timed([python, str(HERE / "duck.py"), "query", str(db), json.dumps(ANALYSES),
               str(runs)])
    q = json.loads(r["stdout"])
    for k in ANALYSES:
        q[k]["load_avg"] = [load_before, os.getloadavg()[0]]
    out = {"load": load, "checks": {}, "queries": {k: q[k] for k in ANALYSES},
           "threads": q["threads"], "version": q["duckdb_version"],
           "query_process_peak_rss_kib": r["peak_rss_kib"]}
    if checks:
        log(f"duckdb: {len(checks)} extra checks")
        r = timed([python, str(HERE / "duck.py"), "query", str(db), json.dumps(checks), "0"])
        out["checks"] = {k: v["result"] for k, v in json.loads(r["stdout"]).items()
                         if k in checks}
    return out


# ---------------------------------------------------------------- checks


def diff(a, b, path: str, out: list[str]) -> None:
    """Appends to `out` every place where Tally's `a` and DuckDB's `b` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'tally' if k in a else 'duckdb'}")
            else:
                diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items in tally, {len(b)} in duckdb")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out)
    elif isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        if a != b:
            out.append(f"{path}: tally {a!r}, duckdb {b!r}")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        tol = MEDIAN_TOLERANCE_S if "median" in path else RATE_TOLERANCE
        if isinstance(a, int) and isinstance(b, int):
            tol = 0
        # Money is summed in a different order: allow float rounding (a net
        # sum near zero, e.g. a week of refunds, gets an absolute allowance).
        rel = 1e-9 if any(w in path for w in ("revenue", "aov", "arpu")) else 0
        if rel:
            tol = max(tol, 1e-6)
        if not math.isclose(a, b, rel_tol=rel, abs_tol=tol):
            out.append(f"{path}: tally {a!r}, duckdb {b!r}")
    elif a != b:
        out.append(f"{path}: tally {a!r}, duckdb {b!r}")


# ---------------------------------------------------------------- report


def machine() -> dict:
    model = ""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=HERE).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, cwd=HERE).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": model, "memory_bytes": mem,
            "kernel": platform.release(), "load_avg_at_start": os.getloadavg(),
            "git_head": git, "git_modified_files": len(dirty.splitlines()) if dirty else 0}


def mb(b: float) -> str:
    return f"{b / 1e6:,.0f} MB"


def markdown(res: dict) -> str:
    ds, t, d = res["dataset"], res["tally"], res["duckdb"]
    lines = [
        (f"### {ds['generator']['events']:,} events, {ds['generator']['persons']:,} persons "
         f"(seed {ds['seed']})" if ds["generator"]["persons"] else
         f"### {ds['path']}: {ds['generator']['lines']:,} lines"),
        "",
        f"Machine: {res['machine']['nproc']} cores ({res['machine']['cpu']}), "
        f"{res['machine']['memory_bytes'] / 2**30:.0f} GiB; DuckDB {d['version']} "
        f"({d['threads']} threads); median of {res['runs']} warm runs; "
        f"tree {res['machine']['git_head']}"
        + (f" + {res['machine']['git_modified_files']} modified files"
           if res['machine']['git_modified_files'] else "")
        + f"; load average at start {res['machine']['load_avg_at_start'][0]:.1f}.",
        "",
        "| analysis | Tally command | Tally query only | DuckDB | Tally/DuckDB (command) "
        "| Tally/DuckDB (query) | Tally peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ANALYSES:
        tq, dq = t["queries"][name], d["queries"][name]
        qo = tq.get("query_only_median_ms")
        lines.append(
            f"| {name} | {tq['median_ms']:.0f} ms | "
            + (f"{qo:.0f} ms" if qo is not None else "—")
            + f" | {dq['median_ms']:.0f} ms | {tq['median_ms'] / dq['median_ms']:.2f} | "
            + (f"{qo / dq['median_ms']:.2f}" if qo is not None else "—")
            + f" | {tq['peak_rss_kib'] / 1024:.0f} MiB |"
        )
    lines += ["", "Commands (Tally, whole process, warm):", ""]
    lines += [f"- `{t['queries'][n]['command']}` (load average "
              f"{t['queries'][n]['load_avg'][0]:.1f} → {t['queries'][n]['load_avg'][1]:.1f})"
              for n in ANALYSES]
    lines.append("")
    imp, dl = t.get("import"), d.get("load")
    lines += ["", "| load | events/s | wall | peak RSS |", "|---|---:|---:|---:|"]
    if imp:
        lines.append(f"| `tally import` | {imp['lines_per_s']:,.0f} | {imp['wall_s']:.1f} s "
                     f"| {imp['peak_rss_kib'] / 1024:.0f} MiB |")
    else:
        lines.append("| `tally import` | (an existing store, DATA=) | | |")
    if t.get("http"):
        h = t["http"]
        lines.append(f"| HTTP `/v1/batch` x500, {h['concurrency']} in flight (replay) "
                     f"| {h['lines_per_sec']:,.0f} | {h['seconds']:.1f} s | |")
    if dl:
        lines += [f"| DuckDB (validate + dedup, native table) | {dl['lines_per_s']:,.0f} "
                  f"| {dl['seconds']:.1f} s | {dl['peak_rss_kib'] / 1024:.0f} MiB |", ""]
    else:
        lines += ["| DuckDB | (an existing database, DUCK_DB=) | | |", ""]
    lines += [
        "| size on disk | bytes | vs NDJSON | vs gzip'd NDJSON |",
        "|---|---:|---:|---:|",
    ]
    nd, gz = ds["ndjson_bytes"], ds["ndjson_gzip_bytes"]
    rows = [("NDJSON", nd), ("NDJSON, gzip -6", gz)]
    if imp:
        rows.append(("Tally store (import)", imp["store_bytes"]))
    if t.get("http"):
        rows.append(("Tally store (HTTP)", t["http"]["store_bytes"]))
    if dl:
        rows.append(("DuckDB database", dl["db_bytes"]))
    for label, b in rows:
        if b is None:
            continue
        lines.append(f"| {label} | {mb(b)} | {b / nd:.2f} | "
                     + (f"{b / gz:.2f} |" if gz else "— |"))
    lines += ["", f"Answers: {res['agreement']}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin-dir", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="datasets and stores")
    ap.add_argument("--out", type=Path, required=True, help="results (bench-out)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--no-checks", action="store_true", help="skip the untimed extra checks")
    ap.add_argument("--http-concurrency", type=int, default=4)
    ap.add_argument("--keep", action="store_true", help="keep stores and the database")
    ap.add_argument("--tally", type=Path, help="the tally binary (default BIN_DIR/tally)")
    ap.add_argument("--ndjson", type=Path,
                    help="an existing NDJSON file instead of generating one")
    ap.add_argument("--data", type=Path,
                    help="an existing Tally data directory of --ndjson (not imported, kept)")
    ap.add_argument("--duck-db", type=Path,
                    help="a DuckDB database: loaded from the file unless it exists (kept)")
    ap.add_argument("--extra-checks", action="store_true",
                    help="also the checks that need identity_data.py's properties")
    ap.add_argument("--edge-checks", action="store_true",
                    help="only the checks of edge_events.ndjson")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    a.out.mkdir(parents=True, exist_ok=True)
    tally = a.tally or a.bin_dir / "tally"
    checks = {} if a.no_checks else {**CHECKS, **(EXTRA_CHECKS if a.extra_checks else {})}
    if a.edge_checks:
        checks = EDGE_CHECKS
    res = {"machine": machine(), "runs": a.runs, "analyses": ANALYSES,
           "tally_binary": str(tally),
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if a.ndjson:
        lines = sum(1 for _ in open(a.ndjson, "rb"))
        ds = {"path": str(a.ndjson), "events": a.events, "seed": a.seed,
              "generator": {"events": lines, "persons": 0, "lines": lines},
              "ndjson_bytes": a.ndjson.stat().st_size, "ndjson_gzip_bytes": None}
    else:
        ds = dataset(a.bin_dir, a.work, a.events, a.seed)
        lines = ds["generator"]["lines"]
    res["dataset"] = ds
    if a.data:
        data = a.data
        log(f"tally: using the existing store {data} (not imported)")
        res["tally"] = {}
    else:
        data = a.work / f"tally-{a.events}"
        res["tally"] = {"import": tally_import(tally, data, ds["path"], lines)}
    res["tally"]["queries"] = tally_queries(tally, a.bin_dir, data, a.runs, bool(a.tally))
    if checks:
        log(f"tally: {len(checks)} extra checks")
        res["tally"]["checks"] = tally_checks(tally, data, checks)
    if not a.no_http:
        http_data = a.work / f"tally-http-{a.events}"
        res["tally"]["http"] = tally_http(tally, a.bin_dir, http_data, ds["path"],
                                          a.http_concurrency)
        res["tally"]["http"]["concurrency"] = a.http_concurrency
        if not a.keep:
            shutil.rmtree(http_data, ignore_errors=True)
    db = a.duck_db or a.work / f"duck-{a.events}.duckdb"
    res["duckdb"] = duck(a.python, db, ds["path"], lines, a.runs, checks, bool(a.duck_db))
    res["load_avg_at_end"] = os.getloadavg()

    problems: list[str] = []
    imp, dl = res["tally"].get("import"), res["duckdb"]["load"]
    for k in ("accepted", "duplicates", "rejected"):
        if imp and dl and imp[k] != dl[k]:
            problems.append(f"load.{k}: tally import {imp[k]}, duckdb {dl[k]}")
        h = res["tally"].get("http")
        if h and imp and h[k] != imp[k]:
            problems.append(f"load.{k}: tally HTTP {h[k]}, tally import {imp[k]}")
    for name in ANALYSES:
        diff(res["tally"]["queries"][name]["result"], res["duckdb"]["queries"][name]["result"],
             name, problems)
        h = res["tally"].get("http")
        if h and h["answers"][name] != res["tally"]["queries"][name]["result"]:
            problems.append(f"{name}: the HTTP-loaded store answers differently from the import")
    for label in res["tally"].get("checks", {}):
        diff(res["tally"]["checks"][label], res["duckdb"]["checks"][label], label, problems)
    res["mismatches"] = problems
    res["agreement"] = (
        "all numbers agree (users per step, medians, cohorts, retained and unbounded arrays, "
        "incomplete_from, activated counts and median, load counts"
        + (f"; and {len(checks)} untimed queries" if checks else "")
        + ")"
        if not problems else f"{len(problems)} MISMATCHES (see mismatches)"
    )
    if not a.keep:
        if not a.duck_db:
            for f in (db, Path(str(db) + ".wal")):
                if f.exists():
                    f.unlink()
        if not a.data:
            shutil.rmtree(data, ignore_errors=True)
    md = markdown(res)
    stem = a.out / (f"compare-{a.ndjson.stem}" if a.ndjson else f"compare-{a.events}")
    Path(f"{stem}.json").write_text(json.dumps(res, indent=1))
    Path(f"{stem}.md").write_text(md)
    print(md)
    print("Tally/DuckDB (whole tally command vs DuckDB query):")
    for name in ANALYSES:
        tq, dq = res["tally"]["queries"][name], res["duckdb"]["queries"][name]
        print(f"  {name}: tally {tq['median_ms']:.0f} ms, duckdb {dq['median_ms']:.0f} ms, "
              f"ratio {tq['median_ms'] / dq['median_ms']:.2f}")
    for p in problems[:50]:
        print("MISMATCH", p)
    log(f"wrote {stem}.json and {stem}.md")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
