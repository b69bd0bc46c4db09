// Jobs: a table filtered by state and type, newest first, paged by cursor; open a job by id;
// bulk retry/cancel/delete of a selection or of every failed job of a type, each confirmed
// with the number of jobs it touches (asked of the daemon with a dry run first).

import { api, AuthError } from './api.js';
import { badge, clear, confirmAction, debounce, h, timeCell, toast } from './dom.js';

const STATES = ['scheduled', 'pending', 'running', 'retrying', 'completed', 'failed', 'cancelled'];
const PAGE = 50;
const VERB = { retry: 'Retry', cancel: 'Cancel', delete: 'Delete' };

export async function jobs(view, route, { onEvent, navigate }) {
  const status = route.params.get('status') || '';
  const type = route.params.get('type') || '';
  // Cursors of the pages before this one (the first page has none).
  const back = [];
  let cursor = null;
  let next = null;
  let rows = [];
  const selected = new Set();

  const statusSel = h('select', { id: 'filter-status' },
    h('option', { value: '' }, 'any state'),
    STATES.map((st) => h('option', { value: st, selected: st === status }, st)));
  const typeIn = h('input', { id: 'filter-type', value: type, list: 'known-types', placeholder: 'any type', size: 14 });
  const known = h('datalist', { id: 'known-types' });
  const idIn = h('input', { id: 'open-id', placeholder: 'job id', size: 20 });
  const applyFilter = (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (statusSel.value) q.set('status', statusSel.value);
    if (typeIn.value.trim()) q.set('type', typeIn.value.trim());
    navigate(`#/jobs${q.toString() ? `?${q}` : ''}`);
  };
  statusSel.addEventListener('change', applyFilter);
  const filters = h('form', { class: 'controls', id: 'filters', onsubmit: applyFilter },
    h('label', {}, 'State', statusSel),
    h('label', {}, 'Type', typeIn),
    known,
    h('button', { type: 'submit' }, 'Filter'));
  const opener = h('form', { class: 'controls', id: 'opener', onsubmit: (e) => {
    e.preventDefault();
    const id = idIn.value.trim();
    if (id) navigate(`#/job/${encodeURIComponent(id)}`);
  } }, h('label', {}, 'Open a job by id', idIn), h('button', { type: 'submit' }, 'Open'));

  const bulkBar = h('div', { class: 'bulk', id: 'bulk', role: 'region', 'aria-label': 'Bulk actions' });
  const table = h('div', { class: 'scroll' });
  const pager = h('div', { class: 'actions', id: 'pager' });
  view.append(h('h1', {}, 'Jobs'), h('div', { class: 'controls' }, filters, opener), bulkBar, table, pager);

  api('/api/v1/stats').then((st) => {
    for (const t of Object.keys(st.types || {})) known.append(h('option', { value: t }));
  }).catch(() => {});

  // Loads may overlap (a click during a live refresh): only the latest one's answer is shown.
  let loads = 0;
  async function load() {
    const n = ++loads;
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (status) q.set('status', status);
    if (type) q.set('type', type);
    if (cursor) q.set('cursor', cursor);
    const page = await api(`/api/v1/jobs?${q}`);
    if (n !== loads) return;
    rows = page.jobs || [];
    next = page.next_cursor || null;
    render();
  }

  function render() {
    const all = h('input', { type: 'checkbox', id: 'select-all', 'aria-label': 'Select every job on this page',
      checked: rows.length > 0 && rows.every((j) => selected.has(j.id)),
      onchange: (e) => {
        for (const j of rows) {
          if (e.target.checked) selected.add(j.id);
          else selected.delete(j.id);
        }
        render();
      } });
    const body = rows.map((j) => h('tr', { 'data-id': j.id, 'data-status': j.status },
      h('td', {}, h('input', { type: 'checkbox', 'aria-label': `Select job ${j.id}`, checked: selected.has(j.id),
        onchange: (e) => {
          if (e.target.checked) selected.add(j.id);
          else selected.delete(j.id);
          renderBulk();
        } })),
      h('td', { class: 'mono' }, h('a', { href: `#/job/${encodeURIComponent(j.id)}` }, j.id)),
      h('td', {}, j.type),
      h('td', {}, badge(j.status)),
      h('td', { class: 'num' }, `${j.attempt}/${j.max_attempts}`),
      h('td', { class: 'hide-narrow' }, timeCell(j.created_at)),
      h('td', { class: 'hide-narrow' }, timeCell(j.finished_at)),
      h('td', { class: 'error' }, j.error ? clip(j.error, 120) : '')));
    clear(table).append(h('table', { id: 'jobs-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, all),
        h('th', { scope: 'col' }, 'id'),
        h('th', { scope: 'col' }, 'type'),
        h('th', { scope: 'col' }, 'state'),
        h('th', { scope: 'col', class: 'num' }, 'attempt'),
        h('th', { scope: 'col', class: 'hide-narrow' }, 'created'),
        h('th', { scope: 'col', class: 'hide-narrow' }, 'finished'),
        h('th', { scope: 'col' }, 'error'))),
      h('tbody', {}, body)));
    if (!rows.length) table.append(h('p', { class: 'muted', id: 'no-jobs' }, 'No jobs match.'));
    clear(pager).append(
      h('button', { type: 'button', id: 'page-newer', disabled: back.length === 0, onclick: () => {
        cursor = back.pop() ?? null;
        load().catch(fail);
      } }, 'Newer'),
      h('button', { type: 'button', id: 'page-older', disabled: !next, onclick: () => {
        back.push(cursor);
        cursor = next;
        load().catch(fail);
      } }, 'Older'),
      h('span', { class: 'muted' }, `page ${back.length + 1}, newest first`));
    renderBulk();
  }

  function renderBulk() {
    clear(bulkBar);
    if (selected.size) {
      bulkBar.append(h('span', { id: 'selected-count' }, `${selected.size} selected:`),
        ['retry', 'cancel', 'delete'].map((a) => h('button', {
          type: 'button', id: `bulk-${a}`, class: a === 'delete' ? 'danger' : '',
          onclick: () => bulk(a, { ids: [...selected] }, `of the ${selected.size} selected`),
        }, VERB[a])),
        h('button', { type: 'button', onclick: () => { selected.clear(); render(); } }, 'Clear selection'));
    }
    if (type) {
      bulkBar.append(h('span', {}, `Every failed job of type ${type}:`),
        h('button', { type: 'button', id: 'bulk-failed-retry',
          onclick: () => bulk('retry', { filter: { status: 'failed', type } }, `every failed job of type ${type}`) }, 'Retry all'),
        h('button', { type: 'button', id: 'bulk-failed-delete', class: 'danger',
          onclick: () => bulk('delete', { filter: { status: 'failed', type } }, `every failed job of type ${type}`) }, 'Delete all'));
    }
  }

  async function bulk(action, target, what) {
    try {
      const dry = await api('/api/v1/jobs/bulk', { method: 'POST', body: { action, ...target, dry_run: true } });
      if (!dry.matched) {
        toast(`No job to ${action} (${what}).`);
        return;
      }
      const skipped = dry.error_count ? ` (${dry.error_count} of them cannot be: skipped)` : '';
      const more = dry.truncated ? ' (the newest ones; run it again for the rest)' : '';
      const n = dry.matched === 1 ? '1 job' : `${dry.matched} jobs`;
      const ok = await confirmAction(`${VERB[action]} ${n} (${what})${more}${skipped}?`, `${VERB[action]} ${n}`);
      if (!ok) return;
      const done = await api('/api/v1/jobs/bulk', { method: 'POST', body: { action, ...target } });
      const errs = done.error_count ? `; ${done.error_count} failed: ${done.errors[0]?.message ?? ''}` : '';
      toast(`${VERB[action]}: ${done.touched} job(s) done${errs}`);
      selected.clear();
      await load();
    } catch (e) {
      fail(e);
    }
  }

  function fail(e) {
    if (e instanceof AuthError) window.dispatchEvent(new Event('spool-auth'));
    else toast(`Failed: ${e.message}`);
  }

  await load();
  // Live: the first page follows every event (a job's later events may arrive before the
  // load that brings its row in, and must not be lost); other pages follow their own rows,
  // or every event when they filter by state.
  const refresh = debounce(() => load().catch(fail), 700);
  const off = onEvent((ev) => {
    if (type && ev.job_type !== type) return;
    if (cursor === null || status || rows.some((j) => j.id === ev.job_id)) refresh();
  });
  return off;
}

function clip(text, n) {
  return text.length > n ? `${text.slice(0, n)}…` : text;
}
