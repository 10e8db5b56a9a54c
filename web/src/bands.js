// The band workbench: the cube's definition in a YAML editor, validated on each edit
// (errors inline at their line and column), band changes previewed before applying.
import { EditorState } from '@codemirror/state';
import { EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection } from '@codemirror/view';
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import { syntaxHighlighting, defaultHighlightStyle, indentOnInput, bracketMatching } from '@codemirror/language';
import { yaml } from '@codemirror/lang-yaml';
import { setDiagnostics, lintGutter } from '@codemirror/lint';
import { h, clear, select, debounce } from './dom.js';
import { cubePath, request, getJson, errorBox, currentCube, forgetCubes } from './api.js';
import { fmtInteger } from './format.js';
import { chart, valueAxis, categoryAxis, PALETTE } from './charts.js';

let editorView = null;

export async function renderBands(root) {
  const cube = currentCube();
  const editorEl = h('div.editor', { testid: 'editor' });
  const status = h('span.def-status', { testid: 'def-status' }, '');
  const errorsEl = h('ul.def-errors', { testid: 'def-errors' });
  const previewOut = h('div.preview', { testid: 'preview-result' });
  const applyOut = h('div.apply', { testid: 'apply-result' });
  const applyStatus = h('div', { testid: 'apply-status' });
  const previewBtn = h('button.primary', { testid: 'preview' }, 'Preview');
  const applyBtn = h('button', { testid: 'apply', title: 'Replace the definition (admin only)' }, 'Apply');
  const resetBtn = h('button', { testid: 'revert' }, 'Revert');
  clear(root, h('div.page.bands', {},
    h('h2', {}, 'Band workbench: ', cube),
    h('p.muted', {}, 'Edit the cube\'s definition (band edges and labels, value classes, ...). Each edit is validated; Preview shows how customers would move between bands; Apply replaces the definition (admin).'),
    h('div.workbench', {},
      h('div.editor-col', {},
        h('div.toolbar', {}, previewBtn, applyBtn, resetBtn, status),
        editorEl, errorsEl),
      h('div.preview-col', {}, applyStatus, applyOut, previewOut))));

  let original = '';
  try {
    const res = await request('GET', cubePath(cube) + '/definition', { accept: 'application/yaml' });
    original = await res.text();
  } catch (err) {
    clear(editorEl, errorBox(err));
    return;
  }

  let seq = 0;
  const validate = async (text) => {
    const my = ++seq;
    status.textContent = 'validating…';
    status.className = 'def-status';
    let diags = [];
    let errs = [];
    try {
      const res = await request('POST', cubePath(cube) + '/definition/validate', { text, contentType: 'application/yaml' });
      const v = await res.json().catch(() => ({}));
      if (my !== seq) return;
      const changed = Array.isArray(v.changed_bands) && v.changed_bands.length ? ` · bands changed: ${v.changed_bands.join(', ')}` : '';
      status.textContent = '✓ valid' + changed;
      status.className = 'def-status ok';
      status.dataset.state = 'valid';
    } catch (err) {
      if (my !== seq) return;
      if (err.code === 'invalid_definition' && err.details && Array.isArray(err.details.errors)) {
        errs = err.details.errors;
        status.textContent = `${errs.length} error${errs.length === 1 ? '' : 's'}`;
        status.className = 'def-status bad';
        status.dataset.state = 'invalid';
      } else if (err.status === 404 || err.status === 405) {
        status.textContent = 'validation is not available on this server';
        status.dataset.state = 'unavailable';
      } else {
        status.textContent = '';
        status.dataset.state = 'error';
        clear(errorsEl, h('li', {}, errorBox(err)));
        return;
      }
    }
    const doc = editorView.state.doc;
    diags = errs.map((e) => {
      const ln = Math.min(Math.max(1, e.line || 1), doc.lines);
      const line = doc.line(ln);
      const from = Math.min(line.from + Math.max(0, (e.column || 1) - 1), line.to);
      const rest = doc.sliceString(from, line.to);
      const word = /^[^\s,:\]}]+/.exec(rest);
      const to = word ? from + word[0].length : line.to;
      return { from, to: Math.max(to, from), severity: 'error', message: e.message + (e.help ? ` (${e.help})` : ''), source: e.code };
    });
    editorView.dispatch(setDiagnostics(editorView.state, diags));
    clear(errorsEl, errs.map((e, i) => [
      h('li.def-error', {
        testid: 'def-error', 'data-line': e.line, 'data-column': e.column, 'data-code': e.code || '', 'data-path': e.path || '', title: e.help || '',
        onclick: () => { const d = diags[i]; editorView.dispatch({ selection: { anchor: d.from }, scrollIntoView: true }); editorView.focus(); },
      }, `${e.line}:${e.column} ${e.message}`),
      e.help ? h('li.help', {}, e.help) : null]));
  };
  const debounced = debounce(validate, 400);

  if (editorView) editorView.destroy();
  editorView = new EditorView({
    parent: editorEl,
    state: EditorState.create({
      doc: original,
      extensions: [
        lineNumbers(), highlightActiveLineGutter(), history(), drawSelection(), indentOnInput(), bracketMatching(),
        highlightActiveLine(), syntaxHighlighting(defaultHighlightStyle, { fallback: true }), yaml(), lintGutter(),
        keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
        EditorView.updateListener.of((u) => { if (u.docChanged) debounced(u.state.doc.toString()); }),
        EditorView.theme({ '&': { height: '100%' }, '.cm-scroller': { fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace', fontSize: '12.5px' } }),
      ],
    }),
  });
  // Tests and people can set the whole text: window.latticeEditor.setText(...)
  window.latticeEditor = {
    getText: () => editorView.state.doc.toString(),
    setText: (t) => {
      // Replace only the changed middle, as typing would, and show where it changed.
      const cur = editorView.state.doc.toString();
      let a = 0;
      while (a < cur.length && a < t.length && cur[a] === t[a]) a++;
      let b = 0;
      while (b < cur.length - a && b < t.length - a && cur[cur.length - 1 - b] === t[t.length - 1 - b]) b++;
      editorView.dispatch({
        changes: { from: a, to: cur.length - b, insert: t.slice(a, t.length - b) },
        selection: { anchor: Math.min(a, t.length) }, scrollIntoView: true,
      });
    },
  };
  validate(original);
  // Open at the first band over a metric: what this page is about.
  const at = original.search(/\n\s*bucket:\s*\n\s*metric:/);
  if (at >= 0) {
    const line = editorView.state.doc.lineAt(at + 1);
    editorView.dispatch({ effects: EditorView.scrollIntoView(line.from, { y: 'start', yMargin: 60 }) });
  }

  resetBtn.onclick = () => window.latticeEditor.setText(original);

  const preview = async (period) => {
    clear(previewOut, h('p.muted', {}, 'previewing…'));
    try {
      const res = await request('POST', cubePath(cube) + '/bands/preview', { text: editorView.state.doc.toString(), contentType: 'application/yaml', query: { period } });
      const a = await res.json();
      clear(previewOut,
        a.bands.length ? a.bands.map((b) => bandPreview(b, preview, a.elapsed_us)) : null,
        !a.bands.length && !(a.skipped || []).length ? h('p', { testid: 'preview-none' }, 'No band level changes in this definition.') : null,
        (a.skipped || []).length ? h('section.card', {}, h('h3', {}, 'Changed, not previewed'), h('ul', {}, a.skipped.map((x) =>
          h('li', { testid: 'preview-skipped', 'data-band': x.band }, h('strong', {}, x.band), ': ', x.reason)))) : null);
    } catch (err) {
      clear(previewOut, errorBox(err, 'preview-error'));
    }
  };
  previewBtn.onclick = () => preview();

  applyBtn.onclick = async () => {
    clear(applyOut);
    applyBtn.disabled = true;
    let before = null;
    try { before = await getJson(cubePath(cube)); } catch { /* shown below if it matters */ }
    const started = Math.floor(Date.now() / 1000);
    try {
      const res = await request('PUT', cubePath(cube) + '/definition', { text: editorView.state.doc.toString(), contentType: 'application/yaml', query: { wait: 'false' } });
      if (res.status !== 202) {
        const body = await res.json().catch(() => ({}));
        done(true, `Serving version ${body.version ?? '?'}.`);
        return;
      }
      await poll(before ? before.version : null, started);
    } catch (err) {
      clear(applyStatus);
      clear(applyOut, errorBox(err, 'apply-error'));
      applyBtn.disabled = false;
    }
  };
  const done = (ok, text) => {
    forgetCubes();
    clear(applyStatus, h('p', { class: ok ? 'ok' : 'error', testid: 'apply-done', 'data-ok': ok ? 'true' : 'false' }, text));
    applyBtn.disabled = false;
    if (ok) original = editorView.state.doc.toString();
  };
  const poll = async (version, started) => {
    const t0 = Date.now();
    for (;;) {
      const secs = Math.round((Date.now() - t0) / 1000);
      clear(applyStatus, h('div.progress', { testid: 'apply-progress' }, h('div.bar')), h('p.muted', {}, `building the new definition… ${secs} s`));
      await new Promise((r) => setTimeout(r, 1000));
      let info;
      try { info = await getJson(cubePath(cube)); } catch { continue; }
      const lr = info.last_reload;
      if (version !== null && info.version !== version && (!lr || lr.ok)) { done(true, `Served: version ${info.version} (was ${version}) after ${secs} s.`); return; }
      if (lr && lr.at >= started && lr.ok === false) {
        done(false, 'The new definition was not served; the previous one keeps serving.');
        applyOut.appendChild(errorBox({ status: 0, code: (lr.error && lr.error.error && lr.error.error.code) || 'reload_failed', message: (lr.error && lr.error.error && lr.error.error.message) || JSON.stringify(lr.error), details: lr.error && lr.error.error && lr.error.error.details }, 'apply-error'));
        return;
      }
      if (Date.now() - t0 > 300000) { done(false, 'Still building after 5 minutes; look at GET /v1/cubes/' + cube + '.'); return; }
    }
  };
}

// With as many bands before and after, how many customers change bucket (not only its label).
function renamedOnly(b) {
  if (b.old_labels.length !== b.new_labels.length) return null;
  let off = 0;
  b.moves.forEach((row, i) => row.forEach((n, j) => { if (i !== j) off += n; }));
  if (off === b.moved) return null;
  return h('span.muted', { testid: 'moves-bucket', 'data-moved': off }, `; ${fmtInteger(off)} change bucket, the others keep theirs under a new label`);
}

function bandPreview(b, preview, elapsed) {
  const name = `${b.dimension}.${b.level}`;
  const el = h('div.chart', { testid: 'preview-chart' });
  const countTable = (labels, counts, testid, title) => h('table.grid.counts', {},
    h('thead', {}, h('tr', {}, h('th', {}, title), h('th.num', {}, 'customers'))),
    h('tbody', {}, labels.map((l, i) => h('tr', {}, h('th.rowhead', {}, l), h('td.num', { testid, 'data-label': l, 'data-count': counts[i] }, fmtInteger(counts[i]))))));
  const max = Math.max(1, ...b.moves.flat());
  const heat = (n, diag) => (n ? `hsl(${diag ? 140 : 212}, 55%, ${Math.round(96 - (Math.log(1 + n) / Math.log(1 + max)) * 56)}%)` : '#fafafa');
  const moves = h('table.heat', { testid: 'preview-moves' },
    h('thead', {}, h('tr', {}, h('th.corner', {}, 'old ↓ / new →'), b.new_labels.map((l) => h('th', {}, l)))),
    h('tbody', {}, b.old_labels.map((ol, i) => h('tr', {}, h('th.rowhead', {}, ol), b.new_labels.map((nl, j) => {
      const n = b.moves[i][j];
      const diag = b.old_labels.length === b.new_labels.length ? i === j : ol === nl;
      const t = Math.log(1 + n) / Math.log(1 + max);
      return h('td.heatcell', { testid: 'moves-cell', 'data-from': ol, 'data-to': nl, 'data-count': n, style: { background: heat(n, diag), color: t > 0.6 ? '#fff' : '#222' } }, n ? fmtInteger(n) : '');
    })))));
  const periods = b.periods || [];
  const periodSel = periods.length ? select({ testid: 'preview-period', onchange: (e) => preview(e.target.value) }, periods, b.period || periods[periods.length - 1]) : null;
  const card = h('section.card', { testid: 'preview-band', 'data-band': name, 'data-period': b.period || '' },
    h('div.panel-head', {}, h('h3', {}, name), periodSel ? h('label', {}, 'period ', periodSel) : null),
    h('p.summary', {}, h('strong', { testid: 'moves-total', 'data-moved': b.moved, 'data-entities': b.entities }, `${fmtInteger(b.moved)} customers move`),
      ` band, of ${fmtInteger(b.entities)}${b.period ? ' in ' + b.period : ''}${elapsed !== undefined ? ` (${fmtInteger(elapsed)} µs)` : ''}`,
      renamedOnly(b)),
    el,
    h('div.cols', {}, countTable(b.old_labels, b.old_counts, 'preview-old', 'old band'), countTable(b.new_labels, b.new_counts, 'preview-new', 'new band')),
    h('h4', {}, 'Moves (customers in old band → new band)'), h('div.scroll', {}, moves));
  // Old vs new distribution side by side: band by band when there are as many bands
  // (edges moved, labels renamed), else over the union of the labels.
  const same = b.old_labels.length === b.new_labels.length;
  const cats = same ? b.old_labels.map((l, i) => (l === b.new_labels[i] ? l : `${l} → ${b.new_labels[i]}`)) : [...b.old_labels];
  if (!same) for (const l of b.new_labels) if (!cats.includes(l)) cats.push(l);
  const pos = (labels, i, l) => (same ? i : labels.indexOf(l));
  requestAnimationFrame(() => chart(el, {
    color: [PALETTE[7], PALETTE[0]], grid: { left: 60, right: 20, top: 40, bottom: 50 }, legend: { top: 0 },
    tooltip: { trigger: 'axis' },
    xAxis: categoryAxis(cats, 'band'), yAxis: valueAxis('customers'),
    series: [
      { type: 'bar', name: 'old', data: cats.map((l, k) => { const i = pos(b.old_labels, k, l); return i < 0 ? null : b.old_counts[i]; }) },
      { type: 'bar', name: 'new', data: cats.map((l, k) => { const i = pos(b.new_labels, k, l); return i < 0 ? null : b.new_counts[i]; }) },
    ],
  }));
  return card;
}
