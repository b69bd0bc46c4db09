"""`{{name}}`: a Spool job handler in Python (standard library only: the component carries
its own CPython; packages that are pure Python can be added to src/ too).

Payload: {"name": "ada"}. Result: {"greeting": "hello, ada", "times_greeted": 1}.
It shows the host imports: log, progress, cache (a counter per name) and config (`greeting`
from {{name}}.toml), and the two kinds of error: a bad payload fails the job for good; a cache
outage asks for a retry.

Errors: raise `Err(JobError_Fail("message"))` or `Err(JobError_Retry(RetryInfo("message",
after_ms)))`. Any other exception traps: the host records a crash (with the traceback in the
job's logs) and the retry policy applies. Host imports that return `result<_, string>` raise
`Err` with the error string in `.value`.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import cache, config, log, progress
# Contract 0.2.0's world has two `types` interfaces: Spool's is `spool_plugin_types`, wasi:http's
# `wasi_http_types` (see spool_http.py for outbound requests).
from wit_world.imports.spool_plugin_types import Job, JobError_Fail, JobError_Retry, RetryInfo


class WitWorld(wit_world.WitWorld):
    def handle(self, job: Job) -> str:
        payload = json.loads(job.payload)
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            raise Err(JobError_Fail('the payload needs a `name` string, such as {"name": "ada"}'))
        name = payload["name"]
        log.log(log.Level.INFO, f"greeting {name} (attempt {job.attempt})")
        progress.report(50, "counting")

        try:
            times_greeted = cache.increment(f"greeted:{name}", 1, None)
        except Err as e:
            raise Err(JobError_Retry(RetryInfo(f"the cache is unavailable: {e.value}", 5000)))
        greeting = config.get("greeting") or "hello"

        progress.report(100, "done")
        return json.dumps({"greeting": f"{greeting}, {name}", "times_greeted": times_greeted})
