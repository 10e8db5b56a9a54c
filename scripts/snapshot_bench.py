#!/usr/bin/env python3
"""Snapshots and refresh, measured with the release binary, every figure from one run:

- a full build of the default cube over the monthly layout (`lattice build`), and its peak RSS;
- the same build with its last month held back, written as a snapshot (`--snapshots`);
- the refresh once the month's files land, by a server serving that snapshot (`POST
  .../refresh`, from memory) and by `lattice build --snapshots` again (the snapshot read from
  disk first); only the new files are read; against the full build;
- `lattice serve` to serving (`GET /v1/cubes/bank_crm` answers) from the snapshot, against a
  start that builds (`--no-snapshots`);
- the snapshot's size on disk against the cube's memory (cuboids and base rows).

    cargo build --release
    python3 scripts/snapshot_bench.py --scale 1 --work /tmp/snapbench

Prints a Markdown table and writes the figures as JSON beside the data (`results.json`).
"""

import argparse
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MONTHLY = ["transactions", "balances", "branch_costs"]
ROOT = Path(__file__).resolve().parent.parent
DEFINITION = ROOT / "cube_defs" / "bank_crm.yaml"


def run(cmd):
    """Runs `cmd`; its stdout, wall seconds and the peak RSS (MB) of the children so far."""
    started = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    secs = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out.stdout, secs, peak_mb


def stated_seconds(stdout, verb):
    m = re.search(rf"{verb} cube '\w+' in ([0-9.]+) s", stdout)
    if not m:
        sys.exit(f"no '{verb} cube ... in N s' line in:\n{stdout}")
    return float(m.group(1))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(binary, data, extra):
    """Starts `lattice serve`; returns the process, its port, the seconds until its cube
    answered, and the cube's info."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [binary, "serve", "--defs", str(DEFINITION), "--data", str(data),
         "--addr", f"127.0.0.1:{port}", "--watch-ms", "0", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if proc.poll() is not None:
            sys.exit(f"lattice serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/v1/cubes/bank_crm", timeout=5) as r:
                info = json.load(r)
            return proc, port, time.perf_counter() - started, info
        except OSError:
            time.sleep(0.02)


def stop(proc):
    proc.terminate()
    proc.wait()


def time_to_serving(binary, data, extra):
    """Seconds from `lattice serve` starting to its cube answering, and the cube's info."""
    proc, _, secs, info = serve(binary, data, extra)
    stop(proc)
    return secs, info


def server_refresh(port):
    """Seconds `POST /v1/cubes/bank_crm/refresh` takes, and its answer."""
    started = time.perf_counter()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/cubes/bank_crm/refresh", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=3600) as r:
        answer = json.load(r)
    return time.perf_counter() - started, answer


def folder_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--bin", default=os.environ.get(
        "LATTICE_BIN",
        str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "lattice")))
    args = ap.parse_args()
    data = args.work / f"data-{args.scale:g}"
    if not data.exists():
        subprocess.run([args.bin, "gen", "--scale", str(args.scale), "--out", str(data),
                        "--partition-by", "month"], check=True)
    held = args.work / "held"
    snaps = args.work / "snapshots"
    for d in (held, snaps):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    build = [args.bin, "build", str(DEFINITION), "--data", str(data)]

    out, full_wall, _ = run(build)
    full = stated_seconds(out, "built")
    full_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    # The last month held back; a build of the rest written as a snapshot.
    for table in MONTHLY:
        last = sorted((data / table).iterdir())[-1]
        shutil.move(str(last), held / f"{table}__{last.name}")
    out, _, _ = run(build + ["--snapshots", str(snaps)])
    before = stated_seconds(out, "built")
    # A server serving that snapshot refreshes from memory when the month lands...
    proc, port, _, _ = serve(args.bin, data, ["--snapshots", str(snaps)])
    for f in held.iterdir():
        table, name = f.name.split("__", 1)
        shutil.move(str(f), data / table / name)
    served_refresh, answer = server_refresh(port)
    stop(proc)
    if answer.get("status") != "refreshed":
        sys.exit(f"the server did not refresh: {answer}")
    # ... and the command line refreshes the snapshot (read from disk first).
    out, refresh_wall, _ = run(build + ["--snapshots", str(snaps)])
    refresh = stated_seconds(out, "refreshed")

    versions = sorted(p for p in (snaps / "bank_crm").iterdir() if not p.name.startswith("."))
    snapshot_bytes = folder_bytes(versions[-1])
    loaded, info = time_to_serving(args.bin, data, ["--snapshots", str(snaps)])
    if info.get("origin") != "loaded":
        sys.exit(f"serve did not load the snapshot: origin {info.get('origin')}")
    built_start, built_info = time_to_serving(args.bin, data, ["--no-snapshots"])
    memory = built_info["build"]["bytes"] + built_info["build"]["base_bytes"]

    results = {
        "scale": args.scale,
        "full_build_s": full,
        "full_build_wall_s": full_wall,
        "full_build_peak_rss_mb": full_peak,
        "build_without_last_month_s": before,
        "refresh_one_month_s": refresh,
        "refresh_wall_s": refresh_wall,
        "refresh_over_build": refresh / full,
        "server_refresh_s": served_refresh,
        "server_refresh_over_build": served_refresh / full,
        "serve_from_snapshot_s": loaded,
        "serve_building_s": built_start,
        "build_over_snapshot_start": built_start / loaded,
        "snapshot_bytes": snapshot_bytes,
        "cube_memory_bytes": memory,
        "snapshot_over_memory": snapshot_bytes / memory,
    }
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"| scale {args.scale:g} | figure |")
    print("| --- | ---: |")
    print(f"| full build (`lattice build`) | {full:.1f} s (peak RSS {full_peak:.0f} MB) |")
    print(f"| refresh of one new month (`lattice build --snapshots`) | {refresh:.1f} s: "
          f"{100 * refresh / full:.0f}% of the build |")
    print(f"| the same refresh by the server from memory (`POST .../refresh`, snapshot written) | "
          f"{served_refresh:.1f} s: {100 * served_refresh / full:.0f}% of the build |")
    print(f"| `serve` to serving, from the snapshot | {loaded:.2f} s |")
    print(f"| `serve` to serving, building | {built_start:.2f} s: "
          f"{built_start / loaded:.1f}x the snapshot start |")
    print(f"| snapshot on disk / cube in memory | {snapshot_bytes / 1e6:.1f} MB / "
          f"{memory / 1e6:.1f} MB ({snapshot_bytes / memory:.2f}x) |")


if __name__ == "__main__":
    main()
