// The analyses: Pareto, value classes, band migration, abnormal change, manager
// performance, saved searches.
import { h, clear, select } from './dom.js';
import { cubePath, postJson, getJson, request, cubeInfo, allLevels, members, errorBox, currentCube } from './api.js';
import { fmtValue, fmtDecimal, fmtInteger, fmtPercent, toNumber, escapeHtml } from './format.js';
import { chart, valueAxis, categoryAxis, PALETTE } from './charts.js';
import { exportBar } from './exportbar.js';
import { drillTable } from './explorer.js';
import { table } from './customer.js';

export const ANALYSES = [
  ['pareto', 'Pareto 80/20'], ['classes', 'Value classes'], ['migration', 'Band migration'],
  ['abnormal', 'Abnormal change'], ['performance', 'Manager performance'], ['searches', 'Saved searches'],
];

const PAGES = { pareto, classes, migration, abnormal, performance, searches };

export async function renderAnalysis(root, name) {
  const cube = currentCube();
  const body = h('div.analysis', { testid: 'analysis-' + name });
  clear(root, h('div.page', {},
    h('nav.subnav', { testid: 'analyses-nav' }, ANALYSES.map(([k, label]) => h('a', { href: '#/' + k, class: k === name ? 'on' : '', testid: 'nav-' + k }, label))),
    body));
  let info;
  try { info = await cubeInfo(cube); } catch (err) { clear(body, errorBox(err)); return; }
  await PAGES[name]({ cube, info, body });
}

// Small form helpers.
const field = (label, input) => h('label.field', {}, h('span', {}, label), input);
const timeMembers = async (cube, level) => (await members(cube, level, '', 1000)).members.map((m) => m.name).filter((n) => n !== 'unknown');
function nonTimeLevels(info) { return allLevels(info).filter((l) => l.dimension !== 'time').map((l) => l.qualified); }
function bucketLevels(info) { return allLevels(info).filter((l) => l.kind === 'bucket').map((l) => l.qualified); }

function form(fields, onRun, testid) {
  const out = h('div.out');
  const run = async () => {
    clear(out, h('p.muted', {}, 'running…'));
    try { await onRun(out); } catch (err) { clear(out, errorBox(err)); }
  };
  return { el: h('div', {}, h('div.form', {}, fields, h('button.primary', { testid: testid || 'run', onclick: run }, 'Run')), out), run };
}

