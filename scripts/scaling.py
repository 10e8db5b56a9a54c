#!/usr/bin/env python3
"""The scaling study (issue 7): build time, peak memory, cube size and query latency of the
default cube at several scales, as a table (docs/perf/scaling.md) and a plot
(docs/perf/scaling.png).

    python3 scripts/scaling.py                 # scales 1 2 5 10
    python3 scripts/scaling.py 0.1 0.2         # a quick run
    python3 scripts/scaling.py --replot        # table and plot again from scaling.json

Each scale runs `cargo run --release --example scaling -- SCALE` in its own process (so that
its peak memory is its own), which generates the data set into ~/.cache/lattice if missing.
The raw points are kept in docs/perf/scaling.json. matplotlib is installed into a virtual
environment under ~/.cache/lattice/venv-plot on first use (PyPI).
"""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "perf"
VENV = Path.home() / ".cache" / "lattice" / "venv-plot"


def run_scale(scale: str) -> dict:
    # LATTICE_SCALING_BIN: a private copy of the built example (the shared target dir holds
    # one copy, which other builds overwrite).
    binary = os.environ.get("LATTICE_SCALING_BIN")
    if binary:
        cmd = [binary, scale]
    else:
        cmd = ["cargo", "run", "--quiet", "--release", "--example", "scaling", "--", scale]
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def summary(point: dict) -> dict:
    by_path = {"cuboid": [], "fallback": []}
    for q in point["questions"]:
        by_path[q["path"]].append(q["median_us"])
    med = lambda xs: statistics.median(xs) if xs else None
    return {
        "scale": point["scale"],
        "rows": sum(point["fact_rows"]),
        "build_s": point["build_s"],
        "peak_gb": (point["peak_rss_mb"] or 0) / 1e3,
        "cube_mb": point["cube_mb"],
        "cuboids": point["cuboids"],
        "cuboid_n": len(by_path["cuboid"]),
        "cuboid_us": med(by_path["cuboid"]),
        "cuboid_max_us": max(by_path["cuboid"], default=None),
        "fallback_n": len(by_path["fallback"]),
        "fallback_ms": (med(by_path["fallback"]) or 0) / 1e3,
        "stages_s": point.get("stages_s", {}),
    }


def table(rows: list) -> str:
    base = rows[0]
    lines = [
        "| scale | fact rows | build | build / rows vs first | peak memory | cube | cuboids "
        "| cuboid questions: median (max) | fallback questions: median |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        per_row = (r["build_s"] / r["rows"]) / (base["build_s"] / base["rows"])
        lines.append(
            f"| {r['scale']:g} | {r['rows']:,} | {r['build_s']:.1f} s | {per_row:.2f} "
            f"| {r['peak_gb']:.2f} GB | {r['cube_mb']:.1f} MB | {r['cuboids']} "
            f"| {r['cuboid_us']:.1f} µs ({r['cuboid_max_us']:.0f} µs), {r['cuboid_n']} q "
            f"| {r['fallback_ms']:.0f} ms, {r['fallback_n']} q |"
        )
    names = []
    for r in rows:
        names += [n for n in r["stages_s"] if n not in names]
    lines += ["", "Build stages (seconds):", "", "| scale | " + " | ".join(names) + " |",
              "| ---: |" + " ---: |" * len(names)]
    for r in rows:
        cells = " | ".join(f"{r['stages_s'].get(n, 0):.1f}" for n in names)
        lines.append(f"| {r['scale']:g} | {cells} |")
    return "\n".join(lines) + "\n"


def plot(rows: list, path: Path) -> None:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "matplotlib"], check=True)
    code = f"""
import json, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = json.loads({json.dumps(json.dumps(rows))})
x = [r["rows"] / 1e6 for r in rows]
fig, ax = plt.subplots(1, 3, figsize=(13, 4))
ax[0].plot(x, [r["build_s"] for r in rows], "o-", label="build")
ax[0].plot([0, x[-1]], [0, rows[0]["build_s"] * x[-1] / x[0]], "--", color="grey", label="linear from the first")
# The project's targets at scale 10: a build under 60 s and 4 GB.
ten = [r for r in rows if r["scale"] == 10]
if ten:
    ax[0].plot([ten[0]["rows"] / 1e6], [60], "x", color="red", markersize=10, label="target at scale 10")
    ax[1].plot([ten[0]["rows"] / 1e6], [4], "x", color="red", markersize=10, label="target at scale 10")
ax[0].set(xlabel="fact rows (millions)", ylabel="seconds", title="Build time")
ax[0].legend()
ax[1].plot(x, [r["peak_gb"] for r in rows], "o-", label="peak resident memory")
ax[1].plot(x, [r["cube_mb"] / 1e3 for r in rows], "s-", label="cube size")
ax[1].set(xlabel="fact rows (millions)", ylabel="GB", title="Memory")
ax[1].legend()
ax[2].plot(x, [r["cuboid_us"] for r in rows], "o-", label="cuboid-served median (us)")
ax[2].plot(x, [r["fallback_ms"] * 1e3 for r in rows], "s-", label="fallback median (us)")
ax[2].set(xlabel="fact rows (millions)", ylabel="microseconds", title="Query latency", yscale="log")
ax[2].legend()
fig.suptitle("Lattice, default cube, 2 cores")
fig.tight_layout()
fig.savefig({str(path)!r}, dpi=110)
"""
    subprocess.run([str(python), "-c", code], check=True)


def main() -> None:
    if sys.argv[1:] == ["--replot"]:
        # The table and plot again from the points of the last run.
        lines = (OUT / "scaling.json").read_text().splitlines()
        points = [json.loads(line) for line in lines if line.strip()]
        scales = [f"{p['scale']:g}" for p in points]
    else:
        scales = sys.argv[1:] or ["1", "2", "5", "10"]
        points = [run_scale(s) for s in scales]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scaling.json").write_text("\n".join(json.dumps(p) for p in points) + "\n")
    rows = [summary(p) for p in points]
    md = table(rows)
    (OUT / "scaling.md").write_text(
        "# Scaling study\n\n`python3 scripts/scaling.py " + " ".join(scales) + "`\n\n" + md
        + "\n![scaling](scaling.png)\n"
    )
    print(md)
    plot(rows, OUT / "scaling.png")
    print(f"wrote {OUT / 'scaling.md'}, {OUT / 'scaling.png'}, {OUT / 'scaling.json'}")


if __name__ == "__main__":
    os.environ.setdefault("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "lattice-target"))
    main()
