// Drives a Lattice server's Cube REST API with the real `@cubejs-client/core`, as a dashboard
// would, and prints what the client made of each answer as JSON on stdout. The Rust side
// (tests/it/cubejs.rs) writes the cases and compares the results with the native engine.
//
//   node run.mjs <server url> <cases.json>
//
// cases.json: {"token": "...", "cases": [{"name", "kind": "load"|"meta"|"dryRun", "query",
//   "method"?: "GET"|"POST", "responseFormat"?: "default"|"compact"|"columnar",
//   "token"?: "...", "pivotConfig"?: {...}}]}
//
// Per case: {"name", "ok": true, "queryType", "results": [{"data", "query", "total",
//   "annotation"}], "pivotQuery", "tablePivot", "chartPivot", "series", "seriesNames",
//   "tableColumns"} or {"name", "ok": false, "status", "error"}.

import cube from '@cubejs-client/core';
import { readFileSync } from 'node:fs';

const [, , url, casesPath] = process.argv;
if (!url || !casesPath) {
  console.error('usage: node run.mjs <server url> <cases.json>');
  process.exit(2);
}
const spec = JSON.parse(readFileSync(casesPath, 'utf8'));
const apiUrl = `${url.replace(/\/$/, '')}/cubejs-api/v1`;

async function runCase(c) {
  const token = c.token ?? spec.token;
  const api = cube(token, { apiUrl, method: c.method ?? undefined });
  switch (c.kind ?? 'load') {
    case 'meta': {
      const meta = await api.meta();
      return {
        cubes: meta.cubes,
        compilerId: meta.meta.compilerId,
        measureNames: meta.membersForQuery(null, 'measures').map((m) => m.name),
        resolved: meta.resolveMember('bank_crm.fee_income', 'measures'),
        timeDimensions: meta.membersGroupedByCube().timeDimensions
          .flatMap((g) => g.members.map((m) => m.name)),
        operators: meta.filterOperatorsForMember('bank_crm.region_province', 'dimensions')
          .map((o) => o.name),
      };
    }
    case 'dryRun':
      return { dryRun: await api.dryRun(c.query) };
    default: {
      const rs = await api.load(c.query, {}, undefined, c.responseFormat ?? 'default');
      const pivot = c.pivotConfig ?? undefined;
      return {
        queryType: rs.queryType,
        results: rs.decompose().map((r) => ({
          data: r.rawData(),
          query: r.query(),
          total: r.totalRows(),
          annotation: r.annotation(),
        })),
        pivotQuery: rs.pivotQuery(),
        tablePivot: rs.tablePivot(pivot),
        chartPivot: rs.chartPivot(pivot),
        series: rs.series(pivot),
        seriesNames: rs.seriesNames(pivot),
        tableColumns: rs.tableColumns(pivot).map((col) => col.key),
      };
    }
  }
}

const out = [];
for (const c of spec.cases) {
  const started = performance.now();
  try {
    const result = await runCase(c);
    out.push({ name: c.name, ok: true, ms: performance.now() - started, ...result });
  } catch (e) {
    out.push({
      name: c.name,
      ok: false,
      ms: performance.now() - started,
      status: e.status ?? null,
      error: String(e.message ?? e),
    });
  }
}
process.stdout.write(JSON.stringify(out));
