// The explorer: levels on rows and columns, measures in cells, filters, totals, compare,
// top-N; a pivot table or charts; drill-down by hierarchy, drill-through to customers.
import { h, clear, select, debounce } from './dom.js';
import {
  cubePath, postJson, getJson, cubeInfo, allLevels, childLevel, measureInfo, members, errorBox, currentCube,
} from './api.js';
import { fmtValue, toNumber, fmtInteger, escapeHtml } from './format.js';
import { chart, valueAxis, categoryAxis, PALETTE } from './charts.js';
import { exportBar } from './exportbar.js';


const DEFAULT = () => ({
  rows: ['region.province'], columns: ['time.year'], measures: ['txn_amount', 'active_customers'],
  filters: [], segments: [], totals: true, compare: false, lag: 1, orderBy: '', dir: 'desc', limit: '',
});

let S = null; // the explorer's state, kept across navigation
let cubeOf = null;
let view = 'table';
let crumbs = []; // [{label, state}] drill-down path
let last = null; // {query, answer}
let chartMeasure = '';

function snapshot() { return JSON.parse(JSON.stringify(S)); }

export function buildQuery(st) {
  const q = { measures: st.measures.slice(), rows: st.rows.slice() };
  if (st.columns.length) q.columns = st.columns.slice();
  const filters = st.filters.filter((f) => f.values.length).map((f) =>
    (f.op === 'eq' ? { level: f.level, op: 'eq', value: f.values[0] } : { level: f.level, op: f.op, values: f.values.slice() }));
  if (filters.length) q.filters = filters;
  if (st.segments.length) q.segments = st.segments.slice();
  if (st.totals) q.totals = true;
  if (st.compare) {
    // The compared level: the one asked for, else the finest time level grouped.
    const grouped = [...st.rows, ...st.columns];
    const rank = (l) => ['time.year', 'time.quarter', 'time.month'].indexOf(l);
    const times = grouped.filter((l) => l.startsWith('time.')).sort((a, b) => rank(b) - rank(a));
    const lvl = grouped.includes(st.compareLevel) ? st.compareLevel : times[0];
    if (lvl) q.compare = { level: lvl, lag: Number(st.lag) || 1 };
  }
  if (st.orderBy) q.order = [{ by: st.orderBy, dir: st.dir }];
  if (st.limit !== '' && Number(st.limit) > 0) q.limit = Number(st.limit);
  return q;
}

export function setExplorerQuery(cube, q) {
  cubeOf = cube;
  S = DEFAULT();
  S.rows = q.rows || [];
  S.columns = q.columns || [];
  S.measures = q.measures || S.measures;
  S.filters = (q.filters || []).map((f) => ({ level: f.level, op: f.op, values: f.values || (f.value !== undefined ? [f.value] : []) }));
  S.segments = q.segments || [];
  S.totals = !!q.totals;
  S.compare = !!q.compare;
  if (q.compare) { S.lag = q.compare.lag || 1; S.compareLevel = q.compare.level; }
  if (q.order && q.order[0]) { S.orderBy = q.order[0].by; S.dir = q.order[0].dir || 'asc'; }
  S.limit = q.limit || '';
  crumbs = [];
  last = null;
}

export async function renderExplorer(root, params) {
  const cube = currentCube();
  if (!cube) { clear(root, h('p', {}, 'No cube is served.')); return; }
  if (params && params.get('q')) {
    try { setExplorerQuery(cube, JSON.parse(params.get('q'))); } catch { /* ignore a bad q */ }
  }
  if (!S || cubeOf !== cube) { S = DEFAULT(); cubeOf = cube; crumbs = []; last = null; }
  const side = h('aside.side', { testid: 'explorer-controls' });
  const main = h('section.main', { testid: 'explorer-result' });
  clear(root, h('div.explorer', {}, side, main));
  let info;
  try {
    info = await cubeInfo(cube);
  } catch (err) {
    clear(side, errorBox(err));
    return;
  }
  // Keep only names this cube has.
  const levelNames = new Set(allLevels(info).map((l) => l.qualified));
  const measureNames = new Set(info.measures.map((m) => m.name));
  S.rows = S.rows.filter((l) => levelNames.has(l));
  S.columns = S.columns.filter((l) => levelNames.has(l));
  S.measures = S.measures.filter((m) => measureNames.has(m));
  if (!S.measures.length) S.measures = [info.measures[0].name];

  const ctx = { cube, info, side, main };
  renderControls(ctx);
  renderResult(ctx);
  if (!last || last.cube !== cube) run(ctx);
}

