// Overview: the daemon's health, one row per job type (counts by state, rates, oldest
// pending job, whether a loaded plugin handles it, its flow control with a pause/resume
// button), the cron schedules with their next fire times, and the throughput chart of the
// last hour. Refreshed from the live stream, never by reloading the page.

import { api, health as getHealth, AuthError } from './api.js';
import { age, badge, clear, debounce, h, num, s, time, toast } from './dom.js';

const STATES = ['scheduled', 'pending', 'running', 'retrying', 'completed', 'failed', 'cancelled'];

export async function overview(view, _route, { onEvent }) {
  const healthBox = h('section', { class: 'card', id: 'health', 'aria-labelledby': 'health-h' });
  const typesBox = h('section', { id: 'types', 'aria-labelledby': 'types-h' });
  const chartBox = h('section', { class: 'card chart', id: 'throughput', 'aria-labelledby': 'chart-h' });
  const schedulesBox = h('section', { id: 'schedules', 'aria-labelledby': 'schedules-h' });
  view.append(h('h1', {}, 'Overview'), h('div', { class: 'grid' }, healthBox, chartBox), typesBox,
    schedulesBox);

  // Job events refresh the counts and the chart; health (a second count of every job on
  // storage, cached for a second by the daemon) refreshes on its own slower timer, so that a
  // busy queue costs one count a second per open page.
  async function load() {
    const [stats, tp, sch] = await Promise.all([api('/api/v1/stats'),
      api('/api/v1/stats/throughput'), api('/api/v1/schedules')]);
    renderTypes(typesBox, stats, act);
    renderSchedules(schedulesBox, sch, act);
    renderChart(chartBox, tp);
  }
  // A pause or resume button: POST, then show the new state.
  async function act(path, done) {
    try {
      await api(path, { method: 'POST', body: {} });
      toast(done);
      await load();
    } catch (e) {
      if (e instanceof AuthError) window.dispatchEvent(new Event('spool-auth'));
      else toast(`Failed: ${e.message}`);
    }
  }
  async function loadHealth() {
    renderHealth(healthBox, await getHealth().catch(() => null));
  }

  await load();
  await loadHealth();
  const onFail = (e) => {
    if (e instanceof AuthError) window.dispatchEvent(new Event('spool-auth'));
  };
  const refresh = debounce(() => load().catch(onFail), 1000);
  const off = onEvent(refresh);
  const timer = setInterval(() => {
    loadHealth();
    refresh();
  }, 10000);
  return () => {
    off();
    clearInterval(timer);
  };
}

