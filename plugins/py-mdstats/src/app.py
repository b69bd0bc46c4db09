"""`py-mdstats`: the Spool plugin (world `spool:plugin/handler@0.1.0`) in Python.

Payload: {"markdown": "..."}. Result: {"words": n, "headings": [{"level", "text", "id"}],
"cached": bool}: the same `words` and `headings` as the Rust `markdown` plugin gives for the
subset of Markdown described in mdstats.py (it renders no HTML).

The analysis is cached in the plugin's cache, keyed by a hash of the source, for
`cache_ttl_secs` (manifest config, default one day); a repeat says "cached": true. A cache
failure is logged and the job still succeeds.

Errors: raise `Err(JobError_Fail("message"))` or `Err(JobError_Retry(RetryInfo(message,
after_ms)))`; any other exception traps (the host records a crash and retries).
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import cache, config, log, progress
from wit_world.imports.types import Job, JobError_Fail

from mdstats import analyze, fnv1a64

# Bump when the result for the same source changes, so old cache entries are not served.
CACHE_KEY_VERSION = "v1"
DEFAULT_CACHE_TTL_SECS = 24 * 60 * 60


def fail(message: str) -> Err:
    return Err(JobError_Fail(message))


def cache_ttl_ms() -> int:
    text = config.get("cache_ttl_secs")
    if text is None:
        return DEFAULT_CACHE_TTL_SECS * 1000
    if not text.strip().isdigit():
        raise fail(f"config `cache_ttl_secs` must be a whole number of seconds (got {json.dumps(text)})")
    return int(text.strip()) * 1000


class WitWorld(wit_world.WitWorld):
    def handle(self, job: Job) -> str:
        try:
            payload = json.loads(job.payload)
        except ValueError as e:
            raise fail(f"the payload is not JSON: {e}")
        if not isinstance(payload, dict) or not isinstance(payload.get("markdown"), str):
            raise fail('the payload needs a `markdown` string, such as {"markdown": "# Title"}')
        markdown = payload["markdown"]
        key = f"mdstats:{CACHE_KEY_VERSION}:{fnv1a64(markdown)}"

        progress.report(10, "checking the cache")
        try:
            hit = cache.get(key)
            if hit is not None:
                log.log(log.Level.INFO, f"cache hit for {len(markdown)} characters of markdown")
                progress.report(100, "served from the cache")
                return json.dumps({**json.loads(hit), "cached": True}, ensure_ascii=False)
        except Err as e:
            log.log(log.Level.WARN, f"{e.value}; analysing without the cache")
        except ValueError as e:
            log.log(log.Level.WARN, f"ignoring a cache entry that is not JSON ({e})")

        progress.report(30, "analysing")
        stats = analyze(markdown)
        log.log(
            log.Level.INFO,
            f"analysed {len(markdown)} characters of markdown: "
            f"{stats['words']} words, {len(stats['headings'])} headings",
        )

        progress.report(90, "storing in the cache")
        ttl_ms = cache_ttl_ms()
        try:
            cache.set(key, json.dumps(stats, ensure_ascii=False), ttl_ms)
        except Err as e:
            log.log(log.Level.WARN, f"{e.value}; the next identical job analyses again")
        progress.report(100, "done")
        return json.dumps({**stats, "cached": False}, ensure_ascii=False)
