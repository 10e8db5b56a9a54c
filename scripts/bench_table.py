#!/usr/bin/env python3
"""Prints the query bench's medians as a markdown table, with Lattice's speed-up over DataFusion.

Reads criterion's estimates under $CARGO_TARGET_DIR/criterion (default: target/criterion), as
written by `cargo bench --bench query`.
"""
import json
import os
import statistics
import sys
from pathlib import Path

root = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
if len(sys.argv) > 1:
    root = Path(sys.argv[1])


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


rows = []
for path in ("cuboid", "fallback"):
    # criterion turns "/" in group names into "_"
    for group in sorted(root.glob(f"q_{path}_*")):
        name = group.name[len(f"q_{path}_"):]
        lat = median_ns(group, "lattice")
        df = median_ns(group, "datafusion")
        rows.append((path, name, lat, df))

print("| path | question | Lattice median | DataFusion median | speed-up |")
print("| --- | --- | ---: | ---: | ---: |")
for path, name, lat, df in rows:
    ratio = "-" if not (lat and df) else (f"{df / lat:,.0f}x" if df / lat >= 10 else f"{df / lat:.2f}x")
    print(f"| {path} | {name} | {fmt(lat)} | {fmt(df)} | {ratio} |")
for path in ("cuboid", "fallback"):
    lats = [r[2] for r in rows if r[0] == path and r[2]]
    ratios = [r[3] / r[2] for r in rows if r[0] == path and r[2] and r[3]]
    if lats:
        print(
            f"\n{path}: {len(lats)} questions, median of medians {fmt(statistics.median(lats))}"
            + (f", median speed-up {statistics.median(ratios):,.2f}x, min {min(ratios):,.2f}x" if ratios else "")
        )
