// The dashboard's shell: hash routing between the pages, the token prompt, and the one
// live event stream that the pages listen to.

import { AuthError, follow, setToken, token } from './api.js';
import { clear, h } from './dom.js';
import { overview } from './overview.js';
import { jobs } from './jobs.js';
import { job } from './job.js';
import { plugins } from './plugins.js';

const main = document.getElementById('main');
const live = document.getElementById('live');

// Page-side errors, for people and for the browser tests.
window.spoolErrors = [];
window.addEventListener('error', (e) => window.spoolErrors.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => window.spoolErrors.push(String(e.reason)));

// Listeners of the global stream (the page on screen).
const listeners = new Set();
let stream = null;

export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function setLive(state) {
  live.className = `live ${state === 'live' ? 'on' : 'off'}`;
  live.textContent = { live: 'live', retrying: 'reconnecting', auth: 'needs token' }[state] || state;
  if (state === 'auth') askToken();
}

function startStream() {
  if (stream) return;
  stream = follow('kind=job', (ev) => listeners.forEach((fn) => fn(ev)), setLive);
}

function stopStream() {
  if (stream) stream.close();
  stream = null;
}

// The page asks for the token once a call was refused for the want of it; nothing else is
// shown meanwhile.
function askToken(wrong) {
  stopStream();
  cleanup();
  const input = h('input', {
    id: 'token-input', type: 'password', autocomplete: 'current-password', required: true,
    'aria-describedby': 'token-help',
  });
  const form = h('form', { id: 'token-form', class: 'card token' },
    h('h1', {}, 'API token'),
    h('p', { id: 'token-help' }, wrong
      ? 'That token was refused. Enter the daemon\'s SPOOL_API_TOKEN.'
      : 'This daemon needs an API token (SPOOL_API_TOKEN). It is kept for this browser session only.'),
    h('label', { for: 'token-input' }, 'Token'),
    input,
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    route();
  });
  clear(main).append(form);
  live.className = 'live off';
  live.textContent = 'needs token';
  input.focus();
}

let cleanup = () => {};
let hadToken = false;

const pages = { overview, jobs, job, plugins };

function parse() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || '');
  if (parts[0] === 'jobs') return { name: 'jobs', params };
  if (parts[0] === 'job' && parts[1]) return { name: 'job', id: parts[1], params };
  if (parts[0] === 'plugins') return { name: 'plugins', params };
  return { name: 'overview', params };
}

async function route() {
  cleanup();
  cleanup = () => {};
  const r = parse();
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.route === (r.name === 'job' ? 'jobs' : r.name)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const view = h('div', { id: `page-${r.name}` });
  clear(main).append(view);
  hadToken = Boolean(token());
  try {
    const stop = await pages[r.name](view, r, { onEvent, navigate });
    startStream();
    if (typeof stop === 'function') cleanup = stop;
  } catch (e) {
    if (e instanceof AuthError) {
      askToken(hadToken);
      return;
    }
    clear(view).append(h('p', { class: 'error', role: 'alert' }, `Cannot load this page: ${e.message}`));
  }
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// A page that hit a 401 while on screen (token changed, daemon restarted with another).
window.addEventListener('spool-auth', () => askToken(true));
window.addEventListener('hashchange', () => { route(); main.focus(); });
route();