function levelOptions(info, exclude) {
  const opts = [['', '+ add a level…']];
  for (const d of info.dimensions) {
    for (const l of d.levels) if (!exclude.includes(l.qualified)) opts.push([l.qualified, `${d.name} · ${l.name}`]);
  }
  return opts;
}

function renderControls(ctx) {
  const { info, side } = ctx;
  const rerender = () => renderControls(ctx);

  // Drag a level chip to the other axis, or before another chip to reorder.
  const move = (ev, key, before) => {
    ev.preventDefault();
    ev.stopPropagation();
    let src;
    try { src = JSON.parse(ev.dataTransfer.getData('text/plain')); } catch { return; }
    if (!src || !S[src.key] || S[src.key][src.i] !== src.level) return;
    S[src.key].splice(src.i, 1);
    let at = before === null ? S[key].length : S[key].indexOf(before);
    if (at < 0) at = S[key].length;
    S[key].splice(at, 0, src.level);
    rerender();
  };
  const axis = (key, title) => {
    const used = [...S.rows, ...S.columns];
    return h('div.block', { ondragover: (e) => e.preventDefault(), ondrop: (e) => move(e, key, null) },
      h('h3', {}, title),
      h('div.chips', { testid: key + '-levels' }, S[key].map((l, i) => h('span.chip', {
        testid: key === 'rows' ? 'row-level' : 'column-level', 'data-level': l, draggable: 'true', title: 'drag to move',
        ondragstart: (e) => { e.dataTransfer.setData('text/plain', JSON.stringify({ key, i, level: l })); e.dataTransfer.effectAllowed = 'move'; },
        ondragover: (e) => e.preventDefault(), ondrop: (e) => move(e, key, l),
      },
        l,
        i > 0 ? h('button.x', { title: 'move up', onclick: () => { const a = S[key]; [a[i - 1], a[i]] = [a[i], a[i - 1]]; rerender(); } }, '↑') : null,
        h('button.x', { title: 'move to ' + (key === 'rows' ? 'columns' : 'rows'), onclick: () => { S[key].splice(i, 1); S[key === 'rows' ? 'columns' : 'rows'].push(l); rerender(); } }, '⇄'),
        h('button.x', { testid: 'remove-level', title: 'remove', onclick: () => { S[key].splice(i, 1); rerender(); } }, '×')))),
      select({ testid: key + '-picker', 'aria-label': 'add a level to ' + key, onchange: (e) => { if (e.target.value) { S[key].push(e.target.value); rerender(); } } },
        levelOptions(info, used), ''));
  };

  const measures = h('div.block', {},
    h('h3', {}, 'Measures'),
    h('div.measures', { testid: 'measure-picker' }, info.measures.map((m) => h('label.check', { title: m.description || '' },
      h('input', {
        type: 'checkbox', value: m.name, 'data-testid': 'measure-option', checked: S.measures.includes(m.name),
        onchange: (e) => {
          if (e.target.checked) { if (!S.measures.includes(m.name)) S.measures.push(m.name); } else S.measures = S.measures.filter((x) => x !== m.name);
          if (S.orderBy && !S.measures.includes(S.orderBy) && !S.rows.includes(S.orderBy)) S.orderBy = '';
          rerender();
        },
      }), ' ', m.name, h('span.unit', {}, m.format ? ' ' + m.format : '')))));

  const filters = h('div.block', {},
    h('h3', {}, 'Filters'),
    S.filters.map((f, i) => filterBox(ctx, f, i, rerender)),
    select({ testid: 'filter-level', 'aria-label': 'filter on a level', onchange: (e) => { if (e.target.value) { S.filters.push({ level: e.target.value, op: 'in', values: [] }); rerender(); } } },
      levelOptions(info, []).map((o, i) => (i === 0 ? ['', '+ filter on a level…'] : o)), ''),
    segmentsBox(ctx, rerender));

  const orderOpts = [['', '(member order)'], ...S.measures.map((m) => [m, m]), ...S.rows.map((l) => [l, l])];
  const options = h('div.block', {},
    h('h3', {}, 'Options'),
    h('label.check', {}, h('input', { type: 'checkbox', testid: 'totals', checked: S.totals, onchange: (e) => { S.totals = e.target.checked; } }), ' totals and sub-totals'),
    h('label.check', {}, h('input', { type: 'checkbox', testid: 'compare', checked: S.compare, onchange: (e) => { S.compare = e.target.checked; } }),
      ' compare with the previous period'),
    h('div.row', {}, 'on ', select({ testid: 'compare-level', onchange: (e) => { S.compareLevel = e.target.value; } },
      [['', 'finest time level'], ...allLevels(info).filter((l) => l.dimension === 'time').map((l) => [l.qualified, l.qualified])], S.compareLevel || ''),
    ' lag ', h('input.num', { type: 'number', min: 1, value: S.lag, testid: 'compare-lag', onchange: (e) => { S.lag = e.target.value; } })),
    h('div.row', {}, 'Order by ', select({ testid: 'order-by', onchange: (e) => { S.orderBy = e.target.value; } }, orderOpts, S.orderBy),
      select({ testid: 'order-dir', onchange: (e) => { S.dir = e.target.value; } }, [['desc', 'desc'], ['asc', 'asc']], S.dir)),
    h('div.row', {}, 'Top ', h('input.num', { type: 'number', min: 1, testid: 'limit', placeholder: 'all', value: S.limit, onchange: (e) => { S.limit = e.target.value; } }), ' rows'));

  clear(side,
    axis('rows', 'Rows'), axis('columns', 'Columns'), measures, filters, options,
    h('div.actions', {},
      h('button.primary', { testid: 'run', onclick: () => { crumbs = []; run(ctx); } }, 'Run'),
      h('button', { testid: 'reset', onclick: () => { S = DEFAULT(); crumbs = []; rerender(); run(ctx); } }, 'Reset')));
}

