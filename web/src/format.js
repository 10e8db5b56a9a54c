// Formatting of answer values. Decimals arrive as exact strings and are shown as given,
// with thousand separators added to the integer part (never through a float).

export function groupDigits(intPart) {
  return intPart.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

export function fmtDecimal(s) {
  const str = String(s);
  const m = /^(-?)(\d+)(\.\d+)?$/.exec(str);
  if (!m) return str;
  return m[1] + groupDigits(m[2]) + (m[3] || '');
}

export function fmtInteger(n) {
  return fmtDecimal(String(n));
}

export function fmtNumber(n, digits = 2) {
  if (typeof n !== 'number' || !isFinite(n)) return String(n);
  return fmtDecimal(n.toFixed(digits));
}

export function fmtPercent(n, digits = 1) {
  if (n === null || n === undefined) return '–';
  return (n * 100).toFixed(digits) + '%';
}

// The text of one value of a column whose type is decimal, integer or number
// (a measure named *_change or *_share is a ratio shown as a percentage).
export function fmtValue(v, type, name) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'string') return fmtDecimal(v);
  if (typeof v === 'number') {
    const base = name ? String(name).split('|').pop() : '';
    if (/_(change|share)(_|$)/.test(base) || /_share_of_/.test(base)) return fmtPercent(v, 1);
    if (type === 'integer' || Number.isInteger(v)) return fmtInteger(v);
    return fmtNumber(v, 2);
  }
  return String(v);
}

export function toNumber(v) {
  if (v === null || v === undefined) return null;
  const n = typeof v === 'number' ? v : parseFloat(v);
  return isFinite(n) ? n : null;
}

// A short axis label: 1.2M, 35k.
export function shortNumber(n) {
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(a >= 1e10 ? 0 : 1) + 'B';
  if (a >= 1e6) return (n / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
  if (a >= 1e3) return (n / 1e3).toFixed(a >= 1e4 ? 0 : 1) + 'k';
  return String(Math.round(n * 100) / 100);
}

// Text for ECharts tooltips, which are HTML: member names and labels come from the data.
export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}