// ---- Pareto ----
async function pareto({ cube, info, body }) {
  const levelSel = select({ testid: 'pareto-level' }, nonTimeLevels(info), 'customer.id');
  const measureSel = select({ testid: 'pareto-measure' }, info.measures.map((m) => m.name), 'fee_income');
  const years = await timeMembers(cube, 'time.year').catch(() => []);
  const yearSel = select({ testid: 'pareto-year' }, [['', 'all periods'], ...years], '');
  const path = cubePath(cube) + '/analytics/pareto';
  const req = () => {
    const r = { level: levelSel.value, measure: measureSel.value, cuts: [0.2], reach: [0.8], points: 100 };
    if (yearSel.value) r.filters = [{ level: 'time.year', op: 'eq', value: yearSel.value }];
    return r;
  };
  const f = form([field('Members of', levelSel), field('Measure', measureSel), field('Year', yearSel)], async (out) => {
    const r = req();
    const a = await postJson(path, r);
    const cut = a.cuts[0];
    const reach = a.reach[0];
    const el = h('div.chart', { testid: 'pareto-chart' });
    const share = cut && cut.share !== null ? cut.share : null;
    clear(out,
      h('div.panel-head', {}, h('h3', {}, `${a.measure} over ${fmtInteger(a.members)} members of ${a.level}`), exportBar(() => ({ path, body: r, name: cube + '-pareto' }))),
      h('p.summary', { testid: 'pareto-summary', 'data-share': share ?? '', 'data-members': cut ? cut.members : '' },
        cut ? `The top 20% (${fmtInteger(cut.members)} members) hold ${share === null ? '–' : fmtPercent(share, 1)} of the total ${fmtDecimal(a.total)} (${fmtDecimal(cut.value)}).` : '',
        reach && reach.members !== null ? ` 80% of the total is reached by the top ${fmtInteger(reach.members)} members (${fmtPercent(reach.member_share, 1)}).` : '',
        a.negative_members ? ` ${a.negative_members} members have a negative value.` : ''),
      el);
    requestAnimationFrame(() => chart(el, {
      grid: { left: 60, right: 70, top: 40, bottom: 50 },
      tooltip: { trigger: 'axis', formatter: (ps) => { const p = ps[0]; const pt = a.curve[p.dataIndex]; return `top ${fmtInteger(pt.members)} (${(pt.x * 100).toFixed(1)}%): ${fmtDecimal(pt.cumulative)}${pt.y !== null ? ' = ' + fmtPercent(pt.y, 1) : ''}`; } },
      xAxis: { type: 'value', min: 0, max: 100, name: '% of members (ranked)', nameLocation: 'middle', nameGap: 28, axisLabel: { formatter: '{value}%' } },
      yAxis: { type: 'value', min: 0, name: `cumulative share of ${a.measure}`, axisLabel: { formatter: '{value}%' } },
      series: [{
        type: 'line', name: 'cumulative share', showSymbol: false, lineStyle: { width: 2, color: PALETTE[0] }, areaStyle: { opacity: 0.08 },
        data: a.curve.map((p) => [p.x * 100, p.y === null ? null : p.y * 100]),
        markLine: share === null ? undefined : {
          symbol: 'none', lineStyle: { color: PALETTE[1], type: 'dashed' }, label: { formatter: '{b}' },
          data: [{ name: 'top 20%', xAxis: 20 }, { name: `${(share * 100).toFixed(1)}%`, yAxis: share * 100 }],
        },
        markPoint: share === null ? undefined : { symbolSize: 40, itemStyle: { color: PALETTE[1] }, label: { formatter: (share * 100).toFixed(0) + '%' }, data: [{ coord: [20, share * 100] }] },
      }, { type: 'line', name: 'equal shares', showSymbol: false, lineStyle: { type: 'dotted', color: '#999' }, data: [[0, 0], [100, 100]] }],
    }));
  }, 'pareto-run');
  clear(body, h('h2', {}, 'Pareto (80/20)'), f.el);
  f.run();
}

// ---- Value classes ----
async function classes({ cube, info, body }) {
  const has = (l) => allLevels(info).some((x) => x.qualified === l);
  if (!has('customer.value_class')) { clear(body, h('p', {}, 'This cube has no customer.value_class level.')); return; }
  const measureSel = select({ testid: 'classes-measure' }, info.measures.filter((m) => m.format === 'money').map((m) => m.name), 'fee_income');
  const path = cubePath(cube) + '/query';
  const f = form([field('Measure', measureSel)], async (out) => {
    const m = measureSel.value;
    const q = {
      measures: ['active_customers', m], rows: ['time.year', 'customer.value_class'],
      shares: [{ measure: m, of: ['time.year'] }, { measure: 'active_customers', of: ['time.year'] }],
    };
    const a = await postJson(path, q);
    const el = h('div.chart', { testid: 'classes-chart' });
    clear(out, h('div.panel-head', {}, h('h3', {}, `Value classes by year: ${m}`), exportBar(() => ({ path, body: q, name: cube + '-value-classes' }))),
      h('p.muted', {}, 'Per year, class A holds the top 5% of customers by fee income, B the next 15%, C the rest.'),
      el, h('div.scroll', {}, table(a, 'classes-table')));
    const years = [...new Set(a.rows.map((r) => r[0]))];
    const cls = [...new Set(a.rows.map((r) => r[1]))];
    const si = a.columns.findIndex((c) => c.name === m + '_share_of_time.year' || c.name === `${m}_share`);
    const shareIdx = si >= 0 ? si : 4;
    requestAnimationFrame(() => chart(el, {
      color: PALETTE, grid: { left: 60, right: 20, top: 40, bottom: 40 }, legend: { top: 0 },
      tooltip: { trigger: 'item', formatter: (p) => `${escapeHtml(p.seriesName)} ${escapeHtml(p.name)}: ${p.value.toFixed(1)}%` },
      xAxis: categoryAxis(years), yAxis: { type: 'value', max: 100, name: `share of ${m}`, axisLabel: { formatter: '{value}%' } },
      series: cls.map((c) => ({ type: 'bar', stack: 's', name: c, data: years.map((y) => { const r = a.rows.find((x) => x[0] === y && x[1] === c); return r ? (toNumber(r[shareIdx]) || 0) * 100 : 0; }) })),
    }));
  }, 'classes-run');
  clear(body, h('h2', {}, 'Value classes'), f.el);
  f.run();
}

