// Calls to the Lattice HTTP API: the key from sessionStorage on every call, errors as ApiError.
import { h } from './dom.js';

const KEY = 'lattice.key';
const CUBE = 'lattice.cube';

export function getKey() {
  try { return sessionStorage.getItem(KEY) || ''; } catch { return ''; }
}
export function setKey(k) {
  try { k ? sessionStorage.setItem(KEY, k) : sessionStorage.removeItem(KEY); } catch { /* private mode */ }
}
export function getCubeName() {
  try { return sessionStorage.getItem(CUBE) || ''; } catch { return ''; }
}
export function setCubeName(c) {
  try { sessionStorage.setItem(CUBE, c); } catch { /* ignore */ }
}

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

function headers(extra) {
  const hd = Object.assign({}, extra);
  const k = getKey();
  if (k) hd['Authorization'] = 'Bearer ' + k;
  return hd;
}

async function errorOf(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const e = body && body.error;
  if (e) return new ApiError(res.status, e.code, e.message, e.details);
  return new ApiError(res.status, 'http_' + res.status, res.status + ' ' + res.statusText, {});
}

export async function request(method, path, { json, text, contentType, accept, query } = {}) {
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
    const s = q.toString();
    if (s) url += '?' + s;
  }
  const init = { method, headers: headers(accept ? { Accept: accept } : { Accept: 'application/json' }) };
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (text !== undefined) {
    init.headers['Content-Type'] = contentType || 'application/yaml';
    init.body = text;
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (err) {
    throw new ApiError(0, 'network', 'the server cannot be reached (' + err.message + ')', {});
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

export async function getJson(path, query) {
  return (await request('GET', path, { query })).json();
}
export async function postJson(path, body, query) {
  return (await request('POST', path, { json: body, query })).json();
}

export const cubePath = (cube) => '/v1/cubes/' + encodeURIComponent(cube);

// Export formats: the same request with another Accept header, saved as a download.
export const FORMATS = {
  csv: { accept: 'text/csv', ext: 'csv' },
  xlsx: { accept: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', ext: 'xlsx' },
};

export async function download(path, body, format, name) {
  const f = FORMATS[format];
  const res = await request('POST', path, { json: body, accept: f.accept });
  const blob = await res.blob();
  // The server's file name (Content-Disposition) when it gives one.
  const cd = res.headers.get('Content-Disposition') || '';
  const m = /filename="?([^";]+)"?/.exec(cd);
  const a = h('a', { href: URL.createObjectURL(blob), download: m ? m[1] : name + '.' + f.ext });
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

// An error as a readable box; 401 and 403 say what to do about the key.
export function errorBox(err, testid = 'error') {
  const status = err && err.status;
  let hint = null;
  if (status === 401) hint = getKey() ? 'The key was not accepted: enter a valid API key or token at the top right.' : 'This server needs an API key: enter it in the key field at the top right.';
  else if (status === 403) hint = 'Your key is not allowed to do this (403 forbidden).';
  const code = (err && err.code) || 'error';
  const box = h('div.error', { testid, 'data-status': status || '', 'data-code': code, role: 'alert' },
    h('strong', {}, status ? `${status} ${code}` : code), ': ', (err && err.message) || String(err),
    hint ? h('div.hint', {}, hint) : null);
  const errs = err && err.details && err.details.errors;
  if (Array.isArray(errs) && errs.length) {
    box.appendChild(h('ul', {}, errs.map((e) => h('li', {}, `${e.line}:${e.column} ${e.message}${e.help ? ' (' + e.help + ')' : ''}`))));
  }
  return box;
}

// Cube metadata, cached per cube and key.
const cubeCache = new Map();
export async function cubeInfo(cube, fresh = false) {
  const k = cube + '\u0000' + getKey();
  if (!fresh && cubeCache.has(k)) return cubeCache.get(k);
  const p = getJson(cubePath(cube));
  cubeCache.set(k, p);
  try { return await p; } catch (e) { cubeCache.delete(k); throw e; }
}
export function forgetCubes() { cubeCache.clear(); }

// Helpers over cube metadata.
export function allLevels(info) {
  const out = [];
  for (const d of info.dimensions) for (const l of d.levels) out.push({ ...l, dimension: d.name, dkind: d.kind });
  return out;
}
export function childLevel(info, qualified) {
  const [dim, lvl] = qualified.split('.');
  const d = info.dimensions.find((x) => x.name === dim);
  if (!d || !d.hierarchy) return null;
  const i = d.hierarchy.indexOf(lvl);
  if (i < 0 || i + 1 >= d.hierarchy.length) return null;
  return dim + '.' + d.hierarchy[i + 1];
}
export function measureInfo(info, name) {
  return info.measures.find((m) => m.name === name);
}
export async function members(cube, qualified, search, limit = 50, offset = 0) {
  const [dim, lvl] = qualified.split('.');
  return getJson(`${cubePath(cube)}/members/${encodeURIComponent(dim)}/${encodeURIComponent(lvl)}`,
    { search, limit, offset });
}

// The cube the pages work on (chosen in the top bar).
let cubeNow = '';
export function currentCube() { return cubeNow; }
export function setCurrentCube(c) { cubeNow = c; setCubeName(c); }