function filterBox(ctx, f, i, rerender) {
  const optionsEl = h('div.options', { testid: 'filter-options' });
  const chips = h('div.chips', {}, f.values.map((v) => h('span.chip', { testid: 'filter-chip', 'data-member': v }, v,
    h('button.x', { onclick: () => { f.values = f.values.filter((x) => x !== v); rerender(); } }, '×'))));
  const load = async (search) => {
    try {
      const ans = await members(ctx.cube, f.level, search, 50);
      clear(optionsEl, ans.members.map((m) => h('button.option', {
        type: 'button', testid: 'filter-option', 'data-member': m.name, class: 'option' + (f.values.includes(m.name) ? ' on' : ''),
        title: m.parent ? 'in ' + m.parent : '',
        onclick: () => {
          if (f.values.includes(m.name)) f.values = f.values.filter((x) => x !== m.name); else f.values.push(m.name);
          rerender();
        },
      }, m.name)), ans.total > ans.members.length ? h('span.more', {}, `… ${ans.total - ans.members.length} more: type to search`) : null);
    } catch (err) {
      clear(optionsEl, errorBox(err));
    }
  };
  const search = h('input', { type: 'search', testid: 'filter-search', placeholder: 'search members', value: f.search || '' });
  search.addEventListener('input', debounce(() => { f.search = search.value; load(search.value); }, 200));
  load(f.search || '');
  return h('div.filter', { testid: 'filter', 'data-level': f.level },
    h('div.filter-head', {}, h('strong', {}, f.level), ' ',
      select({ testid: 'filter-op', onchange: (e) => { f.op = e.target.value; } }, [['in', 'in'], ['not_in', 'not in'], ['eq', '=']], f.op),
      h('button.x', { testid: 'filter-remove', title: 'remove the filter', onclick: () => { S.filters.splice(i, 1); rerender(); } }, '×')),
    chips, search, optionsEl);
}

let searchesCache = { key: null, list: null };
function segmentsBox(ctx, rerender) {
  const box = h('div.segments', { testid: 'segment-picker' });
  const fill = (list) => {
    clear(box, list.length ? h('div.label', {}, 'Segments (saved searches)') : null,
      list.map((s) => h('label.check', { title: s.description || '' }, h('input', {
        type: 'checkbox', value: s.name, testid: 'segment-option', checked: S.segments.includes(s.name),
        onchange: (e) => { S.segments = e.target.checked ? [...S.segments, s.name] : S.segments.filter((x) => x !== s.name); },
      }), ' ', s.name)));
  };
  if (searchesCache.key === ctx.cube && searchesCache.list) fill(searchesCache.list);
  else getJson(cubePath(ctx.cube) + '/searches').then((a) => { searchesCache = { key: ctx.cube, list: a.searches }; fill(a.searches); }).catch(() => fill([]));
  return box;
}