// ---- Band migration ----
async function migration({ cube, info, body }) {
  const bands = bucketLevels(info);
  const bandSel = select({ testid: 'migration-band' }, bands, bands.includes('customer.deposit_band') ? 'customer.deposit_band' : bands[0]);
  const levelSel = select({ testid: 'migration-level' }, ['time.month', 'time.quarter', 'time.year'], 'time.quarter');
  const fromSel = select({ testid: 'migration-from' }, []);
  const toSel = select({ testid: 'migration-to' }, []);
  const fillPeriods = async () => {
    const ps = await timeMembers(cube, levelSel.value);
    clear(fromSel, ps.map((p) => h('option', { value: p }, p)));
    clear(toSel, ps.map((p) => h('option', { value: p }, p)));
    // The last two complete-looking periods.
    fromSel.value = ps[Math.max(0, ps.length - 2)] || '';
    toSel.value = ps[Math.max(0, ps.length - 1)] || '';
  };
  levelSel.addEventListener('change', fillPeriods);
  await fillPeriods().catch(() => {});
  const path = cubePath(cube) + '/analytics/migration';
  const mnames = info.measures.map((m) => m.name);
  const mSel = select({ testid: 'migration-measure' }, [['', '(none)'], ...mnames], mnames.includes('deposit_balance') ? 'deposit_balance' : '');
  const f = form([field('Band', bandSel), field('Period level', levelSel), field('From', fromSel), field('To', toSel), field('Values of', mSel)], async (out) => {
    const r = { band: bandSel.value, level: levelSel.value, from: fromSel.value, to: toSel.value };
    if (mSel.value) r.measures = [mSel.value];
    const a = await postJson(path, r);
    const drill = h('div.drill', { testid: 'migration-drill' });
    const axis = [...a.bands, null];
    const count = new Map(a.cells.map((c) => [JSON.stringify([c.from, c.to]), c.members]));
    const vals = new Map(a.cells.map((c) => [JSON.stringify([c.from, c.to]), c.values || {}]));
    const valText = (fb, tb) => Object.entries(vals.get(JSON.stringify([fb, tb])) || {}).map(([k, v]) => `\n${k}: ${fmtValue(v, null, k)}`).join('');
    const max = Math.max(1, ...a.cells.map((c) => c.members));
    const total = a.cells.reduce((s, c) => s + c.members, 0);
    const moved = a.cells.filter((c) => c.from !== c.to).reduce((s, c) => s + c.members, 0);
    const label = (b) => (b === null ? '(none)' : b);
    const heat = (n) => {
      if (!n) return '#fafafa';
      const t = Math.log(1 + n) / Math.log(1 + max);
      const l = Math.round(96 - t * 56);
      return `hsl(212, 60%, ${l}%)`;
    };
    const tbl = h('table.heat', { testid: 'migration-heatmap' },
      h('thead', {}, h('tr', {}, h('th.corner', {}, `${a.from} ↓ / ${a.to} →`), axis.map((b) => h('th', {}, label(b))), h('th', {}, 'total'))),
      h('tbody', {}, axis.map((fb) => {
        let rowSum = 0;
        return h('tr', {}, h('th.rowhead', {}, label(fb)), axis.map((tb) => {
          const n = count.get(JSON.stringify([fb, tb])) || 0;
          rowSum += n;
          const t = Math.log(1 + n) / Math.log(1 + max);
          return h('td.heatcell', {
            testid: 'migration-cell', 'data-from': fb ?? '', 'data-to': tb ?? '', 'data-members': n,
            class: 'heatcell' + (fb === tb ? ' diag' : '') + (n ? ' clickable' : ''),
            style: { background: heat(n), color: t > 0.6 ? '#fff' : '#222' },
            title: n ? `${fmtInteger(n)} members from ${label(fb)} to ${label(tb)}${valText(fb, tb)}\nclick for the list` : '',
            onclick: n ? () => migDrill(r, fb, tb, 0) : null,
          }, n ? fmtInteger(n) : '');
        }), h('td.num', {}, fmtInteger(rowSum)));
      })));
    const migDrill = async (mr, fb, tb, offset) => {
      const dpath = cubePath(cube) + '/analytics/migration/drill';
      const db = { migration: mr, from_band: fb, to_band: tb, limit: 20, offset };
      clear(drill, h('p.muted', {}, 'loading…'));
      try {
        const ans = await postJson(dpath, db);
        clear(drill, drillTable({ cube }, ans, db, (off) => migDrill(mr, fb, tb, off), `Members from ${label(fb)} to ${label(tb)}`,
          () => ({ path: dpath, body: Object.assign({}, db, { limit: Math.max(1, Math.min(ans.total || 100, 100000)), offset: 0 }), name: cube + '-migration-drill' })));
      } catch (err) { clear(drill, errorBox(err)); }
    };
    clear(out, h('div.panel-head', {}, h('h3', {}, `${a.band}: ${a.from} → ${a.to}`), exportBar(() => ({ path, body: r, name: cube + '-migration' }))),
      h('p.summary', { testid: 'migration-summary', 'data-moved': moved, 'data-total': total }, `${fmtInteger(total)} members; ${fmtInteger(moved)} changed band (${fmtPercent(total ? moved / total : 0, 1)}). Click a cell for its members.`),
      h('div.scroll', {}, tbl), drill);
  }, 'migration-run');
  clear(body, h('h2', {}, 'Band migration'), f.el);
  f.run();
}

