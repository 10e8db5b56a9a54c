#!/usr/bin/env python3
"""Asks Lattice's Flight SQL listener what a Python program using the ADBC Flight SQL driver
asks, and prints one JSON document with what it got:

    python3 tests/flight/adbc_client.py grpc://127.0.0.1:PORT KEY

  statement   rows of a plain statement
  prepared    {"2025": rows, "2024": rows}: one prepared statement bound twice (`?`)
  objects     what get_objects lists (catalog, schema, tables)
  columns     the table's columns as get_table_schema gives them
  error       the message of a statement the cube refuses

Decimals are written as strings (exact). Exits 3 when the driver is not installed.
"""
import json
import sys
import warnings

try:
    import adbc_driver_flightsql.dbapi as flight_sql
except ImportError:
    print("adbc_driver_flightsql is not installed", file=sys.stderr)
    sys.exit(3)

warnings.simplefilter("ignore")


def plain(rows):
    return [[str(v) if v is not None else None for v in r] for r in rows]


def main():
    uri, key = sys.argv[1], sys.argv[2]
    out = {}
    conn = flight_sql.connect(uri, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {key}"})
    cur = conn.cursor()
    cur.execute(
        "SELECT region_province, MEASURE(txn_amount), MEASURE(active_customers) "
        "FROM bank_crm GROUP BY region_province ORDER BY region_province"
    )
    out["statement"] = plain(cur.fetchall())
    out["prepared"] = {}
    sql = (
        "SELECT region_province, MEASURE(txn_amount) FROM bank_crm "
        "WHERE time_year = ? GROUP BY region_province ORDER BY region_province"
    )
    for year in ("2025", "2024"):
        cur.execute(sql, (year,))
        out["prepared"][year] = plain(cur.fetchall())
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    out["objects"] = [
        [c["catalog_name"], s["db_schema_name"], t["table_name"], t["table_type"]]
        for c in objects
        for s in c["catalog_db_schemas"] or []
        for t in s["db_schema_tables"] or []
    ]
    schema = conn.adbc_get_table_schema("bank_crm")
    out["columns"] = {f.name: str(f.type) for f in schema}
    try:
        cur.execute("SELECT SUM(active_customers) FROM bank_crm")
        cur.fetchall()
        out["error"] = None
    except Exception as e:  # the driver's error type varies by version
        out["error"] = str(e)
    conn.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
