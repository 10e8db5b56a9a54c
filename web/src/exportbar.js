import { h } from './dom.js';
import { download, errorBox } from './api.js';

// CSV and XLSX buttons for an answer: the same POST again with another Accept header.
export function exportBar(getRequest, prefix = '') {
  const msg = h('span.export-msg');
  const btn = (fmt, label) => h('button.small', {
    testid: (prefix ? prefix + '-' : '') + 'export-' + fmt, type: 'button', title: 'Download as ' + label,
    onclick: async (ev) => {
      const b = ev.currentTarget;
      const r = getRequest();
      if (!r) return;
      b.disabled = true;
      msg.replaceChildren();
      try {
        await download(r.path, r.body, fmt, r.name);
      } catch (err) {
        msg.replaceChildren(errorBox(err, 'export-error'));
      } finally {
        b.disabled = false;
      }
    },
  }, label);
  return h('span.export', {}, btn('csv', 'CSV'), btn('xlsx', 'XLSX'), msg);
}