// ---- Abnormal change ----
async function abnormal({ cube, info, body }) {
  const kindSel = select({ testid: 'abnormal-kind' }, ['change', 'outlier', 'dormant'], 'change');
  const measureSel = select({ testid: 'abnormal-measure' }, info.measures.map((m) => m.name), 'deposit_balance');
  const months = await timeMembers(cube, 'time.month').catch(() => []);
  const beforeSel = select({ testid: 'abnormal-before' }, months, months[Math.max(0, months.length - 2)]);
  const afterSel = select({ testid: 'abnormal-after' }, months, months[Math.max(0, months.length - 1)]);
  const rel = h('input.num', { type: 'number', step: '0.05', value: '0.5', testid: 'abnormal-relative' });
  const dirSel = select({ testid: 'abnormal-direction' }, ['down', 'up', 'any'], 'down');
  const peersSel = select({ testid: 'abnormal-peers' }, nonTimeLevels(info).filter((l) => l.startsWith('customer.')), 'customer.segment');
  const periods = h('input.num', { type: 'number', value: '3', min: 1, testid: 'abnormal-periods' });
  const path = cubePath(cube) + '/analytics/abnormal';
  let sortKey = 'impact';
  let sortDir = -1;
  let a = null;
  let r = null;
  const out2 = h('div');
  const render = () => {
    const isCust = a.entity === 'customer.id';
    const keys = ['member', ...(a.kind === 'outlier' ? ['peer', 'z'] : []), 'before', 'after', 'change', 'relative_change', ...(a.kind === 'dormant' ? ['last_active'] : []), 'impact'];
    const rows = a.rows.slice().sort((x, y) => {
      const vx = x[sortKey]; const vy = y[sortKey];
      if (vx === null || vx === undefined) return 1;
      if (vy === null || vy === undefined) return -1;
      const nx = toNumber(vx); const ny = toNumber(vy);
      if (nx !== null && ny !== null && sortKey !== 'member') return (nx - ny) * sortDir;
      return String(vx).localeCompare(String(vy), undefined, { numeric: true }) * sortDir;
    });
    clear(out2,
      h('div.panel-head', {}, h('h3', {}, `${fmtInteger(a.total)} members (${a.kind}, ${a.measure}, ${a.periods.join(' → ')})`), exportBar(() => ({ path, body: Object.assign({}, r, { limit: undefined }), name: cube + '-abnormal' }))),
      h('table.grid', { testid: 'abnormal-table' },
        h('thead', {}, h('tr', {}, keys.map((k) => h('th', { class: k === 'member' ? '' : 'num' }, h('button.sort', {
          testid: 'sort', 'data-key': k, 'data-dir': sortKey === k ? (sortDir > 0 ? 'asc' : 'desc') : '',
          onclick: () => { if (sortKey === k) sortDir = -sortDir; else { sortKey = k; sortDir = k === 'member' ? 1 : -1; } render(); },
        }, k.replace('_', ' '), sortKey === k ? (sortDir > 0 ? ' ▲' : ' ▼') : ''))))),
        h('tbody', {}, rows.length ? null : h('tr', {}, h('td.muted', { colspan: keys.length }, 'No member changed that much: try other periods or a smaller threshold.')),
          rows.map((row) => h('tr', { testid: 'abnormal-row', 'data-member': row.member }, keys.map((k) => {
          if (k === 'member') return h('td', {}, isCust ? h('a', { href: '#/customer/' + encodeURIComponent(row.member), testid: 'customer-link' }, row.member) : row.member);
          if (k === 'relative_change') return h('td.num', {}, row[k] === null || row[k] === undefined ? '–' : fmtPercent(row[k], 1));
          if (k === 'z') return h('td.num', {}, row[k] === null || row[k] === undefined ? '–' : row[k].toFixed(2));
          if (k === 'peer' || k === 'last_active') return h('td', {}, row[k] ?? '–');
          return h('td.num', { 'data-value': row[k] ?? '' }, fmtValue(row[k], null, k));
        }))))));
  };
  const f = form([field('Kind', kindSel), field('Measure', measureSel), field('Before', beforeSel), field('After', afterSel),
    field('Relative change >', rel), field('Direction', dirSel), field('Peers (outlier)', peersSel), field('Quiet periods (dormant)', periods)], async (out) => {
    const kind = kindSel.value;
    r = { kind, entity: 'customer.id', measure: measureSel.value, level: 'time.month', limit: 200 };
    if (kind === 'change') Object.assign(r, { before: beforeSel.value, after: afterSel.value, relative: Number(rel.value), direction: dirSel.value });
    if (kind === 'outlier') Object.assign(r, { before: beforeSel.value, after: afterSel.value, direction: dirSel.value, peers: peersSel.value });
    if (kind === 'dormant') Object.assign(r, { periods: Number(periods.value), measure: measureSel.value });
    a = await postJson(path, r);
    clear(out, out2);
    render();
  }, 'abnormal-run');
  kindSel.addEventListener('change', () => { if (kindSel.value === 'dormant') measureSel.value = 'txn_count'; });
  clear(body, h('h2', {}, 'Abnormal change'), f.el);
  f.run();
}

