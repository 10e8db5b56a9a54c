"""Real Postgres clients against `lattice serve --pg-addr` (run by tests/it/pg.rs).

Usage: clients.py HOST PORT KEY

Prints one JSON document: what psycopg 3 answered with server-side parameters (the extended
protocol, a prepared statement bound twice), and what SQLAlchemy's inspector lists as Superset
reads it: schemas, tables, columns with their types and comments, the table's comment, keys,
indexes and unique constraints (none: a cube table has none). Exits 3 when psycopg or
SQLAlchemy is missing.
"""

import json
import sys

try:
    import psycopg
    import sqlalchemy
except ImportError as e:  # the Rust test decides whether a missing client is an error
    print(f"missing client library: {e}", file=sys.stderr)
    sys.exit(3)


def main() -> None:
    host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    out = {}
    conninfo = f"host={host} port={port} dbname=lattice user=tester password={key}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        with conn.cursor() as cur:
            sql = (
                "SELECT region_province, MEASURE(txn_amount) AS amount, "
                "MEASURE(active_customers) AS active FROM bank_crm "
                "WHERE region_province = %s AND time_year = %s GROUP BY region_province"
            )
            rows = []
            for province in ["Zhejiang", "Jiangsu"]:
                # prepare=True: a named server-side statement, bound with each value.
                cur.execute(sql, [province, "2025"], prepare=True)
                for r in cur.fetchall():
                    rows.append([r[0], str(r[1]), r[2]])
            out["psycopg_rows"] = rows
            cur.execute("SELECT MEASURE(txn_count) FROM bank_crm WHERE time_month BETWEEN %s AND %s",
                        ["2025-01", "2025-03"])
            out["psycopg_q1_count"] = cur.fetchone()[0]
            try:
                cur.execute("SELECT SUM(active_customers) FROM bank_crm")
                out["psycopg_error"] = None
            except psycopg.Error as e:
                out["psycopg_error"] = {"sqlstate": e.sqlstate, "message": str(e)}
            # The connection still answers after an error.
            cur.execute("SELECT 1")
            out["after_error"] = cur.fetchone()[0]

    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://tester:{key}@{host}:{port}/lattice"
    )
    inspector = sqlalchemy.inspect(engine)
    out["schemas"] = inspector.get_schema_names()
    out["tables"] = inspector.get_table_names()
    # What Superset reads when a table is added as a dataset.
    out["columns"] = [
        {"name": c["name"], "type": str(c["type"]), "comment": c.get("comment")}
        for c in inspector.get_columns("bank_crm")
    ]
    out["table_comment"] = inspector.get_table_comment("bank_crm")["text"]
    out["pk"] = inspector.get_pk_constraint("bank_crm")["constrained_columns"]
    out["foreign_keys"] = inspector.get_foreign_keys("bank_crm")
    out["indexes"] = inspector.get_indexes("bank_crm")
    out["unique"] = inspector.get_unique_constraints("bank_crm")
    with engine.connect() as c:
        r = c.execute(
            sqlalchemy.text(
                "SELECT time_year, MEASURE(txn_count) AS n FROM bank_crm "
                "GROUP BY time_year ORDER BY time_year"
            )
        )
        out["sqlalchemy_rows"] = [[row[0], row[1]] for row in r]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
