// One job: state, attempts and times, live progress, error, payload and result (pretty JSON,
// folded when large), log lines, the events timeline, and retry / cancel / delete.

import { api, follow, ApiError, AuthError } from './api.js';
import { badge, clear, confirmAction, debounce, h, jsonBlock, time, timeCell, toast } from './dom.js';

const LIVE = ['scheduled', 'pending', 'running', 'retrying'];

export async function job(view, route, { navigate }) {
  const id = route.id;
  const head = h('div');
  const body = h('div');
  const timeline = h('ol', { class: 'timeline', id: 'job-timeline' });
  view.append(head, body, h('section', { class: 'card', 'aria-labelledby': 'tl-h' },
    h('h2', { id: 'tl-h' }, 'Events'), timeline));

  let current = null;

  async function load() {
    try {
      current = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        clear(head).append(h('h1', {}, 'Job not found'),
          h('p', { class: 'error', id: 'job-missing' }, e.message));
        clear(body);
        return;
      }
      throw e;
    }
    render(current);
  }

  function render(j) {
    const actions = h('div', { class: 'actions job-actions' },
      h('button', { type: 'button', id: 'job-retry', disabled: !['failed', 'cancelled'].includes(j.status),
        onclick: () => act('retry') }, 'Retry'),
      h('button', { type: 'button', id: 'job-cancel', disabled: !LIVE.includes(j.status),
        onclick: () => act('cancel') }, 'Cancel'),
      h('button', { type: 'button', id: 'job-delete', class: 'danger', onclick: () => act('delete') }, 'Delete'));
    clear(head).append(
      h('h1', {}, 'Job ', h('span', { class: 'mono' }, j.id)),
      h('p', {}, badge(j.status), ' ', h('span', { id: 'job-status', 'data-status': j.status }, j.status),
        ' · type ', h('a', { href: `#/jobs?type=${encodeURIComponent(j.type)}` }, j.type)),
      actions);
    const facts = [
      ['Attempt', `${j.attempt} of ${j.max_attempts}`],
      ['Priority', j.priority],
      ['Created', timeCell(j.created_at)],
      ['Runs at', timeCell(j.run_at)],
      ['Started', timeCell(j.started_at)],
      ['Finished', timeCell(j.finished_at)],
      ['Lease until', timeCell(j.lease_expires_at)],
      ['Timeout', j.timeout_ms ? `${j.timeout_ms} ms` : 'plugin or daemon default'],
      ['Unique key', j.unique_key || ''],
      ['Plugin version', j.plugin_version || ''],
      ['Handled', j.handled ? 'a loaded plugin handles this type' : 'no loaded plugin handles this type'],
    ].filter(([, v]) => v !== '' && v !== null && v !== undefined && !(v instanceof Node && !v.textContent));
    if (j.cancel_requested) facts.push(['Cancel', 'requested; the worker stops it']);
    const parts = [h('section', { class: 'card' }, h('dl', { class: 'kv', id: 'job-facts' },
      facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])))];
    if (j.note) parts.push(h('p', { class: 'muted' }, j.note));
    if (j.progress) {
      parts.push(h('section', { class: 'card', id: 'job-progress' }, h('h2', {}, 'Progress'),
        h('progress', { max: 100, value: j.progress.percent, 'aria-label': 'progress' }),
        ` ${j.progress.percent}%`, j.progress.message ? ` ${j.progress.message}` : ''));
    }
    if (j.error) {
      parts.push(h('section', { class: 'card' }, h('h2', {}, 'Error'),
        h('pre', { id: 'job-error', class: 'error' }, j.error)));
    }
    parts.push(h('section', { class: 'card' }, h('h2', {}, 'Payload'), jsonBlock(j.payload, 'job-payload')));
    if (j.result !== null && j.result !== undefined) {
      parts.push(h('section', { class: 'card' }, h('h2', {}, 'Result'), jsonBlock(j.result, 'job-result')));
    }
    parts.push(h('section', { class: 'card' }, h('h2', {}, `Log (${(j.logs || []).length} lines)`),
      (j.logs || []).length
        ? h('ol', { class: 'logs mono', id: 'job-logs' }, j.logs.map((l) => h('li', {}, l)))
        : h('p', { class: 'muted', id: 'job-logs-empty' }, 'No log lines.')));
    clear(body).append(...parts);
  }

  async function act(action) {
    try {
      if (action === 'delete') {
        const ok = await confirmAction(`Delete job ${id}? Its payload, result and logs go too.`, 'Delete 1 job');
        if (!ok) return;
        await api(`/api/v1/jobs/${encodeURIComponent(id)}`, { method: 'DELETE' });
        toast(`Deleted job ${id}`);
        navigate('#/jobs');
        return;
      }
      const j = await api(`/api/v1/jobs/${encodeURIComponent(id)}/${action}`, { method: 'POST', body: {} });
      toast(action === 'retry' ? 'Queued again' : 'Cancel sent');
      current = j;
      render(j);
    } catch (e) {
      if (e instanceof AuthError) window.dispatchEvent(new Event('spool-auth'));
      else toast(`Failed: ${e.message}`);
    }
  }

  function addEvent(ev) {
    const d = ev.data || {};
    const what = [];
    if (d.attempt !== undefined) what.push(`attempt ${d.attempt}`);
    if (d.percent !== undefined) what.push(`${d.percent}%`);
    if (d.message) what.push(String(d.message));
    if (d.error) what.push(String(d.error));
    if (d.replay) what.push('replayed by a user');
    timeline.append(h('li', { 'data-kind': ev.kind },
      h('time', { datetime: ev.at, class: 'muted' }, time(ev.at)),
      h('strong', {}, ev.kind),
      h('span', {}, what.join(' · '))));
  }

  await load();
  const refresh = debounce(() => load().catch(() => {}), 300);
  // The stored events of this job, then live ones: the timeline and live progress.
  const stream = follow(`job=${encodeURIComponent(id)}`, (ev) => {
    addEvent(ev);
    refresh();
  }, (st) => {
    if (st === 'auth') window.dispatchEvent(new Event('spool-auth'));
  }, '0');
  return () => stream.close();
}
