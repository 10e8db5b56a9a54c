#!/usr/bin/env python3
"""Runs the question suite's SQL twins on DuckDB over the same Parquet files as the query bench,
and prints a markdown table next to Lattice's and DataFusion's criterion medians.

Usage (from the repository root):

    export CARGO_TARGET_DIR=$HOME/.cache/lattice-target
    cargo run --example dump_questions > /tmp/questions.jsonl
    python3 scripts/duckdb_compare.py --questions /tmp/questions.jsonl \
        [--data ~/.cache/lattice/data-scale1-seed42] [--criterion $CARGO_TARGET_DIR/criterion]

The twins are written for DataFusion (`tests/questions.rs`); the few DataFusion-only spellings
are rewritten for DuckDB (see `to_duckdb`). A twin DuckDB still cannot run is listed as failing,
with its error, and counted in the summary. DuckDB runs in memory with `SET threads = 2`, over
views named like the tables the engine registers, reading the Parquet files on every query (as
DataFusion does in the bench). Each twin runs once to warm up, then 5 times; the median is
reported. Lattice's and DataFusion's medians come from criterion's
`q_<path>_<name>/{lattice,datafusion}/new/estimates.json`, which also gives the question's path
(cuboid or fallback).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

try:
    import duckdb
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "duckdb"])
    import duckdb

# The raw tables the engine registers, and their files. Not `branch_cost`: the engine registers
# it after allocating each branch's cost to its customers, which DuckDB does not have, so the
# twin that reads it is listed as failing.
TABLES = {t: f"{t}.parquet" for t in ["transactions", "balances", "customers", "regions", "managers",
                                      "products", "channels"]}
WARMUP = 1
RUNS = 5


def to_duckdb(sql: str) -> str:
    """DataFusion SQL to DuckDB SQL: only the spellings the twins use that DuckDB lacks."""
    # to_char(date, '%Y-%m') formats with chrono's strftime codes; DuckDB calls it strftime.
    return re.sub(r"\bto_char\s*\(", "strftime(", sql, flags=re.IGNORECASE)


def median_ns(group: Path, fn: str):
    est = group / fn / "new" / "estimates.json"
    if not est.exists():
        return None
    return json.loads(est.read_text())["median"]["point_estimate"]


def fmt(ns):
    if ns is None:
        return "-"
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns / 1e6:.1f} ms"


def fmt_ratio(r):
    if r is None:
        return "-"
    return f"{r:,.0f}x" if r >= 10 else f"{r:.2f}x"


def main():
    home = Path(os.environ.get("HOME", "/tmp"))
    target = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=home / ".cache/lattice/data-scale1-seed42")
    ap.add_argument("--criterion", type=Path, default=target / "criterion")
    ap.add_argument("--questions", type=Path, help="JSON lines from `cargo run --example dump_questions` (default: run it)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--filter", default="", help="only questions whose name contains this")
    args = ap.parse_args()

    if args.questions:
        lines = args.questions.read_text().splitlines()
    else:
        out = subprocess.run(["cargo", "run", "-q", "--example", "dump_questions"], check=True,
                             capture_output=True, text=True).stdout
        lines = out.splitlines()
    questions = [json.loads(line) for line in lines if line.strip()]

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {args.threads}")
    for t, file in TABLES.items():
        path = args.data / file
        if not path.exists():
            sys.exit(f"missing {path}")
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{path}')")

    rows = []
    failures = []
    for q in questions:
        name = q["name"]
        if args.filter not in name:
            continue
        path = None
        group = None
        for p in ("cuboid", "fallback"):
            # criterion cuts a group's folder name at 64 characters.
            candidate = args.criterion / f"q_{p}_{name}"[:64]
            if candidate.is_dir():
                path, group = p, candidate
        lat = median_ns(group, "lattice") if group else None
        df = median_ns(group, "datafusion") if group else None
        sql = to_duckdb(q["sql"])
        duck = None
        nrows = None
        try:
            for _ in range(WARMUP):
                nrows = len(con.execute(sql).fetchall())
            times = []
            for _ in range(RUNS):
                start = time.perf_counter_ns()
                con.execute(sql).fetchall()
                times.append(time.perf_counter_ns() - start)
            duck = statistics.median(times)
        except duckdb.Error as e:
            msg = str(e).splitlines()[0]
            failures.append((name, msg))
            print(f"{name}: DuckDB fails on the twin: {msg}", file=sys.stderr)
        print(f"{name}: {path} lattice {fmt(lat)} duckdb {fmt(duck)} ({nrows} rows) datafusion {fmt(df)}",
              file=sys.stderr)
        rows.append((path or "-", name, lat, duck, df))

    rows.sort(key=lambda r: (r[0], r[1]))
    print(f"DuckDB {duckdb.__version__}, threads = {args.threads}, data {args.data}, "
          f"warm-up {WARMUP}, median of {RUNS}\n")
    print("| question | path | Lattice median | DuckDB median | DataFusion median | DuckDB/Lattice |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for path, name, lat, duck, df in rows:
        ratio = duck / lat if (lat and duck) else None
        print(f"| {name} | {path} | {fmt(lat)} | {fmt(duck) if duck else 'fails'} | {fmt(df)} | {fmt_ratio(ratio)} |")
    print()
    for path in ("cuboid", "fallback"):
        sel = [r for r in rows if r[0] == path]
        lats = [r[2] for r in sel if r[2]]
        ratios = [r[3] / r[2] for r in sel if r[2] and r[3]]
        ducks = [r[3] for r in sel if r[3]]
        if not sel:
            continue
        line = f"- {path}: {len(sel)} questions"
        if lats:
            line += f", Lattice median of medians {fmt(statistics.median(lats))}"
        if ducks:
            line += f", DuckDB median of medians {fmt(statistics.median(ducks))}"
        if ratios:
            line += (f"; DuckDB/Lattice median {fmt_ratio(statistics.median(ratios))}, "
                     f"min {fmt_ratio(min(ratios))}, max {fmt_ratio(max(ratios))}; "
                     f"Lattice faster on {sum(r > 1 for r in ratios)} of {len(ratios)}")
        print(line)
    no_path = [r[1] for r in rows if r[0] == "-"]
    if no_path:
        print(f"- {len(no_path)} questions without criterion estimates: {', '.join(no_path)}")
    print(f"- twins DuckDB could not run: {len(failures)}"
          + ("" if not failures else ": " + "; ".join(f"{n} ({m})" for n, m in failures)))


if __name__ == "__main__":
    main()
