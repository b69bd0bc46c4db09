// `fetch-title`: the Spool plugin (world `spool:plugin/handler@0.2.0`) that reads a web page's
// title, in plain JavaScript with `fetch`.
//
// Payload: {"url": "https://..."}. Result: {"url", "status", "title", "words", "cached"}:
// `title` is the page's <title> (null when it has none), `words` counts the words of the
// visible text (the whole text for a response that is not HTML).
//
// The daemon lets the request out only to a host in the manifest's `allowed_hosts`; any
// other URL fails inside `fetch` (a TypeError: "NetworkError when attempting to fetch
// resource", whatever the wasi:http error code was), and so does a refused connection or a
// request that hits one of the `[http]` limits: all ask for a retry.
//
// Outcome by status: 2xx is a result; 429 and 503 retry after `Retry-After` (seconds or an
// HTTP-date; the job's backoff without one); other 5xx retry with backoff; anything else
// (4xx, a redirect) fails for good with the status and the first 200 characters of the body.
//
// Results are cached by URL in the plugin's cache for `ttl_seconds` (manifest config, default
// 3600; 0 turns the cache off); a repeat within the TTL says "cached": true and makes no
// request. A cache failure is logged and the job goes on without it.
//
// `handle` is async: componentize-js runs the event loop until its promise settles and turns
// a rejection with a `job-error` value ({tag: 'fail' | 'retry', val}) into that error.

import { log } from 'spool:plugin/log@0.2.0';
import { report } from 'spool:plugin/progress@0.2.0';
import { get as cacheGet, set as cacheSet } from 'spool:plugin/cache@0.2.0';
import { get as configGet } from 'spool:plugin/config@0.2.0';
import { bodyText, titleOf, wordCount } from './page.js';

// Bump when the result for the same URL changes, so old cache entries are not served.
const CACHE_KEY_VERSION = 'v1';
const DEFAULT_TTL_SECONDS = 3600n;
const EXCERPT_CHARS = 200;

function fail(message) {
  return { tag: 'fail', val: message };
}

function retry(message, afterMs) {
  return { tag: 'retry', val: { message, afterMs } };
}

/** Host imports that return `result<T, string>` throw the error string on `err`. */
function errorText(e) {
  return typeof e === 'string' ? e : (e?.payload ?? String(e));
}

function ttlMs() {
  const text = configGet('ttl_seconds');
  if (text === undefined || text === null) return DEFAULT_TTL_SECONDS * 1000n;
  if (!/^\d+$/.test(text.trim())) {
    throw fail(`config \`ttl_seconds\` must be a whole number of seconds (got ${JSON.stringify(text)})`);
  }
  return BigInt(text.trim()) * 1000n;
}

/** The delay `Retry-After` asks for in milliseconds (a BigInt), or undefined. */
export function retryAfterMs(value, nowMs) {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return BigInt(text) * 1000n;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return BigInt(Math.max(0, Math.ceil(at - nowMs)));
}

function excerpt(text) {
  const trimmed = text.trim().replace(/[\u0000-\u001f\u007f]/g, ' ');
  if (trimmed === '') return '(empty body)';
  const chars = Array.from(trimmed);
  return chars.length > EXCERPT_CHARS ? `${chars.slice(0, EXCERPT_CHARS).join('')}…` : trimmed;
}

/** Throws the job error a non-2xx response calls for. */
async function checkStatus(url, response) {
  const { status } = response;
  if (status >= 200 && status < 300) return;
  const said = `GET ${url} answered ${status}: ${excerpt(await response.text())}`;
  if (status === 429 || status === 503) {
    throw retry(said, retryAfterMs(response.headers.get('retry-after'), Date.now()));
  }
  if (status >= 500 && status < 600) throw retry(said, undefined);
  if (status >= 300 && status < 400) {
    const to = response.headers.get('location');
    throw fail(`${said} (a redirect${to ? ` to ${to}` : ''}: request the final URL instead)`);
  }
  throw fail(said);
}

export async function handle(job) {
  let payload;
  try {
    payload = JSON.parse(job.payload);
  } catch (e) {
    throw fail(`the payload is not JSON: ${e}`);
  }
  const url = payload?.url;
  if (typeof url !== 'string' || !/^https?:\/\/[^\s/?#]+/i.test(url)) {
    throw fail('the payload needs an http(s) `url`, such as {"url": "https://example.com/"}');
  }
  const ttl = ttlMs();
  const key = `title:${CACHE_KEY_VERSION}:${url}`;

  if (ttl > 0n) {
    try {
      const hit = cacheGet(key);
      if (hit !== undefined && hit !== null) {
        log('info', `cache hit for ${url}`);
        return JSON.stringify({ ...JSON.parse(hit), cached: true });
      }
    } catch (e) {
      log('warn', `cache unavailable, fetching anyway: ${errorText(e)}`);
    }
  }

  report(10, `fetching ${url}`);
  let response;
  try {
    response = await fetch(url, { headers: { accept: 'text/html, text/plain;q=0.8, */*;q=0.5' } });
  } catch (e) {
    // No response: a host not in allowed_hosts, a refused or timed-out connection, a limit.
    // The engine's message does not say which (StarlingMonkey reports every wasi:http error
    // code as a NetworkError); the daemon's line in the job's log does.
    throw retry(
      `GET ${url} failed: ${e?.message ?? e} (no response; the job's log has the daemon's reason, ` +
        'such as a host not in allowed_hosts)',
      undefined,
    );
  }
  await checkStatus(url, response);
  report(60, 'reading the page');
  const text = await response.text();
  const isHtml = /html/i.test(response.headers.get('content-type') ?? 'text/html');
  const result = {
    url,
    status: response.status,
    title: isHtml ? titleOf(text) : null,
    words: wordCount(isHtml ? bodyText(text) : text),
  };

  if (ttl > 0n) {
    try {
      cacheSet(key, JSON.stringify(result), ttl);
    } catch (e) {
      log('warn', `could not cache the result: ${errorText(e)}`);
    }
  }
  report(100, 'done');
  log('info', `${url}: ${result.words} words, title ${JSON.stringify(result.title)}`);
  return JSON.stringify({ ...result, cached: false });
}