// ---- Manager performance ----
async function performance({ cube, info, body }) {
  const has = (l) => allLevels(info).some((x) => x.qualified === l);
  const level = has('manager.manager') ? 'manager.manager' : nonTimeLevels(info)[0];
  const months = await timeMembers(cube, 'time.month').catch(() => []);
  const fromSel = select({ testid: 'performance-from' }, months, months[Math.max(0, months.length - 1)]);
  const toSel = select({ testid: 'performance-to' }, months, months[Math.max(0, months.length - 1)]);
  const branches = has('manager.branch') ? (await members(cube, 'manager.branch', '', 1000).catch(() => ({ members: [] }))).members.map((m) => m.name) : [];
  const branchSel = select({ testid: 'performance-branch' }, [['', 'all branches'], ...branches], '');
  const byOpts = info.measures.map((m) => m.name);
  const bySel = select({ testid: 'performance-by' }, byOpts, byOpts.includes('contribution') ? 'contribution' : byOpts[0]);
  const path = cubePath(cube) + '/analytics/performance';
  const f = form([field('From', fromSel), field('To', toSel), field('Branch', branchSel), field('Rank by', bySel)], async (out) => {
    const want = ['deposit_balance', 'loan_balance', 'fee_income', 'contribution'].filter((m) => byOpts.includes(m));
    const ms = want.includes(bySel.value) ? want : [...want, bySel.value];
    const r = {
      level, period: 'time.month', from: fromSel.value, to: toSel.value, measures: ms,
      rank: has('manager.branch') ? { within: 'manager.branch', by: bySel.value } : undefined,
      high_value: has('customer.value_class') ? { level: 'customer.value_class', members: ['A'] } : undefined,
      filters: branchSel.value ? [{ level: 'manager.branch', op: 'eq', value: branchSel.value }] : [], limit: 1000,
    };
    const a = await postJson(path, r);
    const rows = a.rows.slice().sort((x, y) => (x.period < y.period ? -1 : x.period > y.period ? 1 : 0) || String(x.parent).localeCompare(String(y.parent)) || (x.rank ?? 1e9) - (y.rank ?? 1e9));
    clear(out, h('div.panel-head', {}, h('h3', {}, `${fmtInteger(a.total)} rows: ${a.level} per ${a.period}`), exportBar(() => ({ path, body: r, name: cube + '-performance' }))),
      h('div.scroll', {}, h('table.grid', { testid: 'performance-table' },
        h('thead', {}, h('tr', {}, ['period', 'branch', 'rank', a.level, 'customers', 'new', 'lost', 'high-value share', ...a.measures].map((c) => h('th', {}, c)))),
        h('tbody', {}, rows.map((x) => h('tr', { testid: 'performance-row', 'data-member': x.member, 'data-rank': x.rank ?? '' },
          h('td', {}, x.period), h('td', {}, x.parent ?? ''), h('td.num', {}, x.rank ?? '–'), h('th.rowhead', {}, x.member),
          h('td.num', {}, fmtValue(x.customers, 'integer')), h('td.num', {}, fmtValue(x.new_customers, 'integer')), h('td.num', {}, fmtValue(x.lost_customers, 'integer')),
          h('td.num', {}, x.high_value_share === null || x.high_value_share === undefined ? '–' : fmtPercent(x.high_value_share, 1)),
          a.measures.map((m) => h('td.num', {}, fmtValue(x.values[m], null, m)))))))));
  }, 'performance-run');
  clear(body, h('h2', {}, 'Manager performance'), h('p.muted', {}, 'Customers managed, new and lost, the high-value (class A) share, and the rank within the branch.'), f.el);
  f.run();
}