function renderHealth(box, hl) {
  clear(box).append(h('h2', { id: 'health-h' }, 'Daemon health'));
  if (!hl) {
    box.append(h('p', { class: 'error' }, 'No answer from /health.'));
    return;
  }
  const storage = hl.storage || {};
  const rows = [
    ['Status', badge(hl.status)],
    ['Storage', `${hl.backend}${storage.connected === false ? ' (unreachable)' : ''}${
      storage.latency_ms !== undefined ? `, ping ${storage.latency_ms.toFixed(2)} ms` : ''}`],
    ['Workers', `${hl.workers?.busy ?? 0} busy of ${hl.workers?.total ?? 0}`],
    ['Plugins', `${hl.plugins?.loaded ?? 0} loaded, ${hl.plugins?.failed ?? 0} failed`],
    ['Uptime', age((hl.uptime_s || 0) * 1000)],
  ];
  if (hl.redis && Object.keys(hl.redis).length) {
    rows.push(['Redis', Object.entries(hl.redis).map(([k, v]) => `${k} ${v}`).join(', ')]);
  }
  if (hl.fallback) {
    rows.push(['Fallback', hl.fallback.active ? `active, ${hl.fallback.jobs ?? 0} jobs spooled` : 'standing by']);
  }
  box.append(h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
  if (hl.reasons && hl.reasons.length) {
    box.append(h('ul', { class: 'reasons' }, hl.reasons.map((r) => h('li', {}, r))));
  }
}

// What flow control does to a type: paused, held, its limits.
function flowText(flow) {
  if (!flow) return '';
  const parts = [];
  if (flow.paused) parts.push('paused');
  else if (flow.held_until) parts.push(`held until ${time(flow.held_until)}`);
  if (flow.rate_limit) parts.push(`rate ${flow.rate_limit}`);
  if (flow.global_concurrency) parts.push(`max ${flow.global_concurrency} running`);
  return parts.join(', ');
}

function renderTypes(box, stats, act) {
  clear(box).append(h('h2', { id: 'types-h' }, 'Job types'));
  const names = Object.keys(stats.types || {});
  if (!names.length) {
    box.append(h('p', { class: 'muted', id: 'no-types' }, 'No jobs yet. Submit one: spool submit echo \'{"hello": "world"}\''));
    return;
  }
  const head = h('tr', {},
    h('th', { scope: 'col' }, 'Type'),
    STATES.map((st) => h('th', { scope: 'col', class: 'num' }, st)),
    h('th', { scope: 'col', class: 'num', title: 'attempts per minute, this daemon' }, 'jobs/min'),
    h('th', { scope: 'col', class: 'num hide-narrow', title: 'run time of recent attempts, this daemon' }, 'avg ms'),
    h('th', { scope: 'col', class: 'num hide-narrow', title: '95th percentile of recent run times, this daemon' }, 'p95 ms'),
    h('th', { scope: 'col', class: 'hide-narrow' }, 'oldest pending'),
    h('th', { scope: 'col' }, 'plugin'),
    h('th', { scope: 'col' }, 'flow control'));
  const rows = names.map((name) => {
    const t = stats.types[name];
    const counts = t.counts || {};
    return h('tr', { 'data-type': name },
      h('th', { scope: 'row' }, h('a', { href: `#/jobs?type=${encodeURIComponent(name)}` }, name)),
      STATES.map((st) => {
        const n = counts[st] || 0;
        const cell = n > 0
          ? h('a', { href: `#/jobs?status=${st}&type=${encodeURIComponent(name)}` }, num(n))
          : '0';
        return h('td', { class: `num${n ? '' : ' zero'}`, 'data-state': st, 'data-count': n }, cell);
      }),
      h('td', { class: 'num' }, (t.jobs_per_minute || 0).toFixed(1)),
      h('td', { class: 'num hide-narrow' }, t.avg_duration_ms == null ? '' : t.avg_duration_ms.toFixed(1)),
      h('td', { class: 'num hide-narrow', 'data-p95': t.p95_duration_ms == null ? '' : String(t.p95_duration_ms) },
        t.p95_duration_ms == null ? '' : t.p95_duration_ms.toFixed(1)),
      h('td', { class: 'hide-narrow' }, age(t.oldest_pending_age_ms)),
      h('td', { 'data-handled': String(t.handled) }, t.handled ? 'loaded' : h('span', { class: 'error' }, 'none')),
      flowCell(name, t.flow, act));
  });
  const totals = stats.totals || {};
  const foot = h('tr', { class: 'totals' },
    h('th', { scope: 'row' }, 'all'),
    STATES.map((st) => h('td', { class: 'num' }, num(totals[st] || 0))),
    h('td', { colspan: 6 }, ''));
  const paused = stats.paused_types || [];
  if (paused.length) {
    box.append(h('p', { class: 'warn', id: 'paused-types' },
      `Paused on every daemon: ${paused.join(', ')}. Their jobs wait until resumed.`));
  }
  box.append(h('div', { class: 'scroll' }, h('table', { id: 'types-table' },
    h('thead', {}, head), h('tbody', {}, rows), h('tfoot', {}, foot))));
  if (stats.note) box.append(h('p', { class: 'muted' }, stats.note));
}

function flowCell(name, flow, act) {
  const paused = Boolean(flow && flow.paused);
  const path = `/api/v1/types/${encodeURIComponent(name)}/${paused ? 'resume' : 'pause'}`;
  const button = h('button', { type: 'button', class: 'small', 'data-action': paused ? 'resume' : 'pause' },
    paused ? 'Resume' : 'Pause');
  button.addEventListener('click', () => act(path, paused ? `Resumed ${name}` : `Paused ${name}`));
  return h('td', { 'data-flow': paused ? 'paused' : 'running' }, flowText(flow), ' ', button);
}

function renderSchedules(box, sch, act) {
  clear(box).append(h('h2', { id: 'schedules-h' }, 'Schedules'));
  const list = (sch && sch.schedules) || [];
  if (!list.length) {
    box.append(h('p', { class: 'muted', id: 'no-schedules' },
      'No cron schedules. Add one: spool schedules add NAME --cron "*/15 * * * *" --type TYPE'));
    return;
  }
  const head = h('tr', {}, ['Name', 'Cron', 'Type', 'Last tick', 'Next', 'State'].map((c) => h('th', { scope: 'col' }, c)));
  const rows = list.map((r) => {
    const path = `/api/v1/schedules/${encodeURIComponent(r.name)}/${r.paused ? 'resume' : 'pause'}`;
    const button = h('button', { type: 'button', class: 'small' }, r.paused ? 'Resume' : 'Pause');
    button.addEventListener('click', () => act(path, `${r.paused ? 'Resumed' : 'Paused'} schedule ${r.name}`));
    const next = r.next ? r.next.map((t) => time(t)).join(', ') : h('span', { class: 'error' }, r.error || '');
    return h('tr', { 'data-schedule': r.name },
      h('th', { scope: 'row' }, r.name),
      h('td', {}, h('code', {}, `${r.cron} (${r.timezone})`)),
      h('td', {}, h('a', { href: `#/jobs?type=${encodeURIComponent(r.type)}` }, r.type)),
      h('td', {}, r.last_tick ? time(r.last_tick) : '-'),
      h('td', {}, next),
      h('td', {}, r.paused ? 'paused ' : 'active ', button));
  });
  box.append(h('div', { class: 'scroll' }, h('table', { id: 'schedules-table' },
    h('thead', {}, head), h('tbody', {}, rows))));
}

function renderChart(box, tp) {
  clear(box).append(h('h2', { id: 'chart-h' }, 'Throughput, last hour'));
  const minutes = tp.minutes || [];
  const W = 600;
  const H = 150;
  const top = 4;
  const bottom = 2;
  const max = Math.max(1, ...minutes.map((m) => m.completed + m.failed + m.retried));
  const bw = W / Math.max(1, minutes.length);
  const scale = (H - top - bottom) / max;
  const bars = [];
  minutes.forEach((m, i) => {
    let y = H - bottom;
    for (const key of ['completed', 'retried', 'failed']) {
      const v = m[key];
      if (!v) continue;
      const hgt = v * scale;
      y -= hgt;
      bars.push(s('rect', { class: `c-${key}`, x: (i * bw + 0.5).toFixed(1), y: y.toFixed(1),
        width: Math.max(1, bw - 1).toFixed(1), height: hgt.toFixed(1) },
      s('title', {}, `${new Date(m.at_ms).toLocaleTimeString(undefined, { hour12: false })}: ${v} ${key}`)));
    }
  });
  const total = (k) => minutes.reduce((a, m) => a + m[k], 0);
  const label = `Attempts per minute over the last hour: ${total('completed')} completed, ${
    total('failed')} failed, ${total('retried')} retried`;
  box.append(
    s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, preserveAspectRatio: 'none' },
      s('line', { class: 'axis', x1: 0, x2: W, y1: H - bottom, y2: H - bottom }),
      bars),
    h('div', { class: 'axis-labels' }, h('span', {}, '60 min ago'), h('span', {}, `peak ${max}/min`), h('span', {}, 'now')),
    h('div', { class: 'legend' },
      h('span', { class: 'l-completed' }, `completed ${total('completed')}`),
      h('span', { class: 'l-failed' }, `failed ${total('failed')}`),
      h('span', { class: 'l-retried' }, `retried ${total('retried')}`)),
    h('p', { class: 'muted' }, `Counts ${tp.scope || 'attempts'}.`));
}
