#!/usr/bin/env bash
# A bank analyst's day with Lattice, over HTTP with curl: the questions a relationship-banking
# analyst asks between the morning report and the afternoon campaign list, each answered by the
# default cube (cube_defs/bank_crm.yaml) on the synthetic bank data set.
#
#   examples/analyst_day.sh                       # release build, scale-1 data (generated once)
#   LATTICE=target/debug/lattice DATA=/tmp/bank PORT=8093 examples/analyst_day.sh
#
# PORT defaults to 0: any free port, read back from what the server prints.
#
# It starts `lattice serve` on 127.0.0.1:$PORT with a copy of the definition in a temporary
# folder (the saved search it makes lands there, not in the checkout), asks its questions, prints
# each request and the start of each answer, and stops the server. Every step must succeed: the
# test suite runs this script on a small data set (tests/it/walkthrough.rs).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port="${PORT:-0}"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [[ -z "${LATTICE:-}" ]]; then
  (cd "$here" && cargo build --release --quiet)
  LATTICE="${CARGO_TARGET_DIR:-$here/target}/release/lattice"
fi
data="${DATA:-$HOME/.cache/lattice/data-scale1-seed42}"
if [[ ! -d "$data" ]]; then
  "$LATTICE" gen --scale 1 --seed 42 --out "$data"
fi

mkdir -p "$work/defs"
cp "$here/cube_defs/bank_crm.yaml" "$work/defs/"
"$LATTICE" serve --defs "$work/defs/bank_crm.yaml" --data "$data" --addr "127.0.0.1:$port" \
  --watch-ms 0 >"$work/serve.log" 2>&1 &
server_pid=$!
base=""
for _ in $(seq 1 1200); do
  base="$(grep -o 'serving on http://[0-9.:]*' "$work/serve.log" | head -n1 | sed 's/serving on //')" || true
  if [[ -n "$base" ]]; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$work/serve.log" >&2; exit 1; fi
  sleep 0.5
done
[[ -n "$base" ]] || { echo "the server did not start in 10 minutes" >&2; cat "$work/serve.log" >&2; exit 1; }
curl -sf "$base/health" >/dev/null

step=0
# ask TITLE METHOD PATH [BODY]: print the question and the start of the answer; fail on an error.
ask() {
  local title="$1" method="$2" path="$3" body="${4:-}"
  step=$((step + 1))
  printf '\n== %d. %s\n$ curl -X %s %s' "$step" "$title" "$method" "$path"
  [[ -n "$body" ]] && printf " -d '%s'" "$body"
  printf '\n'
  local args=(-sS --fail-with-body -X "$method" "$base$path")
  [[ -n "$body" ]] && args+=(-H 'content-type: application/json' -d "$body")
  curl "${args[@]}" >"$work/answer"
  python3 - "$work/answer" "${LINES_SHOWN:-8}" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
shown = int(sys.argv[2])
try:
    a = json.loads(text)
except ValueError:  # CSV
    lines = text.splitlines()
    print("\n".join(lines[:shown]) + (f"\n  ... {len(lines) - shown} more lines" if len(lines) > shown else ""))
    sys.exit()
def short(v, width=150):
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= width else s[: width - 3] + "..."
for key, v in a.items():
    if key == "columns" and isinstance(v, list) and all(isinstance(c, dict) and "name" in c for c in v):
        print(f"  columns: {short([c['name'] for c in v], 400)}")
    elif isinstance(v, list) and v and key in ("rows", "cells", "curve", "periods", "searches", "breakdowns", "bands", "cuboids", "dimensions", "measures"):
        print(f"  {key}: ({len(v)})")
        for item in v[:shown]:
            print(f"    {short(item)}")
        if len(v) > shown:
            print(f"    ... {len(v) - shown} more")
    elif isinstance(v, dict) and "columns" in v and "rows" in v:  # a table: its last rows
        print(f"  {key}: {short([c['name'] for c in v['columns']], 400)}")
        for row in v["rows"][-3:]:
            print(f"    {short(row, 400)}")
    else:
        print(f"  {key}: {short(v)}")
PY
}
# field EXPR: a value from the last answer (a Python expression over `a`, the parsed JSON).
field() { python3 -c "import json,sys; a=json.load(open(sys.argv[1])); print($1)" "$work/answer"; }

