// The single customer view: attributes, region and manager, products held, measures and
// bands per month, breakdowns, searches matched.
import { h, clear, select } from './dom.js';
import { cubePath, getJson, errorBox, currentCube } from './api.js';
import { fmtValue, toNumber } from './format.js';
import { chart, valueAxis, categoryAxis } from './charts.js';

export function table(t, testid) {
  return h('table.grid', { testid },
    h('thead', {}, h('tr', {}, t.columns.map((c) => h('th', { class: c.kind === 'measure' ? 'num' : '' }, c.name)))),
    h('tbody', {}, t.rows.map((r) => h('tr', {}, r.map((v, i) => (t.columns[i].kind === 'measure'
      ? h('td.num', { 'data-value': v ?? '' }, fmtValue(v, t.columns[i].type, t.columns[i].name))
      : h('th.rowhead', {}, v === null ? '–' : v)))))));
}

export async function renderCustomer(root, id) {
  const cube = currentCube();
  clear(root, h('p.muted', {}, 'loading customer ' + id + '…'));
  let v;
  try {
    v = await getJson(`${cubePath(cube)}/entities/customer/${encodeURIComponent(id)}`);
  } catch (err) {
    clear(root, h('div.page', { testid: 'customer-view', 'data-id': id }, h('h2', {}, 'Customer ', id), errorBox(err)));
    return;
  }
  const kv = (items, testid) => h('dl.kv', { testid }, items.map((a) => [h('dt', {}, a.level), h('dd', { 'data-level': a.level }, a.member)]));
  // Bands per month: one column per band level.
  const periods = [];
  for (const b of v.bands) for (const [p] of b.rows) if (!periods.includes(p)) periods.push(p);
  periods.sort();
  const bandTable = h('table.grid', { testid: 'customer-bands' },
    h('thead', {}, h('tr', {}, h('th', {}, 'period'), v.bands.map((b) => h('th', {}, b.level.split('.').pop())))),
    h('tbody', {}, periods.map((p) => h('tr', {}, h('th.rowhead', {}, p), v.bands.map((b) => {
      const r = b.rows.find((x) => x[0] === p);
      return h('td', { 'data-level': b.level, 'data-period': p }, r ? r[1] : '');
    })))));
  const measures = v.periods.columns.filter((c) => c.kind === 'measure').map((c) => c.name);
  let m = measures.includes('deposit_balance') ? 'deposit_balance' : measures[0];
  const chartEl = h('div.chart.small', { testid: 'customer-chart' });
  const draw = () => {
    const i = v.periods.columns.findIndex((c) => c.name === m);
    chart(chartEl, {
      grid: { left: 70, right: 20, top: 40, bottom: 40 }, tooltip: { trigger: 'axis' },
      xAxis: categoryAxis(v.periods.rows.map((r) => r[0])), yAxis: valueAxis(m),
      series: [{ type: 'line', name: m, data: v.periods.rows.map((r) => toNumber(r[i])), connectNulls: false }],
    });
  };
  clear(root, h('div.page', { testid: 'customer-view', 'data-id': v.id },
    h('div.panel-head', {}, h('button.small', { testid: 'back', onclick: () => history.back() }, '‹ back'),
      h('h2', {}, 'Customer ', h('span', { testid: 'customer-id' }, v.id))),
    h('div.cols', {},
      h('section.card', {}, h('h3', {}, 'Attributes'), kv(v.attributes, 'customer-attributes')),
      h('section.card', {}, h('h3', {}, 'Region and manager'), kv(v.related, 'customer-related')),
      h('section.card', {}, h('h3', {}, 'Products held'), v.held.map((x) => h('div', { testid: 'customer-held' },
        h('div.muted', {}, `${x.fact}, ${x.period}`), h('ul', {}, x.members.map((p) => h('li', {}, p)))))),
      h('section.card', {}, h('h3', {}, 'Searches matched'), h('ul', { testid: 'customer-searches' },
        v.searches.length ? v.searches.map((s) => h('li', { 'data-search': s }, s)) : h('li.muted', {}, 'none')))),
    h('section.card', {}, h('div.panel-head', {}, h('h3', {}, 'Per month'),
      select({ testid: 'customer-measure', onchange: (e) => { m = e.target.value; draw(); } }, measures, m)),
    chartEl, h('div.scroll', {}, table(v.periods, 'customer-periods'))),
    h('section.card', {}, h('h3', {}, 'Bands per month'), h('div.scroll', {}, bandTable)),
    v.breakdowns.map((b) => h('section.card', {}, h('h3', {}, `${b.fact} by ${b.level}`), h('div.scroll', {}, table(b, 'customer-breakdown'))))));
  requestAnimationFrame(draw);
}
