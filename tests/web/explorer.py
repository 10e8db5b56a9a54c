#!/usr/bin/env python3
"""Drives Lattice's web page as a person would and prints one JSON document with what it saw.

    python3 tests/web/explorer.py --url http://127.0.0.1:PORT --out DIR \
        [--admin-key K] [--manager-key K] [--apply] [--step NAME ...]

Needs Playwright for Python and the system chromium (no `playwright install`). Every step runs
even when an earlier one failed; a failed step is named on stderr (with the reason) and under
"failures" in the JSON, and the exit status is then 1. Screenshots (PNG) go to --out.

The JSON (stdout):
  pivot          {"query": <the query the page sent>, "cells": [[row members.., column member
                 path ("" without columns), measure, text shown]..], "totals": [[kind, column,
                 measure, text]..], "withheld": <cells shown as withheld>}
  chart          {"kind", "measure", "canvas": true}
  drill_down     {"query": <after clicking a province>, "rows": [..], "breadcrumb": "..",
                 "up_query": <after going back up>}
  drill_through  {"request": <the drillthrough body>, "total": n, "rows": [[id, value]..],
                 "page2_request", "page2_rows"}
  customer       {"id", "attributes": {level: member}, "related": {..}, "periods": n,
                 "bands": n, "searches": [..]}
  csv            text of the CSV the CSV button saved; "csv_name"; "xlsx": {"name", "bytes",
                 "zip": true when it starts with PK}
  pareto         {"request", "share", "members", "summary"}
  migration      {"request", "cells": {"from|to": n}, "drill_request", "drill_total", "drill_rows"}
  band_error     {"line", "column", "message", "text", "typo_line"}
  preview        {"band", "period", "old_counts": {label: n}, "new_counts": {..}, "moved": n,
                 "moves_total_text"}
  apply          {"status": <error status shown for the manager key> , ...}
  manager_customers  [customer ids a manager's drill-through listed, every page]
"""
import argparse
import json
import os
import re
import shutil
import sys
import time
import traceback

from playwright.sync_api import sync_playwright

TIMEOUT = 20000  # ms for each wait


class StepFailed(Exception):
    pass


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def need(page, selector, what, timeout=TIMEOUT, state='visible'):
    """The element or a loud failure naming what was missing."""
    try:
        page.wait_for_selector(selector, timeout=timeout, state=state)
    except Exception:
        err = page.query_selector('[data-testid=error]')
        extra = (': the page shows ' + err.inner_text().strip()) if err else ''
        raise StepFailed(f'missing {what} ({selector}){extra}')
    return page.locator(selector).first


def tid(name, **attrs):
    s = f'[data-testid="{name}"]'
    for k, v in attrs.items():
        s += f'[data-{k.replace("_", "-")}="{v}"]'
    return s