echo "Lattice at $base, data $data"

ask "What does the cube hold?" GET /v1/cubes/bank_crm

# --- 08:30, the morning report: where does the profit come from? ---------------------------
ask "Contribution by province in 2025 (interest margin + fees - allocated branch cost), with totals" \
  POST /v1/cubes/bank_crm/query \
  '{"measures": ["contribution", "interest_margin", "fee_income", "allocated_cost"], "rows": ["region.province"], "filters": [{"level": "time.year", "op": "eq", "value": "2025"}], "order": [{"by": "contribution", "dir": "desc"}], "totals": true}'

ask "Contribution by product category, year on year" \
  POST /v1/cubes/bank_crm/query \
  '{"measures": ["contribution"], "rows": ["product.category"], "columns": ["time.year"], "compare": {"level": "time.year", "lag": 1}}'

# --- 09:15, the 80/20 view and the value classes --------------------------------------------
ask "Pareto: how much of 2025's fee income do the top 20% of customers bring?" \
  POST /v1/cubes/bank_crm/analytics/pareto \
  '{"level": "customer.id", "measure": "fee_income", "filters": [{"level": "time.year", "op": "eq", "value": "2025"}], "cuts": [0.05, 0.2], "reach": [0.8], "points": 10}'
echo "-> the top 20% hold $(field 'a["cuts"][1]["share"]') of the fee income"

ask "Customers and contribution per value class (C/B/A: fee income rank within the year)" \
  POST /v1/cubes/bank_crm/query \
  '{"measures": ["customers", "contribution"], "rows": ["time.year", "customer.value_class"], "filters": [{"level": "customer.value_class", "op": "not_in", "values": ["unknown"]}]}'

# --- 10:00, channels ---------------------------------------------------------------------
ask "Channel share of transactions per month in the last quarter of 2025" \
  POST /v1/cubes/bank_crm/query \
  '{"measures": ["txn_count"], "rows": ["time.month", "channel.channel"], "filters": [{"level": "time.quarter", "op": "eq", "value": "2025-Q4"}], "shares": [{"measure": "txn_count", "of": ["time.month"], "name": "share_of_month"}]}'

# --- 11:00, manager performance ----------------------------------------------------------
ask "Manager performance in December 2025: customers, new and lost, balances, contribution, value-class-A share, rank in the branch" \
  POST /v1/cubes/bank_crm/analytics/performance \
  '{"level": "manager.manager", "period": "time.month", "from": "2025-12", "to": "2025-12", "measures": ["deposit_balance", "loan_balance", "fee_income", "contribution"], "high_value": {"level": "customer.value_class", "members": ["A"]}, "rank": {"within": "manager.branch", "by": "contribution"}, "limit": 5}'

# --- 13:30, risk: abnormal changes ---------------------------------------------------------
ask "Customers whose deposits more than halved over the year (Dec 2024 -> Dec 2025)" \
  POST /v1/cubes/bank_crm/analytics/abnormal \
  '{"kind": "change", "entity": "customer.id", "measure": "deposit_balance", "level": "time.month", "before": "2024-12", "after": "2025-12", "relative": 0.5, "direction": "down", "limit": 5}'
collapsed="$(field 'a["rows"][0]["member"] if a["rows"] else ""')"

ask "Outliers among their segment: deposit changes with a robust z-score beyond 3.5" \
  POST /v1/cubes/bank_crm/analytics/abnormal \
  '{"kind": "outlier", "entity": "customer.id", "measure": "deposit_balance", "level": "time.month", "before": "2024-12", "after": "2025-12", "peers": "customer.segment", "direction": "down", "limit": 5}'