// ---- Saved searches ----
async function searches({ cube, body }) {
  const listEl = h('div.search-list', { testid: 'search-list' });
  const runOut = h('div.drill', { testid: 'search-result' });
  const load = async () => {
    try {
      const a = await getJson(cubePath(cube) + '/searches');
      clear(listEl, a.searches.length ? a.searches.map((s) => searchCard(s)) : h('p.muted', {}, 'No saved searches.'));
    } catch (err) { clear(listEl, errorBox(err)); }
  };
  const runSearch = async (name, offset = 0) => {
    const path = `${cubePath(cube)}/searches/${encodeURIComponent(name)}/run`;
    const b = { measures: ['deposit_balance', 'txn_count'], limit: 20, offset };
    clear(runOut, h('p.muted', {}, 'running…'));
    try {
      const ans = await postJson(path, b);
      if (ans.suppressed || ans.members_withheld) {
        clear(runOut, h('h3', {}, name), h('p.note', { testid: 'search-withheld' }, ans.suppressed ? 'The answer is withheld (small sets).' : `${fmtInteger(ans.count)} members; the list is withheld (small-cell rules).`));
        return;
      }
      const all = ans.total;
      ans.total = ans.count;
      clear(runOut, drillTable({ cube }, ans, b, (off) => runSearch(name, off), `${name}: ${fmtInteger(ans.count)} of ${fmtInteger(all)} members`,
        () => ({ path, body: { measures: b.measures }, name: cube + '-search-' + name })));
    } catch (err) { clear(runOut, errorBox(err)); }
  };
  const searchCard = (s) => {
    const path = `${cubePath(cube)}/searches/${encodeURIComponent(s.name)}/run`;
    return h('div.card.search', { testid: 'search-item', 'data-name': s.name },
      h('div.panel-head', {}, h('strong', {}, s.name), h('span.muted', {}, ` ${s.source}${s.owner ? ' · ' + s.owner : ''}${s.shared ? ' · shared' : ''}`)),
      s.description ? h('p', {}, s.description) : null,
      h('div.actions', {},
        h('button', { testid: 'search-run', 'data-name': s.name, onclick: () => runSearch(s.name) }, 'Run'),
        h('button', { testid: 'search-use', 'data-name': s.name, onclick: () => {
          const q = { measures: ['deposit_balance', 'active_customers'], rows: ['region.province'], segments: [s.name], totals: true };
          location.hash = '#/explore?q=' + encodeURIComponent(JSON.stringify(q));
        } }, 'Use as filter'),
        exportBar(() => ({ path, body: { measures: ['deposit_balance', 'txn_count'] }, name: cube + '-search-' + s.name }), 'search')),
      h('details', {}, h('summary', {}, 'definition'), h('pre', {}, JSON.stringify(s.where, null, 2))));
  };
  const nameIn = h('input', { testid: 'search-name', placeholder: 'name (letters, digits, _ and -)', value: 'high_deposit_mass' });
  const docIn = h('textarea.code', { testid: 'search-doc', rows: 10 }, JSON.stringify({
    description: 'mass customers with a deposit band of 200k+ in the latest month',
    entity: 'customer.id',
    where: { all: [
      { level: 'customer.segment', op: 'eq', value: 'mass' },
      { level: 'customer.deposit_band', op: 'in', values: ['200k-1M', '1M+'], period: { level: 'time.month', value: 'latest' } },
    ] },
  }, null, 2));
  const saveOut = h('div', { testid: 'search-save-result' });
  const save = async () => {
    clear(saveOut);
    let doc;
    try { doc = JSON.parse(docIn.value); } catch (e) { clear(saveOut, h('div.error', {}, 'Not JSON: ' + e.message)); return; }
    doc.name = nameIn.value.trim();
    try {
      const res = await request('PUT', `${cubePath(cube)}/searches/${encodeURIComponent(doc.name)}`, { json: doc });
      clear(saveOut, h('p.ok', {}, `Saved ${doc.name} (${res.status === 201 ? 'new' : 'replaced'}).`));
      load();
    } catch (err) { clear(saveOut, errorBox(err)); }
  };
  clear(body, h('h2', {}, 'Saved searches'), listEl, runOut,
    h('section.card', {}, h('h3', {}, 'Save a search'), field('Name', nameIn), docIn,
      h('div.actions', {}, h('button.primary', { testid: 'search-save', onclick: save }, 'Save')), saveOut));
  await load();
}
