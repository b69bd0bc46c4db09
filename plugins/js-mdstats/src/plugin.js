// `js-mdstats`: the Spool plugin (world `spool:plugin/handler@0.1.0`) in plain JavaScript.
//
// Payload: {"markdown": "..."}. Result: {"words": n, "headings": [{"level", "text", "id"}],
// "cached": bool}: the same `words` and `headings` as the Rust `markdown` plugin gives for
// the subset of Markdown described in mdstats.js (it renders no HTML).
//
// The analysis is cached in the plugin's cache, keyed by a hash of the source, for
// `cache_ttl_secs` (manifest config, default one day); a repeat says "cached": true. A cache
// failure is logged and the job still succeeds.
//
// Errors: throw a `job-error` variant value, `{tag: 'fail', val: 'message'}` or
// `{tag: 'retry', val: {message, afterMs}}`. Throwing an `Error` object traps instead.

import { log } from 'spool:plugin/log@0.1.0';
import { report } from 'spool:plugin/progress@0.1.0';
import { get as cacheGet, set as cacheSet } from 'spool:plugin/cache@0.1.0';
import { get as configGet } from 'spool:plugin/config@0.1.0';
import { analyze, fnv1a64 } from './mdstats.js';

// Bump when the result for the same source changes, so old cache entries are not served.
const CACHE_KEY_VERSION = 'v1';
const DEFAULT_CACHE_TTL_SECS = 24n * 60n * 60n;

function fail(message) {
  return { tag: 'fail', val: message };
}

/** Host imports that return `result<T, string>` throw the error string on `err`. */
function errorText(e) {
  return typeof e === 'string' ? e : (e?.payload ?? String(e));
}

function cacheTtlMs() {
  const text = configGet('cache_ttl_secs');
  if (text === undefined || text === null) return DEFAULT_CACHE_TTL_SECS * 1000n;
  if (!/^\d+$/.test(text.trim())) {
    throw fail(`config \`cache_ttl_secs\` must be a whole number of seconds (got ${JSON.stringify(text)})`);
  }
  return BigInt(text.trim()) * 1000n;
}

export function handle(job) {
  let payload;
  try {
    payload = JSON.parse(job.payload);
  } catch (e) {
    throw fail(`the payload is not JSON: ${e}`);
  }
  if (payload === null || typeof payload !== 'object' || typeof payload.markdown !== 'string') {
    throw fail('the payload needs a `markdown` string, such as {"markdown": "# Title"}');
  }
  const markdown = payload.markdown;
  const key = `mdstats:${CACHE_KEY_VERSION}:${fnv1a64(markdown)}`;

  report(10, 'checking the cache');
  try {
    const hit = cacheGet(key);
    if (hit !== undefined && hit !== null) {
      log('info', `cache hit for ${markdown.length} characters of markdown`);
      report(100, 'served from the cache');
      return JSON.stringify({ ...JSON.parse(hit), cached: true });
    }
  } catch (e) {
    log('warn', `${errorText(e)}; analysing without the cache`);
  }

  report(30, 'analysing');
  const stats = analyze(markdown);
  log('info', `analysed ${markdown.length} characters of markdown: ${stats.words} words, ${stats.headings.length} headings`);

  report(90, 'storing in the cache');
  try {
    cacheSet(key, JSON.stringify(stats), cacheTtlMs());
  } catch (e) {
    if (e?.tag === 'fail') throw e;
    log('warn', `${errorText(e)}; the next identical job analyses again`);
  }
  report(100, 'done');
  return JSON.stringify({ ...stats, cached: false });
}
