#!/usr/bin/env python3
"""Checks that a generated data set has the shape the data contract promises users (tables, columns,
types, value sets; see "The data contract" in docs/architecture.md). Needs pyarrow
(`python3 -m pip install pyarrow`). Run by the test `synth::contract_check_passes`.

usage: python3 scripts/check_data.py DATA_DIR
Prints each problem; last line 'contract holds' or 'N problems'. Exit 0 iff it holds.
"""
import sys
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MONEY = pa.decimal128(18, 2)
TEXT = (pa.string(), pa.large_string(), pa.string_view())
CONTRACT = {
    "customers": {"customer_id": pa.int64(), "customer_type": TEXT, "name": TEXT, "age": pa.int32(),
                  "monthly_income": MONEY, "education": TEXT, "segment": TEXT, "region_id": pa.int32(),
                  "manager_id": pa.int32(), "open_date": pa.date32()},
    "products": {"product_id": pa.int32(), "product_name": TEXT, "category": TEXT},
    "regions": {"region_id": pa.int32(), "province": TEXT, "city": TEXT, "branch": TEXT},
    "managers": {"manager_id": pa.int32(), "manager_name": TEXT, "region_id": pa.int32()},
    "channels": {"channel_id": pa.int32(), "channel": TEXT},
    "transactions": {"txn_id": pa.int64(), "txn_date": pa.date32(), "customer_id": pa.int64(),
                     "product_id": pa.int32(), "channel_id": pa.int32(), "amount": MONEY, "fee_income": MONEY},
    "balances": {"month": pa.date32(), "customer_id": pa.int64(), "product_id": pa.int32(),
                 "deposit_balance": MONEY, "loan_balance": MONEY, "credit_line": MONEY, "interest_margin": MONEY},
    "branch_costs": {"month": pa.date32(), "region_id": pa.int32(), "operating_cost": MONEY},
}
VALUES = {
    ("customers", "customer_type"): {"individual", "corporate"},
    ("customers", "segment"): {"mass", "affluent", "private", "sme", "large_corp"},
    ("products", "category"): {"deposit", "loan", "card", "wealth", "intermediary"},
    ("channels", "channel"): {"counter", "ATM", "POS", "phone", "online", "mobile"},
}

def main(d):
    problems = []
    tables = {}
    for name, cols in CONTRACT.items():
        try:
            t = pq.read_table(f"{d}/{name}.parquet")
        except Exception as e:
            problems.append(f"{name}.parquet: cannot read ({e})"); continue
        tables[name] = t
        for col, want in cols.items():
            if col not in t.schema.names:
                problems.append(f"{name}: missing column {col}"); continue
            got = t.schema.field(col).type
            ok = got in want if isinstance(want, tuple) else got == want
            if not ok:
                problems.append(f"{name}.{col}: type {got}, want {want if not isinstance(want, tuple) else 'string'}")
        extra = set(t.schema.names) - set(cols)
        if extra:
            print(f"note: {name} has extra columns {sorted(extra)} (allowed)")
    for (tname, col), allowed in VALUES.items():
        if tname in tables and col in tables[tname].schema.names:
            seen = set(pc.unique(tables[tname][col]).to_pylist()) - {None}
            if not seen <= allowed:
                problems.append(f"{tname}.{col}: values {sorted(seen - allowed)} not in {sorted(allowed)}")
    if "balances" in tables:
        days = set(pc.day(tables["balances"]["month"]).to_pylist())
        if days - {1}:
            problems.append("balances.month: not always the first day of a month")
    if "customers" in tables:
        c = tables["customers"]
        corp_age = pc.sum(pc.and_(pc.equal(c["customer_type"], "corporate"), pc.is_valid(c["age"]))).as_py() or 0
        if corp_age:
            problems.append(f"customers.age: {corp_age} corporates have an age (should be null)")
    for p in problems:
        print(p)
    print("contract holds" if not problems else f"{len(problems)} problems")
    return 0 if not problems else 1

if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