ask "Dormant customers: active before, no transaction in the last 3 months" \
  POST /v1/cubes/bank_crm/analytics/abnormal \
  '{"kind": "dormant", "entity": "customer.id", "measure": "txn_count", "level": "time.month", "periods": 3, "limit": 5}'

ask "Deposit band migration, 2025-Q3 -> 2025-Q4" \
  POST /v1/cubes/bank_crm/analytics/migration \
  '{"band": "customer.deposit_band", "entity": "customer.id", "level": "time.quarter", "from": "2025-Q3", "to": "2025-Q4", "measures": ["deposit_balance"]}'
read -r from_band to_band < <(field '" ".join(next((c["from"], c["to"]) for c in a["cells"] if c["from"] and c["to"] and c["from"] != c["to"]))')
ask "Who moved from $from_band to $to_band?" \
  POST /v1/cubes/bank_crm/analytics/migration/drill \
  "{\"migration\": {\"band\": \"customer.deposit_band\", \"entity\": \"customer.id\", \"level\": \"time.quarter\", \"from\": \"2025-Q3\", \"to\": \"2025-Q4\", \"measures\": [\"deposit_balance\"]}, \"from_band\": \"$from_band\", \"to_band\": \"$to_band\", \"limit\": 5}"

# --- 15:00, the campaign list: target-customer searches -------------------------------------
ask "The definition's saved search: 200k+ deposits, no loan, online or mobile lately (CSV)" \
  POST '/v1/cubes/bank_crm/searches/affluent_digital_no_loan/run?format=csv' \
  '{"measures": ["deposit_balance", "contribution"], "order": [{"by": "deposit_balance", "dir": "desc"}], "limit": 5}'

ask "Save a search of our own: value class A or B customers in 2025 who hold no wealth product" \
  PUT /v1/cubes/bank_crm/searches/top_value_no_wealth \
  '{"name": "top_value_no_wealth", "description": "value class A or B in 2025, no wealth product in the latest month", "entity": "customer.id", "where": {"all": [{"level": "customer.value_class", "op": "in", "values": ["A", "B"], "period": {"level": "time.year", "value": "2025"}}, {"not": {"measure": "customers", "op": "gt", "value": 0, "filters": [{"level": "product.category", "op": "eq", "value": "wealth"}], "period": {"value": "latest"}}}]}}'

ask "Run it: how many, and the first few by contribution" \
  POST /v1/cubes/bank_crm/searches/top_value_no_wealth/run \
  '{"measures": ["contribution", "deposit_balance"], "order": [{"by": "contribution", "dir": "desc"}], "limit": 5}'
target="$(field 'a["rows"][0][0] if a["rows"] else ""')"

ask "Use it as a segment: where do these customers bank, by channel?" \
  POST /v1/cubes/bank_crm/query \
  '{"measures": ["txn_count", "fee_income", "active_customers"], "rows": ["channel.channel"], "segments": ["top_value_no_wealth"], "filters": [{"level": "time.year", "op": "eq", "value": "2025"}], "totals": true}'

ask "Drill through: the customers behind Zhejiang's 2025 transactions, largest first" \
  POST /v1/cubes/bank_crm/drillthrough \
  '{"level": "customer.id", "filters": [{"level": "region.province", "op": "eq", "value": "Zhejiang"}, {"level": "time.year", "op": "eq", "value": "2025"}], "measures": ["txn_amount", "contribution"], "order": [{"by": "txn_amount", "dir": "desc"}], "limit": 5}'

# --- 16:30, before calling: the single customer view -------------------------------------
for id in "$collapsed" "$target"; do
  [[ -n "$id" ]] || continue
  LINES_SHOWN=12 ask "Customer $id: attributes, manager, products, balances and bands by month, contribution, searches matched" \
    GET "/v1/cubes/bank_crm/entities/customer/$id"
done

echo
echo "Done: $step questions answered."
