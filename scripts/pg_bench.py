#!/usr/bin/env python3
"""A cuboid-served question over the Postgres wire on loopback (parse, plan, answer, encode),
timed from a psycopg 3 client, beside the same question in DuckDB over the same data in memory,
in one run.

Usage (from the repository root; a release build and a generated data set):

    $CARGO_TARGET_DIR/release/lattice gen --scale 1 --out /tmp/d1
    $CARGO_TARGET_DIR/release/lattice serve --data /tmp/d1 --addr 127.0.0.1:8098 \\
        --pg-addr 127.0.0.1:5439 --cache-entries 0 --no-snapshots &
    python3 scripts/pg_bench.py --port 5439 --data /tmp/d1 [--runs 2000]

Questions (each a prepared statement, bound and executed `--runs` times after a warm-up):
- `province_year`: transaction amount and count by province in one year (a cuboid);
- `month_channel`: fee income by month for one channel (a cuboid);
- `segment_active`: active customers by segment (a distinct count, from a cuboid).

DuckDB answers the same questions over in-memory copies of the Parquet tables
(`CREATE TABLE AS SELECT * FROM read_parquet`), joined per question, `SET threads` to the
machine's cores, also `--runs` times. Reported: median, p99 and max per side, and DuckDB's
median over Lattice's.
"""
import argparse
import os
import statistics
import time

import duckdb
import psycopg

QUESTIONS = {
    "province_year": (
        "SELECT region_province, MEASURE(txn_amount), MEASURE(txn_count) FROM bank_crm "
        "WHERE time_year = %s GROUP BY region_province",
        ["2025"],
        "SELECT r.province, SUM(t.amount), COUNT(*) FROM transactions t "
        "JOIN customers c ON t.customer_id = c.customer_id "
        "JOIN regions r ON c.region_id = r.region_id "
        "WHERE strftime(t.txn_date, '%Y') = ? GROUP BY r.province",
    ),
    "month_channel": (
        "SELECT time_month, MEASURE(fee_income) FROM bank_crm "
        "WHERE channel_channel = %s GROUP BY time_month",
        ["ATM"],
        "SELECT strftime(t.txn_date, '%Y-%m'), SUM(t.fee_income) FROM transactions t "
        "JOIN channels ch ON t.channel_id = ch.channel_id "
        "WHERE ch.channel = ? GROUP BY 1",
    ),
    "segment_active": (
        "SELECT customer_segment, MEASURE(active_customers) FROM bank_crm "
        "WHERE time_year = %s GROUP BY customer_segment",
        ["2025"],
        "SELECT c.segment, COUNT(DISTINCT t.customer_id) FROM transactions t "
        "JOIN customers c ON t.customer_id = c.customer_id "
        "WHERE strftime(t.txn_date, '%Y') = ? GROUP BY c.segment",
    ),
}


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def timed(runs, f):
    f()
    out = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        f()
        out.append((time.perf_counter_ns() - start) / 1000.0)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", default="bench")
    p.add_argument("--data", required=True)
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()

    db = duckdb.connect()
    db.execute(f"SET threads = {args.threads}")
    for t in ["transactions", "customers", "regions", "channels"]:
        path = os.path.join(args.data, f"{t}.parquet")
        if not os.path.exists(path):
            path = os.path.join(args.data, t, "*.parquet")
        db.execute(f"CREATE TABLE {t} AS SELECT * FROM read_parquet('{path}')")

    conn = psycopg.connect(
        f"host={args.host} port={args.port} dbname=lattice user=bench password={args.key}",
        autocommit=True,
    )
    cur = conn.cursor()
    print(f"runs per question: {args.runs}; times in microseconds, client side")
    print(f"{'question':16} {'lattice p50':>12} {'p99':>8} {'max':>8} {'duckdb p50':>11} {'p99':>8} {'ratio':>7}")
    for name, (sql, params, twin) in QUESTIONS.items():
        def lattice():
            cur.execute(sql, params, prepare=True)
            return cur.fetchall()

        def duck():
            return db.execute(twin, params).fetchall()

        a = sorted((r[0], str(r[1])) for r in lattice())
        b = sorted((r[0], str(r[1])) for r in duck())
        same = a == b
        lt = timed(args.runs, lattice)
        dt = timed(max(50, args.runs // 10), duck)
        lp50, dp50 = statistics.median(lt), statistics.median(dt)
        print(
            f"{name:16} {lp50:12.0f} {percentile(lt, 0.99):8.0f} {max(lt):8.0f} "
            f"{dp50:11.0f} {percentile(dt, 0.99):8.0f} {dp50 / lp50:6.1f}x"
            + ("" if same else "  ANSWERS DIFFER")
        )


if __name__ == "__main__":
    main()