class Run:
    def __init__(self, args, page):
        self.a = args
        self.page = page
        self.out = {}
        self.failures = []
        self.requests = []
        page.on('request', self._on_request)

    def _on_request(self, req):
        if req.method in ('POST', 'PUT') and '/v1/' in req.url:
            try:
                body = req.post_data
            except Exception:
                body = None
            self.requests.append((req.url, req.method, body, dict(req.headers)))

    def posted(self, suffix, start):
        """JSON bodies POSTed to a URL path ending with suffix since index start."""
        out = []
        for url, method, body, _ in self.requests[start:]:
            path = url.split('?')[0]
            if path.endswith(suffix) and body:
                try:
                    out.append(json.loads(body))
                except ValueError:
                    out.append(body)
        return out

    def wait_post(self, suffix, start, what):
        t0 = time.time()
        while time.time() - t0 < TIMEOUT / 1000:
            got = self.posted(suffix, start)
            if got:
                return got[-1]
            self.page.wait_for_timeout(50)
        raise StepFailed(f'the page sent no POST to {suffix} ({what})')

    def shot(self, name, full=False):
        path = os.path.join(self.a.out, name + '.png')
        self.page.screenshot(path=path, full_page=full)
        self.out.setdefault('screenshots', []).append(path)

    def step(self, name, fn):
        if self.a.step and name not in self.a.step:
            return
        log(f'-- {name}')
        try:
            fn()
        except Exception as e:  # a step failing does not stop the others
            msg = str(e) if isinstance(e, StepFailed) else traceback.format_exc()
            log(f'STEP {name} FAILED: {msg}')
            lines = msg.strip().splitlines() or ['']
            self.failures.append({'step': name, 'error': lines[0] if isinstance(e, StepFailed) else lines[-1]})
            try:
                self.shot('failed-' + name)
            except Exception:
                pass

    # ---- helpers ----
    def goto(self, route):
        self.page.goto(self.a.url + '/#' + route)
        need(self.page, tid('cube-picker') + ' option', 'the cube picker', state='attached')

    def set_key(self, key):
        p = self.page
        need(p, tid('api-key'), 'the API key field')
        p.fill(tid('api-key'), key or '')
        p.click(tid('api-key-save'))
        p.wait_for_timeout(100)

    def wait_idle(self):
        try:
            self.page.wait_for_load_state('networkidle', timeout=TIMEOUT)
        except Exception:
            pass

    def drill_settled(self, panel='drill-panel', offset=None):
        cond = f'const p = document.querySelector("[data-testid={panel}]"); const i = p && p.querySelector("[data-testid=dt-info]");'
        cond += ' return !!p && !!i && !p.classList.contains("loading") && !p.querySelector(":scope > p.muted")'
        if offset is not None:
            cond += f' && i.dataset.offset !== "{offset}"'
        self.page.wait_for_function('() => { ' + cond + '; }', timeout=TIMEOUT)

    def cells(self):
        return self.page.eval_on_selector_all(tid('cell'), '''els => els.map(e => {
            const col = e.dataset.col, m = e.dataset.measure;
            const members = col.endsWith('|' + m) ? col.slice(0, col.length - m.length - 1) : '';
            return [...JSON.parse(e.dataset.row), members, m, e.textContent, e.dataset.withheld === 'true'];
        })''')

    def run_query(self, what):
        start = len(self.requests)
        self.page.click(tid('run'))
        q = self.wait_post('/query', start, what)
        need(self.page, tid('pivot'), 'the pivot table after Run')
        self.wait_idle()
        return q

    # ---- steps ----
    def pivot(self):
        p = self.page
        self.goto('/explore')
        need(p, tid('explorer-controls') + ' ' + tid('rows-picker'), 'the rows level picker')
        p.click(tid('reset'))
        self.wait_idle()
        # Clear the default levels, then pick as a person would.
        for sel in (tid('row-level') + ' ' + tid('remove-level'), tid('column-level') + ' ' + tid('remove-level')):
            while p.locator(sel).count():
                p.locator(sel).first.click()
        for level in self.a.rows.split(','):
            p.select_option(tid('rows-picker'), level)
        for level in filter(None, self.a.columns.split(',')):
            p.select_option(tid('columns-picker'), level)
        need(p, tid('measure-picker'), 'the measure picker')
        for box in p.locator(tid('measure-picker') + ' input').all():
            box.uncheck()
        for m in self.a.measures.split(','):
            p.check(tid('measure-picker') + f' input[value="{m}"]')
        p.check(tid('totals'))
        q = self.run_query('pivot')
        # The table on screen is the answer to this query, not the one shown before it.
        want = self.a.measures.split(',')
        p.wait_for_function(
            '(ms) => { const cs = [...document.querySelectorAll("[data-testid=cell]")];'
            ' return cs.length > 0 && cs.every(c => ms.includes(c.dataset.measure)); }',
            arg=want, timeout=TIMEOUT)
        need(p, tid('pivot') + f' th[data-level="{self.a.rows.split(",")[-1]}"]', 'the pivot of the levels picked')
        cells = self.cells()
        if not cells:
            raise StepFailed('the pivot shows no cells')
        totals = p.eval_on_selector_all(tid('total'), 'els => els.map(e => [e.dataset.kind, e.dataset.col, e.dataset.measure, e.textContent])')
        if not totals:
            raise StepFailed('the pivot shows no total cells')
        self.out['pivot'] = {'query': q, 'cells': [c[:-1] for c in cells], 'totals': totals,
                             'withheld': [c[:-2] for c in cells if c[-1]]}
        self.shot('explorer-pivot')

    def chart(self):
        p = self.page
        need(p, tid('view-bar'), 'the bar chart switch').click()
        need(p, tid('chart') + ' canvas', 'the chart canvas')
        p.wait_for_timeout(300)
        self.shot('explorer-chart')
        kind = p.get_attribute(tid('chart'), 'data-kind')
        measure = p.get_attribute(tid('chart'), 'data-measure')
        need(p, tid('view-pie'), 'the share chart switch').click()
        need(p, tid('chart') + '[data-kind="pie"] canvas', 'the share chart canvas')
        p.wait_for_timeout(300)
        self.shot('explorer-share')
        self.out['chart'] = {'kind': kind, 'measure': measure, 'canvas': True}
        p.click(tid('view-table'))
        need(p, tid('pivot'), 'the pivot table again')

    def drill_down(self):
        p = self.page
        btn = need(p, tid('drill-down', level='region.province'), 'a drill-down button on a province')
        member = btn.get_attribute('data-member')
        start = len(self.requests)
        btn.click()
        q = self.wait_post('/query', start, 'drill-down')
        need(p, tid('pivot') + ' th[data-level="region.city"]', 'the city rows after drilling down')
        self.wait_idle()
        rows = p.eval_on_selector_all('[data-testid=pivot] tbody tr[data-row]', 'els => els.map(e => JSON.parse(e.dataset.row))')
        crumb = p.inner_text(tid('breadcrumb'))
        self.shot('explorer-drill-down')
        start = len(self.requests)
        need(p, tid('crumb') + '[data-depth="0"]', 'the breadcrumb back to All').click()
        up = self.wait_post('/query', start, 'roll up')
        need(p, tid('pivot') + ' th[data-level="region.province"]', 'the province rows after going back up')
        self.wait_idle()
        self.out['drill_down'] = {'member': member, 'query': q, 'rows': rows, 'breadcrumb': crumb, 'up_query': up}

    def drill_through(self):
        p = self.page
        cell = need(p, tid('cell') + '.clickable', 'a clickable pivot cell')
        # Prefer Zhejiang / 2025 / txn_amount when present.
        pref = p.locator(tid('cell') + '.clickable[data-row=\'["Zhejiang"]\'][data-col="2025|txn_amount"]')
        if pref.count():
            cell = pref.first
        start = len(self.requests)
        cell.click()
        body = self.wait_post('/drillthrough', start, 'drill-through')
        need(p, tid('drill-through') + ' ' + tid('dt-row'), 'the drill-through rows')
        self.drill_settled()
        total = int(p.get_attribute(tid('dt-info'), 'data-total'))
        rows = p.eval_on_selector_all(tid('dt-row'), 'els => els.map(e => [...e.querySelectorAll("td")].map(td => td.textContent))')
        self.shot('drill-through')
        res = {'request': body, 'total': total, 'rows': rows, 'cell': [cell.get_attribute('data-row'), cell.get_attribute('data-col')]}
        if total > len(rows):
            start = len(self.requests)
            need(p, tid('dt-next'), 'the drill-through pager').click()
            body2 = self.wait_post('/drillthrough', start, 'drill-through page 2')
            self.drill_settled(offset='0')
            res['page2_request'] = body2
            res['page2_rows'] = p.eval_on_selector_all(tid('dt-row'), 'els => els.map(e => [...e.querySelectorAll("td")].map(td => td.textContent))')
            need(p, tid('dt-prev'), 'the previous-page button').click()
            self.drill_settled(offset=res['page2_request'].get('offset'))
        self.out['drill_through'] = res

    def export(self):
        p = self.page
        need(p, tid('export-csv'), 'the CSV button')
        with p.expect_download(timeout=TIMEOUT) as d:
            p.click(tid('export-csv'))
        dl = d.value
        path = os.path.join(self.a.out, 'answer.csv')
        dl.save_as(path)
        text = open(path, encoding='utf-8').read()
        self.out['csv'] = text
        self.out['csv_name'] = dl.suggested_filename
        with p.expect_download(timeout=TIMEOUT) as d:
            p.click(tid('export-xlsx'))
        dl = d.value
        path = os.path.join(self.a.out, 'answer.xlsx')
        dl.save_as(path)
        data = open(path, 'rb').read()
        self.out['xlsx'] = {'name': dl.suggested_filename, 'bytes': len(data), 'zip': data[:2] == b'PK'}
        if text.lstrip().startswith('{'):
            raise StepFailed('the CSV button saved JSON, not CSV: ' + text[:200])
        if data[:2] != b'PK':
            raise StepFailed('the XLSX button saved something that is not an XLSX (zip) file: ' + repr(data[:60]))

    def customer(self):
        p = self.page
        link = need(p, tid('customer-link'), 'a customer link in the drill-through')
        cid = link.get_attribute('data-id')
        link.click()
        need(p, tid('customer-view') + f'[data-id="{cid}"] ' + tid('customer-attributes'), 'the customer view')
        p.wait_for_timeout(300)
        dl = lambda sel: p.eval_on_selector(sel, 'el => Object.fromEntries([...el.querySelectorAll("dd")].map(d => [d.dataset.level, d.textContent]))')
        self.out['customer'] = {
            'id': cid,
            'attributes': dl(tid('customer-attributes')),
            'related': dl(tid('customer-related')),
            'periods': p.locator(tid('customer-periods') + ' tbody tr').count(),
            'period_columns': p.eval_on_selector_all(tid('customer-periods') + ' thead th', 'els => els.map(e => e.textContent)'),
            'bands': p.locator(tid('customer-bands') + ' tbody tr').count(),
            'searches': p.eval_on_selector_all(tid('customer-searches') + ' li[data-search]', 'els => els.map(e => e.dataset.search)'),
        }
        self.shot('customer')

    def pareto(self):
        p = self.page
        start = len(self.requests)
        self.goto('/pareto')
        summary = need(p, tid('pareto-summary'), 'the Pareto summary')
        need(p, tid('pareto-chart') + ' canvas', 'the Pareto chart')
        p.wait_for_timeout(300)
        self.out['pareto'] = {
            'request': self.wait_post('/analytics/pareto', start, 'pareto'),
            'share': float(summary.get_attribute('data-share') or 'nan'),
            'members': int(summary.get_attribute('data-members') or 0),
            'summary': summary.inner_text(),
        }
        self.shot('pareto')

    def migration(self):
        p = self.page
        start = len(self.requests)
        self.goto('/migration')
        need(p, tid('migration-heatmap') + ' ' + tid('migration-cell'), 'the migration heat map')
        req = self.wait_post('/analytics/migration', start, 'migration')
        cells = p.eval_on_selector_all(tid('migration-cell'), 'els => els.filter(e => e.dataset.members !== "0").map(e => [e.dataset.from + "|" + e.dataset.to, +e.dataset.members])')
        res = {'request': req, 'cells': dict(cells)}
        off = p.locator(tid('migration-cell') + '.clickable:not(.diag)')
        if off.count():
            start = len(self.requests)
            off.first.click()
            res['drill_request'] = self.wait_post('/analytics/migration/drill', start, 'migration drill')
            need(p, tid('migration-drill') + ' ' + tid('dt-row'), 'the members of a transition')
            res['drill_total'] = int(p.get_attribute(tid('migration-drill') + ' ' + tid('dt-info'), 'data-total'))
            res['drill_rows'] = p.eval_on_selector_all(tid('migration-drill') + ' ' + tid('dt-row'), 'els => els.map(e => e.dataset.member)')
        self.out['migration'] = res
        self.shot('migration')

    def _editor_text(self):
        p = self.page
        need(p, tid('editor') + ' .cm-content', 'the definition editor')
        p.wait_for_function('() => window.latticeEditor && window.latticeEditor.getText().length > 0', timeout=TIMEOUT)
        return p.evaluate('() => window.latticeEditor.getText()')

    def band_error(self):
        p = self.page
        self.goto('/bands')
        text = self._editor_text()
        self.original_definition = text
        # A typo in the deposit band's metric, as a person would make it.
        m = re.search(r'metric: deposit_balance', text)
        if not m:
            raise StepFailed('the definition has no deposit_balance metric to misspell')
        typo_line = text[:m.start()].count('\n') + 1
        bad = text[:m.start()] + 'metric: deposit_balanse' + text[m.end():]
        # Edit it in the editor (a change like typing: it goes through the editor's transactions).
        p.evaluate('(t) => window.latticeEditor.setText(t)', bad)
        err = need(p, tid('def-error'), 'an inline definition error (def-error) after the typo', timeout=TIMEOUT)
        self.out['band_error'] = {
            'line': int(err.get_attribute('data-line')), 'column': int(err.get_attribute('data-column')),
            'message': err.inner_text().split(' ', 1)[1] if ' ' in err.inner_text() else err.inner_text(),
            'text': err.inner_text(), 'code': err.get_attribute('data-code'), 'typo_line': typo_line,
            'all': p.eval_on_selector_all(tid('def-error'), 'els => els.map(e => e.textContent)'),
        }
        # Clicking the error moves the editor to it, where its marker is.
        err.click()
        need(p, tid('editor') + ' .cm-lintRange-error', 'the error marker in the editor', state='attached')
        p.wait_for_timeout(300)
        self.shot('bands-error')

    def preview(self):
        p = self.page
        if not getattr(self, 'original_definition', None):
            self.goto('/bands')
            self.original_definition = self._editor_text()
        text = self.original_definition
        old = 'edges: [10000, 50000, 200000, 1000000]\n          labels: ["<10k", "10k-50k", "50k-200k", "200k-1M", "1M+"]'
        new = 'edges: [20000, 50000, 200000, 1000000]\n          labels: ["<20k", "20k-50k", "50k-200k", "200k-1M", "1M+"]'
        if old not in text:
            raise StepFailed('the definition does not hold the deposit band edges this step edits')
        p.evaluate('(t) => window.latticeEditor.setText(t)', text.replace(old, new))
        p.wait_for_function('() => { const s = document.querySelector("[data-testid=def-status]"); return s && s.dataset.state && s.dataset.state !== "invalid" && !document.querySelector("[data-testid=def-error]"); }', timeout=TIMEOUT)
        start = len(self.requests)
        need(p, tid('preview'), 'the Preview button').click()
        card = need(p, tid('preview-band'), 'the band preview (preview-band)')
        self.wait_post('/bands/preview', start, 'preview')
        counts = lambda t: dict(p.eval_on_selector_all(tid(t), 'els => els.map(e => [e.dataset.label, +e.dataset.count])'))
        moved = need(p, tid('moves-total'), 'the moves total')
        self.out['preview'] = {
            'band': card.get_attribute('data-band'), 'period': card.get_attribute('data-period'),
            'old_counts': counts('preview-old'), 'new_counts': counts('preview-new'),
            'moved': int(moved.get_attribute('data-moved')), 'moves_total_text': moved.inner_text(),
            'periods': p.eval_on_selector_all(tid('preview-period') + ' option', 'els => els.map(e => e.value)'),
        }
        p.wait_for_timeout(300)
        self.shot('bands-preview', full=True)

    def apply_forbidden(self):
        """Apply with the manager's key: the page shows the 403."""
        p = self.page
        if not self.a.manager_key:
            return
        self.goto('/bands')
        self.set_key(self.a.manager_key)
        self._editor_text()
        need(p, tid('apply'), 'the Apply button').click()
        err = need(p, tid('apply-error'), 'the error Apply shows for a manager')
        self.out['apply'] = {'manager_status': int(err.get_attribute('data-status') or 0), 'manager_code': err.get_attribute('data-code'), 'text': err.inner_text()}
        if err.get_attribute('data-status') != '403':
            raise StepFailed('Apply as a manager showed ' + err.inner_text())

    def apply_admin(self):
        p = self.page
        if not self.a.apply:
            return
        self.goto('/bands')
        if self.a.admin_key:
            self.set_key(self.a.admin_key)
        text = self._editor_text()
        new = text.replace('edges: [10000, 50000, 200000, 1000000]', 'edges: [10000, 50000, 250000, 1000000]')
        p.evaluate('(t) => window.latticeEditor.setText(t)', new)
        need(p, tid('apply'), 'the Apply button').click()
        done = need(p, tid('apply-done'), 'the end of applying', timeout=300000)
        self.out.setdefault('apply', {})['admin'] = {'ok': done.get_attribute('data-ok') == 'true', 'text': done.inner_text()}
        if done.get_attribute('data-ok') != 'true':
            raise StepFailed('Apply as admin: ' + done.inner_text())

    def manager(self):
        p = self.page
        if not self.a.manager_key:
            return
        self.goto('/explore')
        self.set_key(self.a.manager_key)
        need(p, tid('rows-picker'), 'the rows level picker (manager)')
        p.click(tid('reset'))
        self.wait_idle()
        for sel in (tid('row-level') + ' ' + tid('remove-level'), tid('column-level') + ' ' + tid('remove-level')):
            while p.locator(sel).count():
                p.locator(sel).first.click()
        p.select_option(tid('rows-picker'), 'region.province')
        for box in p.locator(tid('measure-picker') + ' input').all():
            box.uncheck()
        p.check(tid('measure-picker') + ' input[value="active_customers"]')
        q = self.run_query('manager pivot')
        cells = self.cells()
        ids = []
        clickable = p.locator(tid('cell') + '.clickable')
        for i in range(clickable.count()):
            start = len(self.requests)
            clickable.nth(i).click()
            self.wait_post('/drillthrough', start, 'manager drill-through')
            try:
                self.drill_settled()
            except Exception:
                raise StepFailed('the drill-through did not show (manager)')
            for _ in range(500):
                ids += p.eval_on_selector_all(tid('dt-row'), 'els => els.map(e => e.dataset.member)')
                nxt = p.locator(tid('dt-next'))
                if nxt.is_disabled():
                    break
                off = p.get_attribute(tid('dt-info'), 'data-offset')
                nxt.click()
                self.drill_settled(offset=off)
        self.out['manager_query'] = q
        self.out['manager_cells'] = [c[:-1] for c in cells]
        self.out['manager_customers'] = sorted(set(ids), key=lambda x: (len(x), x))
        self.shot('manager-explorer')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--url', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--admin-key')
    ap.add_argument('--manager-key')
    ap.add_argument('--apply', action='store_true', help='also apply an edited definition as admin (rewrites the served definition)')
    ap.add_argument('--step', action='append', help='run only these steps (repeatable)')
    ap.add_argument('--rows', default='region.province', help='the pivot step\'s row levels, comma-separated')
    ap.add_argument('--measures', default='txn_amount,fee_income', help='the pivot step\'s measures, comma-separated')
    ap.add_argument('--columns', default='time.year', help='the pivot step\'s column levels, comma-separated (empty: none)')
    ap.add_argument('--headed', action='store_true')
    a = ap.parse_args()
    a.url = a.url.rstrip('/')
    os.makedirs(a.out, exist_ok=True)
    exe = shutil.which('chromium') or shutil.which('chromium-browser')
    if not exe:
        log('no chromium on PATH (apt-get install -y chromium)')
        return 2
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=['--no-sandbox'], headless=not a.headed)
        ctx = browser.new_context(viewport={'width': 1440, 'height': 900}, accept_downloads=True)
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT)
        page_errors = []
        page.on('pageerror', lambda e: page_errors.append(str(e)))
        r = Run(a, page)
        t0 = time.time()
        page.goto(a.url + '/')
        try:
            page.wait_for_selector(tid('cube-picker'), timeout=TIMEOUT, state='attached')
        except Exception:
            log('the page did not load (no cube picker)')
            return 1
        r.out['first_view_ms'] = int((time.time() - t0) * 1000)
        if a.admin_key:
            r.set_key(a.admin_key)
        for name in ('pivot', 'chart', 'drill_down', 'drill_through', 'export', 'customer', 'pareto',
                     'migration', 'band_error', 'preview', 'apply_forbidden', 'manager', 'apply_admin'):
            r.step(name, getattr(r, name))
        if page_errors:
            r.failures.append({'step': 'page', 'error': 'JavaScript errors: ' + '; '.join(page_errors[:5])})
            log('JavaScript errors on the page: ' + '; '.join(page_errors[:5]))
        r.out['failures'] = r.failures
        browser.close()
    print(json.dumps(r.out, indent=1, ensure_ascii=False))
    return 1 if r.failures else 0


if __name__ == '__main__':
    sys.exit(main())