let runSeq = 0;
async function run(ctx) {
  const my = ++runSeq;
  const q = buildQuery(S);
  const { main } = ctx;
  const status = main.querySelector('[data-testid=status]');
  if (status) status.textContent = 'running…';
  try {
    const answer = await postJson(cubePath(ctx.cube) + '/query', q);
    if (my !== runSeq) return;
    last = { cube: ctx.cube, query: q, answer, state: snapshot() };
  } catch (err) {
    if (my !== runSeq) return;
    last = { cube: ctx.cube, query: q, error: err, state: snapshot() };
  }
  renderResult(ctx);
}

function drillDown(ctx, level, member) {
  const child = childLevel(ctx.info, level);
  if (!child) return;
  crumbs.push({ label: `${level} = ${member}`, state: snapshot() });
  for (const key of ['rows', 'columns']) {
    const i = S[key].indexOf(level);
    if (i >= 0) S[key][i] = child;
  }
  S.filters = S.filters.filter((f) => f.level !== level);
  S.filters.push({ level, op: 'in', values: [member] });
  if (S.orderBy === level) S.orderBy = '';
  renderControls(ctx);
  run(ctx);
}

function goUp(ctx, i) {
  S = crumbs[i].state;
  crumbs = crumbs.slice(0, i);
  renderControls(ctx);
  run(ctx);
}

function renderResult(ctx) {
  const { main } = ctx;
  const views = [['table', 'Table'], ['bar', 'Bars'], ['line', 'Lines'], ['stacked', 'Stacked bars'], ['pie', 'Share']];
  const head = h('div.result-head', {},
    h('div.views', { role: 'tablist' }, views.map(([v, label]) => h('button', {
      testid: 'view-' + v, class: v === view ? 'on' : '', 'aria-pressed': v === view ? 'true' : 'false',
      onclick: () => { view = v; renderResult(ctx); },
    }, label))),
    last && last.answer ? exportBar(() => ({ path: cubePath(ctx.cube) + '/query', body: last.query, name: ctx.cube + '-query' })) : null,
    h('span.status', { testid: 'status' }, last && last.answer ? metaLine(last.answer) : ''));
  const crumbBar = h('nav.breadcrumb', { testid: 'breadcrumb' },
    h('button.link', { testid: 'crumb', 'data-depth': 0, disabled: crumbs.length === 0, onclick: () => crumbs.length && goUp(ctx, 0) }, 'All'),
    crumbs.map((c, i) => [' › ', h('button.link', { testid: 'crumb', 'data-depth': i + 1, disabled: i === crumbs.length - 1, onclick: () => goUp(ctx, i + 1) }, c.label)]));
  const body = h('div.result-body');
  const drill = h('div.drill', { testid: 'drill-panel' });
  clear(main, head, crumbBar, body, drill);
  if (!last) { body.appendChild(h('p.muted', {}, 'Pick levels and measures, then Run.')); return; }
  if (last.error) { body.appendChild(errorBox(last.error)); return; }
  const model = pivotModel(ctx, last.query, last.answer);
  if (view === 'table') body.appendChild(pivotTable(ctx, model, drill));
  else body.appendChild(chartView(ctx, model));
}

function metaLine(a) {
  const m = a.meta || {};
  return `${fmtInteger(m.total_rows ?? a.rows.length)} rows · ${m.source || ''} · ${m.elapsed_us ?? '?'} µs${m.cached ? ' (cached)' : ''} · snapshot ${m.snapshot ?? ''}`;
}

// Turn an answer into rows × column groups × measures.
function pivotModel(ctx, q, a) {
  const nRow = q.rows.length;
  const measureCols = a.columns.slice(nRow).map((c, k) => {
    const parts = c.name.split('|');
    const measure = parts.pop();
    return { index: nRow + k, name: c.name, type: c.type, measure, members: parts };
  });
  const colKeys = [];
  const seen = new Set();
  for (const c of measureCols) {
    const key = c.members.join('|');
    if (!seen.has(key)) { seen.add(key); colKeys.push(c.members); }
  }
  const measures = [];
  for (const c of measureCols) if (!measures.includes(c.measure)) measures.push(c.measure);
  const sup = a.suppressed || null;
  const supCells = new Set(sup ? sup.cells.map(([r, c]) => r + ',' + c) : []);
  const supTotals = new Set(sup ? sup.totals : []);
  const supSub = new Set(sup ? sup.subtotals.map(([s, r]) => s + ',' + r) : []);
  const typeOf = {};
  for (const c of measureCols) typeOf[c.measure] = c.type;
  return { q, a, nRow, measureCols, colKeys, measures, supCells, supTotals, supSub, typeOf, pivot: (q.columns || []).length > 0 };
}

