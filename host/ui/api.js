// The API client: JSON over fetch with the bearer token of this browser session, and the
// Server-Sent Events stream read over fetch (EventSource cannot send an Authorization header).

const TOKEN_KEY = 'spool.token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// The daemon wants a token (none given, or a wrong one).
export class AuthError extends Error {}

// The daemon refused or failed a call: `code` and `message` are its error.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra) {
  const out = { Accept: 'application/json', ...extra };
  const t = token();
  if (t) out.Authorization = `Bearer ${t}`;
  return out;
}

export async function api(path, { method = 'GET', body } = {}) {
  const init = { method, headers: headers(), cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) throw new AuthError('this daemon needs an API token');
  if (resp.status === 204) return null;
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(resp.status, err.code || 'http_error', err.message || `HTTP ${resp.status}`);
  }
  return data;
}

// /health answers 503 with a body when unhealthy: read it either way.
export async function health() {
  const resp = await fetch('/health', { headers: headers(), cache: 'no-store' });
  return resp.json();
}

// Follow `/api/v1/events?QUERY`: `onEvent(event)` for each event (its JSON), `onState(s)` with
// 'live', 'retrying' or 'auth'. Reconnects after a drop, resuming after the last id seen.
// `after` starts from that id (e.g. '0' for every stored event). Returns { close() }.
export function follow(query, onEvent, onState, after) {
  const ctl = new AbortController();
  let lastId = after || null;
  let closed = false;

  async function run() {
    while (!closed) {
      try {
        const hdrs = headers({ Accept: 'text/event-stream' });
        if (lastId !== null) hdrs['Last-Event-ID'] = lastId;
        const resp = await fetch(`/api/v1/events${query ? `?${query}` : ''}`, {
          headers: hdrs,
          signal: ctl.signal,
          cache: 'no-store',
        });
        if (resp.status === 401) {
          onState('auth');
          return;
        }
        if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
        onState('live');
        await read(resp.body, (ev) => {
          if (ev.id) lastId = ev.id;
          if (!ev.data) return;
          let data;
          try {
            data = JSON.parse(ev.data);
          } catch {
            return;
          }
          if (ev.event === 'error') return;
          onEvent(data);
        });
      } catch (e) {
        if (closed || ctl.signal.aborted) return;
      }
      if (closed) return;
      onState('retrying');
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  run();
  return {
    close() {
      closed = true;
      ctl.abort();
    },
  };
}

// Parse an SSE byte stream into {id, event, data} messages.
async function read(body, dispatch) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const msg = { id: '', event: 'message', data: '' };
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? '' : line.slice(colon + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        if (field === 'id') msg.id = v;
        else if (field === 'event') msg.event = v;
        else if (field === 'data') data.push(v);
      }
      msg.data = data.join('\n');
      dispatch(msg);
    }
  }
}
