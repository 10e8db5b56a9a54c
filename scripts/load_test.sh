#!/usr/bin/env bash
# Load test of `lattice serve` on loopback: the default cube over the scale-1 data set, a mixed
# query workload at 64 keep-alive connections (examples/load.rs), and the server's memory after
# the build, after a warm-up, and every 10 s of the measured run.
#
#   scripts/load_test.sh [SECONDS] [-- extra flags for lattice serve, e.g. --cache-entries 0]
#
# Builds the release binary and the load generator (the first release build of DataFusion takes
# a long while on 2 cores), generates the data set into ~/.cache/lattice if it is not there, and
# stops the server at the end. Environment: PORT (18080), CONNECTIONS (64), THREADS (load
# generator threads, 1: the rest of the machine is the server's).
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_SECONDS=${1:-120}
shift || true
[ "${1:-}" = "--" ] && shift
PORT=${PORT:-18080}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lattice-target}

cargo build --release --locked --bin lattice --example load
BIN=$CARGO_TARGET_DIR/release
LOG=$(mktemp -t lattice-load-serve.XXXXXX.log)

"$BIN/lattice" serve --addr "127.0.0.1:$PORT" "$@" 2>"$LOG" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT

echo "starting the server (log: $LOG) ..."
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "the server stopped:" >&2
        cat "$LOG" >&2
        exit 1
    fi
    sleep 1
done

rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$PID/status"; }
echo "server RSS after the build: $(rss_mb) MB"

LOAD=("$BIN/examples/load" --addr "127.0.0.1:$PORT" --connections "$CONNECTIONS" --threads "$THREADS")
"${LOAD[@]}" --seconds 10 --warmup 1 >/dev/null
BEFORE=$(rss_mb)
echo "server RSS after a 10 s warm-up: $BEFORE MB"

SAMPLES=$(mktemp -t lattice-load-rss.XXXXXX)
(
    while kill -0 "$PID" 2>/dev/null; do
        sleep 10
        rss_mb >>"$SAMPLES" && echo >>"$SAMPLES"
    done
) &
SAMPLER=$!

echo "measuring for $RUN_SECONDS s at $CONNECTIONS connections ..."
STATUS=0
"${LOAD[@]}" --seconds "$RUN_SECONDS" --warmup 2 || STATUS=$?
kill "$SAMPLER" 2>/dev/null || true
AFTER=$(rss_mb)

echo "server RSS every 10 s during the run (MB): $(tr '\n' ' ' <"$SAMPLES")"
echo "server RSS before the run: $BEFORE MB, after: $AFTER MB"
curl -s "http://127.0.0.1:$PORT/metrics" |
    grep -E '^lattice_(queries_total|queries_rejected_total|query_cache_entries|http_request_duration_quantile_seconds\{route="/v1/cubes/\{cube\}/query")' || true
exit "$STATUS"
