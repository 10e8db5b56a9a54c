#!/usr/bin/env python3
"""Runs the random BI workload's SQL twins on DuckDB (and, optionally, every question over HTTP
against a running `lattice serve`), and prints the latency percentiles beside Lattice's, overall
and per path (cuboid / fallback, as the engine answered each question).

Usage (from the repository root), scale 0.1:

    export CARGO_TARGET_DIR=$HOME/.cache/lattice-target
    LATTICE_BENCH_SCALE=0.1 LATTICE_WORKLOAD_OUT=/tmp/workload.jsonl cargo bench --bench workload
    LATTICE_BENCH_SCALE=0.1 cargo run --release --example dump_workload -- \
        --branch-cost /tmp/branch_cost-0.1.parquet > /dev/null
    # optional, for --url: the same cube over HTTP, without the result cache
    $CARGO_TARGET_DIR/release/lattice serve --data ~/.cache/lattice/data-scale0.1-seed42 \
        --addr 127.0.0.1:8099 --cache-entries 0 &
    python3 scripts/workload_compare.py --workload /tmp/workload.jsonl \
        --data ~/.cache/lattice/data-scale0.1-seed42 --branch-cost /tmp/branch_cost-0.1.parquet \
        [--url http://127.0.0.1:8099]

The workload is the JSON lines of `benches/workload.rs` (`LATTICE_WORKLOAD_OUT`: query, SQL twin,
path, Lattice's time) or of `examples/dump_workload.rs` (no times: then only DuckDB and HTTP are
reported). The twins are written for DataFusion; the one DataFusion-only spelling they use
(`to_char`) is rewritten for DuckDB.

DuckDB runs in memory with `SET threads = 2` (the machine's cores; `--threads`) over in-memory
copies of the raw tables (`CREATE TABLE ... AS SELECT * FROM read_parquet(...)`: no Parquet
read on the clock), the twins joining them per question. This is not the pre-joined wide
table of issue 20: the twins compute per-customer-month bands and closing months in SQL, which
a single wide table cannot hold for every question, so DuckDB does the joins the twins spell
out. `branch_cost` exists only inside the engine (the cost allocation computes it); without
`--branch-cost` (written by `dump_workload --branch-cost`) the twins that read it fail and are
counted.

Each twin (and each HTTP request) runs once to warm up, then `--runs` times (default 3); its
time is the median. HTTP requests go over one keep-alive connection; start the server with
`--cache-entries 0`, or every timed request after the warm-up is a cache hit.
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

try:
    import duckdb
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "duckdb"])
    import duckdb

TABLES = ["transactions", "balances", "customers", "regions", "managers", "products", "channels"]


def to_duckdb(sql: str) -> str:
    """DataFusion SQL to DuckDB SQL: only the spellings the twins use that DuckDB lacks."""
    return re.sub(r"\bto_char\s*\(", "strftime(", sql, flags=re.IGNORECASE)


def timed(runs, f):
    """The result of one untimed run of `f`, and the median of `runs` timed runs (ns)."""
    first = f()
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        f()
        times.append(time.perf_counter_ns() - start)
    return first, statistics.median(times)


def pct(values, q):
    """The nearest-rank percentile `q` (0..1) of `values`."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))] if q < 1 else s[-1]


def fmt(ns):
    if ns is None:
        return "-"
    if ns < 1e6:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns / 1e6:.1f} ms"


def fmt_ratio(r):
    if r is None:
        return "-"
    return f"{r:,.0f}x" if r >= 10 else f"{r:.2f}x"


