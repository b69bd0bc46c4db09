// Plugins: each loaded plugin's version, job types, manifest settings, load time, whether its
// compiled code came from the cache, and the files that failed to load with their error.

import { api } from './api.js';
import { badge, h } from './dom.js';

export async function plugins(view, _route, { onEvent }) {
  const list = (await api('/api/v1/plugins')).plugins || [];
  const loaded = list.filter((p) => p.state === 'loaded');
  const failed = list.filter((p) => p.error);
  view.append(h('h1', {}, 'Plugins'));
  if (!list.length) view.append(h('p', { class: 'muted' }, 'No plugins in the plugins folder.'));
  if (loaded.length) {
    view.append(h('div', { class: 'scroll' }, h('table', { id: 'plugins-table' },
      h('thead', {}, h('tr', {},
        ['name', 'state', 'version', 'job types', 'loaded at', 'compiled code', 'manifest'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, loaded.map((p) => h('tr', { 'data-plugin': p.name },
        h('th', { scope: 'row' }, p.name),
        h('td', {}, badge(p.state)),
        h('td', { class: 'mono' }, p.version || ''),
        h('td', {}, (p.types || []).join(', ')),
        h('td', {}, p.loaded_at_ms ? new Date(p.loaded_at_ms).toLocaleString(undefined, { hour12: false }) : ''),
        h('td', { 'data-compile': p.compile ? p.compile.source : '' }, compiled(p.compile)),
        h('td', {}, manifest(p.manifest))))))));
  }
  if (failed.length) {
    view.append(h('h2', {}, 'Files that failed to load'),
      h('ul', { id: 'plugins-failed' }, failed.map((p) => h('li', {},
        h('strong', {}, p.name), ` (${p.path}${p.state === 'loaded' ? '; the previous version keeps serving' : ''}): `,
        h('span', { class: 'error' }, p.error)))));
  }
  // A reload shows on the next visit; job events do not change this page.
  return onEvent(() => {});
}

const COMPILE_SOURCES = {
  cache: 'from the cache',
  compiled_and_cached: 'compiled, now cached',
  compiled: 'compiled (no cache)',
};

function compiled(c) {
  if (!c) return '';
  return `${COMPILE_SOURCES[c.source] || c.source} in ${c.ms} ms`;
}

function manifest(m) {
  if (!m || !Object.keys(m).length) return h('span', { class: 'muted' }, 'defaults');
  const rows = [];
  for (const [k, v] of Object.entries(m)) {
    if (k === 'config') {
      for (const [ck, cv] of Object.entries(v)) rows.push([`config.${ck}`, cv]);
    } else {
      rows.push([k, Array.isArray(v) ? v.join(', ') : v]);
    }
  }
  return h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', { class: 'mono' }, String(v))]));
}