function baseMeasure(info, name) {
  if (measureInfo(info, name)) return name;
  const m = /^(.*)_(prev|change)$/.exec(name);
  if (m && measureInfo(info, m[1])) return m[1];
  return null;
}

function valueCell(testid, raw, type, name, withheld, attrs) {
  const text = withheld ? 'withheld' : fmtValue(raw, type, name);
  return h('td.num', Object.assign({
    testid, 'data-value': raw === null || raw === undefined ? '' : String(raw),
    'data-withheld': withheld ? 'true' : null, class: 'num' + (withheld ? ' withheld' : '') + (raw === null && !withheld ? ' empty' : ''),
    title: withheld ? 'withheld: fewer customers than the small-cell limit' : (typeof raw === 'number' ? String(raw) : null),
  }, attrs), text);
}

function pivotTable(ctx, M, drill) {
  const { q, a, nRow, measureCols, colKeys, measures, supCells, supTotals, supSub, typeOf, pivot } = M;
  const colLevels = q.columns || [];
  const table = h('table.pivot', { testid: 'pivot' });
  const thead = h('thead');
  const memberHeader = (level, member, testid) => {
    const child = childLevel(ctx.info, level);
    if (child && member !== 'unknown' && member !== null) {
      return h('button.member', { testid: 'drill-down', 'data-level': level, 'data-member': member, title: `drill down to ${child}`, onclick: () => drillDown(ctx, level, member) }, member);
    }
    return h('span', { testid }, member === null ? '–' : member);
  };
  // Header rows: one per column level, then the measures.
  const totalSpan = S.totals && pivot ? measures.length : 0;
  for (let j = 0; j < colLevels.length; j++) {
    const tr = h('tr');
    tr.appendChild(h('th.corner', { colspan: nRow || 1 }, j === colLevels.length - 1 ? nRow ? '' : '' : '', colLevels[j]));
    let k = 0;
    while (k < colKeys.length) {
      let n = 1;
      while (k + n < colKeys.length && colKeys[k + n].slice(0, j + 1).join('|') === colKeys[k].slice(0, j + 1).join('|')) n++;
      tr.appendChild(h('th.colhead', { colspan: n * measures.length, 'data-level': colLevels[j], 'data-member': colKeys[k][j] }, memberHeader(colLevels[j], colKeys[k][j], 'col-member')));
      k += n;
    }
    if (totalSpan) tr.appendChild(h('th.colhead.total', { colspan: totalSpan }, j === 0 ? 'Total' : ''));
    thead.appendChild(tr);
  }
  const mrow = h('tr');
  if (nRow) q.rows.forEach((l) => mrow.appendChild(h('th.rowhead-title', { 'data-level': l }, l)));
  else mrow.appendChild(h('th', {}, ''));
  const mh = (c) => h('th.measure', { 'data-measure': c.measure }, c.measure, unitOf(ctx.info, c.measure));
  for (const c of measureCols) mrow.appendChild(mh(c));
  if (totalSpan) for (const m of measures) mrow.appendChild(mh({ measure: m }));
  thead.appendChild(mrow);
  table.appendChild(thead);

  const tbody = h('tbody');
  const subs = a.subtotals || [];
  const rowTotals = new Map(); // full row key -> [subtotal index, row index, row]
  const groupSubs = []; // {levels count, map key->[si, ri, row]}
  subs.forEach((s, si) => {
    const n = s.levels.length;
    const map = new Map();
    s.rows.forEach((r, ri) => map.set(JSON.stringify(r.slice(0, n)), [si, ri, r]));
    if (pivot && n === nRow) rowTotals.set('*', map);
    else if (n < nRow) groupSubs.push({ n, map, emitted: new Set() });
  });
  groupSubs.sort((x, y) => y.n - x.n);
  const rowTotalMap = rowTotals.get('*');

  const emitSub = (g, key) => {
    if (g.emitted.has(key) || !g.map.has(key)) return;
    g.emitted.add(key);
    const [si, ri, r] = g.map.get(key);
    const prefix = JSON.parse(key);
    const withheld = supSub.has(si + ',' + ri);
    const tr = h('tr.subtotal', { testid: 'subtotal-row', 'data-row': key });
    for (let i = 0; i < Math.max(nRow, 1); i++) tr.appendChild(h('th.rowhead', {}, i < prefix.length ? prefix[i] : i === prefix.length ? 'Sub-total' : ''));
    const vals = r.slice(g.n);
    if (pivot) {
      for (let k = 0; k < measureCols.length; k++) tr.appendChild(h('td.num.empty', {}, ''));
      measures.forEach((m, mi) => tr.appendChild(valueCell('subtotal', vals[mi], typeOf[m], m, withheld, { 'data-row': key, 'data-col': m, 'data-measure': m })));
    } else {
      measures.forEach((m, mi) => tr.appendChild(valueCell('subtotal', vals[mi], typeOf[m], m, withheld, { 'data-row': key, 'data-col': m, 'data-measure': m })));
    }
    tbody.appendChild(tr);
  };

  a.rows.forEach((r, ri) => {
    const rowMembers = r.slice(0, nRow);
    const rowKey = JSON.stringify(rowMembers);
    const tr = h('tr', { 'data-row': rowKey });
    if (nRow) rowMembers.forEach((m, i) => tr.appendChild(h('th.rowhead', { 'data-level': q.rows[i] }, memberHeader(q.rows[i], m, 'row-member'))));
    else tr.appendChild(h('th.rowhead', {}, 'All'));
    for (const c of measureCols) {
      const raw = r[c.index];
      const withheld = supCells.has(ri + ',' + c.index);
      const td = valueCell('cell', raw, c.type, c.name, withheld, { 'data-row': rowKey, 'data-col': c.name, 'data-measure': c.measure });
      const base = baseMeasure(ctx.info, c.measure);
      if (base && raw !== null && !withheld) {
        td.classList.add('clickable');
        td.title = 'drill through to the customers behind this cell';
        td.addEventListener('click', () => {
          for (const x of td.closest('table').querySelectorAll('td.selected')) x.classList.remove('selected');
          td.classList.add('selected');
          drillThrough(ctx, drill, {
            rows: rowMembers, cols: c.members, measure: base, label: [...rowMembers, ...c.members].join(' / ') || 'All',
          });
        });
      }
      tr.appendChild(td);
    }
    if (totalSpan) {
      const t = rowTotalMap && rowTotalMap.get(rowKey);
      measures.forEach((m, mi) => {
        const withheld = t ? supSub.has(t[0] + ',' + t[1]) : false;
        tr.appendChild(valueCell('total', t ? t[2][nRow + mi] : null, typeOf[m], m, withheld, { 'data-row': rowKey, 'data-col': m, 'data-measure': m, 'data-kind': 'row-total' }));
      });
    }
    tbody.appendChild(tr);
    // Sub-totals of the groups this row closes (rows in member order; ordered rows get them at the end).
    const next = a.rows[ri + 1];
    if (!(q.order && q.order.length)) for (const g of groupSubs) {
      const key = JSON.stringify(rowMembers.slice(0, g.n));
      if (!next || JSON.stringify(next.slice(0, g.n)) !== key) emitSub(g, key);
    }
  });
  if (q.order && q.order.length) {
    for (const g of groupSubs.slice().reverse()) {
      for (const r of a.rows) emitSub(g, JSON.stringify(r.slice(0, g.n)));
    }
  }
  table.appendChild(tbody);

  if (a.totals) {
    const tf = h('tfoot');
    const tr = h('tr.grand', { testid: 'total-row' });
    tr.appendChild(h('th.rowhead', { colspan: Math.max(nRow, 1) }, 'Total'));
    for (const c of measureCols) {
      const key = c.name;
      tr.appendChild(valueCell('total', a.totals[key] ?? null, c.type, c.name, supTotals.has(key), { 'data-row': '[]', 'data-col': key, 'data-measure': c.measure, 'data-kind': pivot ? 'column-total' : 'grand' }));
    }
    if (totalSpan) for (const m of measures) tr.appendChild(valueCell('total', a.totals[m] ?? null, typeOf[m], m, supTotals.has(m), { 'data-row': '[]', 'data-col': m, 'data-measure': m, 'data-kind': 'grand' }));
    tf.appendChild(tr);
    table.appendChild(tf);
  }
  const note = a.suppressed ? h('p.note', { testid: 'suppressed-note' }, `Cells with fewer than ${a.suppressed.min_customers} customers are withheld.`) : null;
  return h('div.table-wrap', {}, table, note, a.rows.length === 0 ? h('p.muted', {}, 'No rows.') : null);
}