class Http:
    def __init__(self, url, cube):
        u = urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=300)
        self.path = f"/v1/cubes/{cube}/query"

    def query(self, body: bytes):
        self.conn.request("POST", self.path, body=body, headers={"content-type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
        return json.loads(data)


def main():
    home = Path(os.environ.get("HOME", "/tmp"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", type=Path, required=True, help="JSON lines of the bench or of dump_workload")
    ap.add_argument("--data", type=Path, default=home / ".cache/lattice/data-scale1-seed42")
    ap.add_argument("--branch-cost", type=Path, help="branch_cost as Parquet (dump_workload --branch-cost)")
    ap.add_argument("--url", help="a running `lattice serve`, e.g. http://127.0.0.1:8099")
    ap.add_argument("--cube", default="bank_crm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, help="the workload again, with duckdb_ns and http_ns added")
    args = ap.parse_args()

    questions = [json.loads(line) for line in args.workload.read_text().splitlines() if line.strip()]

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {args.threads}")
    files = {t: args.data / f"{t}.parquet" for t in TABLES}
    if args.branch_cost:
        files["branch_cost"] = args.branch_cost
    for t, path in files.items():
        if not path.exists():
            sys.exit(f"missing {path}")
        con.execute(f"CREATE TABLE {t} AS SELECT * FROM read_parquet('{path}')")
    client = Http(args.url, args.cube) if args.url else None

    failures, http_failures, count_mismatches = [], [], []
    for q in questions:
        i = q["i"]
        sql = to_duckdb(q["sql"])
        try:
            rows, q["duckdb_ns"] = timed(args.runs, lambda: con.execute(sql).fetchall())
            # The twin of a grouped question has the answer's rows (a pivot's are unpivoted).
            pivot = bool(q["query"].get("columns"))
            if "rows" in q and not pivot and len(rows) != q["rows"]:
                count_mismatches.append((i, len(rows), q["rows"]))
        except duckdb.Error as e:
            q["duckdb_ns"] = None
            failures.append((i, str(e).splitlines()[0]))
        if client:
            body = json.dumps(q["query"]).encode()
            try:
                answer, q["http_ns"] = timed(args.runs, lambda: client.query(body))
                if answer["meta"].get("cached"):
                    print(f"#{i}: a cached answer: start the server with --cache-entries 0", file=sys.stderr)
            except Exception as e:  # noqa: BLE001 - reported and counted
                q["http_ns"] = None
                http_failures.append((i, str(e)))
                client = Http(args.url, args.cube)
        if (i + 1) % 50 == 0:
            print(f"{i + 1} of {len(questions)}", file=sys.stderr)

    if args.out:
        args.out.write_text("".join(json.dumps(q) + "\n" for q in questions))

    systems = [("Lattice (engine)", "lattice_ns"), ("DuckDB", "duckdb_ns")]
    if args.url:
        systems.append(("Lattice over HTTP", "http_ns"))
    if any(q.get("datafusion_ns") for q in questions):
        systems.append(("DataFusion", "datafusion_ns"))
    print(f"{len(questions)} questions from {args.workload}; DuckDB {duckdb.__version__}, threads = "
          f"{args.threads}, in-memory tables of {args.data}; each time the median of {args.runs} "
          f"runs after a warm-up\n")
    print("| path | questions | share | system | p50 | p95 | p99 | max |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    paths = sorted({q["path"] for q in questions}) + ["all"]
    for path in paths:
        sel = [q for q in questions if path in ("all", q["path"])]
        for name, key in systems:
            v = [q[key] for q in sel if q.get(key)]
            if not v:
                continue
            print(f"| {path} | {len(sel)} | {100 * len(sel) / len(questions):.0f}% | {name} | "
                  f"{fmt(pct(v, 0.5))} | {fmt(pct(v, 0.95))} | {fmt(pct(v, 0.99))} | {fmt(pct(v, 1))} |")
    print()
    print("| path | ratio | of the p50s | per question: median | min | max | Lattice faster on |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for path in paths:
        sel = [q for q in questions if path in ("all", q["path"])]
        for num, den, label in [("duckdb_ns", "lattice_ns", "DuckDB / Lattice"),
                                ("duckdb_ns", "http_ns", "DuckDB / Lattice over HTTP")]:
            pairs = [(q[num], q[den]) for q in sel if q.get(num) and q.get(den)]
            if not pairs:
                continue
            r = sorted(a / b for a, b in pairs)
            p50 = pct([a for a, _ in pairs], 0.5) / pct([b for _, b in pairs], 0.5)
            print(f"| {path} | {label} | {fmt_ratio(p50)} | {fmt_ratio(statistics.median(r))} | "
                  f"{fmt_ratio(r[0])} | {fmt_ratio(r[-1])} | {sum(x > 1 for x in r)} of {len(r)} |")
    print()
    print(f"- twins DuckDB could not run: {len(failures)}"
          + "".join(f"\n  - #{i}: {m}" for i, m in failures[:10]))
    print(f"- DuckDB row counts that differ from the answer's: {len(count_mismatches)}"
          + "".join(f"\n  - #{i}: DuckDB {d}, Lattice {l}" for i, d, l in count_mismatches[:10]))
    if args.url:
        print(f"- HTTP failures: {len(http_failures)}"
              + "".join(f"\n  - #{i}: {m}" for i, m in http_failures[:10]))


if __name__ == "__main__":
    main()
