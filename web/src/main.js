// Lattice web: top bar, key entry, cube picker and hash routing.
import './style.css';
import { h, clear } from './dom.js';
import { getJson, getKey, setKey, getCubeName, setCurrentCube, currentCube, forgetCubes, errorBox } from './api.js';
import { renderExplorer } from './explorer.js';
import { renderAnalysis, ANALYSES } from './analyses.js';
import { renderBands } from './bands.js';
import { renderCustomer } from './customer.js';

const app = document.getElementById('app');
const cubeSel = h('select', { testid: 'cube-picker', 'aria-label': 'cube' });
const keyIn = h('input', { type: 'password', testid: 'api-key', placeholder: 'API key or token', autocomplete: 'off', value: getKey(), 'aria-label': 'API key' });
const keyState = h('span.key-state', { testid: 'key-state' });
const navLinks = [['explore', 'Explorer'], ['pareto', 'Analyses'], ['bands', 'Bands']];
const nav = h('nav.top-nav', {}, navLinks.map(([r, label]) => h('a', { href: '#/' + r, testid: 'nav-top-' + r, 'data-route': r }, label)));
const view = h('main', { testid: 'view' });

function showKeyState() {
  keyState.textContent = getKey() ? 'key set' : 'no key';
  keyState.className = 'key-state' + (getKey() ? ' on' : '');
}

const useKey = async () => {
  setKey(keyIn.value.trim());
  showKeyState();
  forgetCubes();
  await loadCubes();
  route();
};
keyIn.addEventListener('keydown', (e) => { if (e.key === 'Enter') useKey(); });

clear(app,
  h('header.topbar', {},
    h('a.brand', { href: '#/explore' }, 'Lattice'), nav,
    h('label.cube', {}, 'Cube ', cubeSel),
    h('span.spacer'),
    h('span.key', {}, keyIn, h('button.small', { testid: 'api-key-save', onclick: useKey }, 'Use key'),
      h('button.small', { testid: 'api-key-clear', onclick: () => { keyIn.value = ''; useKey(); } }, 'Clear'), keyState)),
  view);
showKeyState();

let cubesError = null;
async function loadCubes() {
  cubesError = null;
  try {
    const a = await getJson('/v1/cubes');
    const names = a.cubes.map((c) => c.name);
    clear(cubeSel, names.map((n) => h('option', { value: n }, n)));
    const want = names.includes(currentCube()) ? currentCube() : names.includes(getCubeName()) ? getCubeName() : names[0] || '';
    cubeSel.value = want;
    setCurrentCube(want);
  } catch (err) {
    cubesError = err;
    clear(cubeSel);
  }
}
cubeSel.addEventListener('change', () => { setCurrentCube(cubeSel.value); route(); });

let routeSeq = 0;
function route() {
  const my = ++routeSeq;
  const hash = location.hash.replace(/^#\/?/, '') || 'explore';
  const [path, qs] = hash.split('?');
  const parts = path.split('/').map(decodeURIComponent);
  const params = new URLSearchParams(qs || '');
  const name = parts[0];
  const top = ANALYSES.some(([k]) => k === name) ? 'pareto' : name === 'customer' ? 'explore' : name;
  for (const a of nav.querySelectorAll('a')) a.classList.toggle('on', a.dataset.route === top);
  const page = h('div', { testid: 'page-' + name });
  clear(view, page);
  if (cubesError) { page.appendChild(errorBox(cubesError)); return; }
  if (my !== routeSeq) return;
  if (name === 'explore') renderExplorer(page, params);
  else if (name === 'customer') renderCustomer(page, parts[1] || '');
  else if (name === 'bands') renderBands(page);
  else if (ANALYSES.some(([k]) => k === name)) renderAnalysis(page, name);
  else page.appendChild(h('p', {}, 'No such page: ', name, '. ', h('a', { href: '#/explore' }, 'Explorer')));
}
window.addEventListener('hashchange', route);
loadCubes().then(route);