function unitOf(info, measure) {
  const m = measureInfo(info, measure) || measureInfo(info, measure.replace(/_(prev|change)$/, ''));
  if (/_change$/.test(measure)) return h('span.unit', {}, ' %');
  return m && m.format ? h('span.unit', {}, ' ' + m.format) : null;
}

function chartView(ctx, M) {
  const { q, a, nRow, measureCols, colKeys, measures, typeOf } = M;
  if (!measures.includes(chartMeasure)) chartMeasure = measures[0];
  const picker = h('label', {}, 'Measure ', select({ testid: 'chart-measure', onchange: (e) => { chartMeasure = e.target.value; renderResult(ctx); } }, measures, chartMeasure));
  const el = h('div.chart', { testid: 'chart', 'data-kind': view, 'data-measure': chartMeasure });
  const wrap = h('div.chart-wrap', {}, h('div.chart-tools', {}, picker), el);
  const cats = a.rows.map((r) => (nRow ? r.slice(0, nRow).join(' / ') : 'All'));
  const cols = measureCols.filter((c) => c.measure === chartMeasure);
  const mi = measureInfo(ctx.info, chartMeasure);
  const unit = /_change$/.test(chartMeasure) ? 'ratio' : (mi && mi.format) || '';
  const axisName = chartMeasure + (unit ? ` (${unit})` : '');
  const type = typeOf[chartMeasure];
  const tip = (p) => `${p.marker} ${p.seriesName ? p.seriesName + ' · ' : ''}${p.name}: <b>${p.data && p.data.raw !== undefined ? fmtValue(p.data.raw, type, chartMeasure) : p.value}</b>`;
  requestAnimationFrame(() => {
    if (view === 'pie') {
      // Share of the chosen measure per row (over the whole row when columns are present).
      const rowTotals = (a.subtotals || []).find((s) => s.levels.length === nRow && M.pivot);
      const mIdx = measures.indexOf(chartMeasure);
      const data = a.rows.map((r, i) => {
        let raw;
        if (M.pivot) raw = rowTotals ? rowTotals.rows[i] && rowTotals.rows.find((x) => JSON.stringify(x.slice(0, nRow)) === JSON.stringify(r.slice(0, nRow)))?.[nRow + mIdx] : r[cols[0].index];
        else raw = r[cols[0].index];
        return { name: cats[i], value: toNumber(raw), raw };
      }).filter((d) => d.value !== null && d.value > 0);
      chart(el, {
        color: PALETTE,
        title: { text: `Share of ${axisName}`, left: 'center', textStyle: { fontSize: 13, fontWeight: 'normal' } },
        tooltip: { trigger: 'item', formatter: (p) => `${escapeHtml(p.name)}: <b>${escapeHtml(fmtValue(p.data.raw, type, chartMeasure))}</b> (${p.percent}%)` },
        legend: { type: 'scroll', bottom: 0 },
        series: [{ type: 'pie', radius: ['30%', '65%'], data, label: { formatter: '{b}: {d}%' } }],
      });
      return;
    }
    const series = (cols.length ? cols : []).map((c) => ({
      name: c.members.length ? c.members.join(' / ') : chartMeasure,
      type: view === 'line' ? 'line' : 'bar',
      stack: view === 'stacked' ? 'all' : undefined,
      data: a.rows.map((r) => ({ value: toNumber(r[c.index]), raw: r[c.index] })),
    }));
    chart(el, {
      color: PALETTE,
      grid: { left: 70, right: 30, top: 50, bottom: cats.some((c) => c.length > 8) || cats.length > 12 ? 110 : 50, containLabel: false },
      tooltip: { trigger: 'item', formatter: tip },
      legend: series.length > 1 ? { type: 'scroll', top: 0 } : undefined,
      xAxis: categoryAxis(cats, nRow ? q.rows.join(' / ') : ''),
      yAxis: valueAxis(axisName),
      series,
    });
  });
  void colKeys;
  return wrap;
}

// Drill-through: the customers behind a cell, paged.
async function drillThrough(ctx, panel, cell, offset = 0) {
  const q = last.query;
  const filters = (q.filters || []).slice();
  q.rows.forEach((l, i) => filters.push({ level: l, op: 'eq', value: cell.rows[i] }));
  (q.columns || []).forEach((l, i) => filters.push({ level: l, op: 'eq', value: cell.cols[i] }));
  const entity = ctx.info.dimensions.some((d) => d.name === 'customer') ? 'customer.id' : null;
  // A drill-through takes no segments: each becomes the `in` filter it stands for.
  for (const seg of q.segments || []) {
    try {
      const run = await postJson(`${cubePath(ctx.cube)}/searches/${encodeURIComponent(seg)}/run`, { limit: 100000 });
      filters.push({ level: run.entity, op: 'in', values: run.rows.map((r) => String(r[0])) });
    } catch (err) {
      clear(panel, h('h3', {}, 'Customers behind ', cell.label), errorBox(err));
      return;
    }
  }
  const body = { level: entity, filters, measures: [cell.measure], order: [{ by: cell.measure, dir: 'desc' }], limit: 20, offset };
  renderDrillPanel(ctx, panel, cell, body);
}

export async function renderDrillPanel(ctx, panel, cell, body) {
  const path = cubePath(ctx.cube) + '/drillthrough';
  if (panel.querySelector('[data-testid=dt-info]') && body.offset) panel.classList.add('loading');
  else clear(panel, h('p.muted', {}, 'loading customers…'));
  let ans;
  try {
    ans = await postJson(path, body);
  } catch (err) {
    panel.classList.remove('loading');
    clear(panel, h('h3', {}, 'Customers behind ', cell.label), errorBox(err));
    return;
  }
  panel.classList.remove('loading');
  const page = (off) => renderDrillPanel(ctx, panel, cell, Object.assign({}, body, { offset: off }));
  clear(panel, drillTable(ctx, ans, body, page, `Customers behind ${cell.label} · ${cell.measure}`,
    () => ({ path, body: Object.assign({}, body, { limit: Math.max(1, Math.min(ans.total || 100, 100000)), offset: 0 }), name: ctx.cube + '-drillthrough' })));
  panel.scrollIntoView({ block: 'nearest' });
}

// A paged member table (drill-through, migration drill, search runs) whose first column is the customer.
export function drillTable(ctx, ans, body, page, title, exportReq) {
  const total = ans.total ?? ans.count ?? ans.rows.length;
  const off = body.offset || 0;
  const lim = body.limit || ans.rows.length;
  const cols = ans.columns.map((c) => (typeof c === 'string' ? { name: c } : c));
  const isCustomer = /^customer\.id$/.test(cols[0] && cols[0].name);
  const table = h('table.grid', { testid: 'drill-through' },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', {}, c.name)))),
    h('tbody', {}, ans.rows.map((r) => h('tr', { testid: 'dt-row', 'data-member': r[0] },
      h('td', {}, isCustomer ? h('a', { href: '#/customer/' + encodeURIComponent(r[0]), testid: 'customer-link', 'data-id': r[0] }, r[0]) : r[0]),
      r.slice(1).map((v, i) => {
        const withheld = ans.values_suppressed && v === null;
        return h('td.num', { class: 'num' + (withheld ? ' withheld' : ''), 'data-value': v ?? '' }, withheld ? 'withheld' : fmtValue(v, cols[i + 1].type, cols[i + 1].name));
      })))));
  const from = total ? off + 1 : 0;
  const to = Math.min(off + ans.rows.length, total);
  const pager = h('div.pager', { testid: 'dt-pager' },
    h('button.small', { testid: 'dt-prev', disabled: off <= 0, onclick: () => page(Math.max(0, off - lim)) }, '‹ previous'),
    h('span', { testid: 'dt-info', 'data-total': total, 'data-offset': off }, ` ${fmtInteger(from)}–${fmtInteger(to)} of ${fmtInteger(total)} `),
    h('button.small', { testid: 'dt-next', disabled: off + ans.rows.length >= total, onclick: () => page(off + lim) }, 'next ›'));
  return h('div.drill-inner', {},
    h('div.panel-head', {}, h('h3', {}, title), exportReq ? exportBar(exportReq, 'dt') : null),
    ans.values_suppressed ? h('p.note', {}, 'Values withheld (small cells).') : null,
    table, pager);
}
