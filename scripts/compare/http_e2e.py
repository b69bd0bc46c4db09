#!/usr/bin/env python3
"""Spool's HTTP end-to-end scenario of scripts/compare-bullmq.sh: a `spool daemon` (release
build, only the `echo` plugin) on the given Redis, N jobs POSTed to /api/v1/jobs/batch in
batches of 1,000 while its workers run, timed from the first POST until /api/v1/stats counts
all N completed. Prints one JSON object on stdout. Standard library only.

    http_e2e.py --spool PATH --redis-port N --jobs N [--plugin PATH]
"""
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, time
import urllib.error, urllib.request

BATCH = 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, body=None):
    req = urllib.request.Request(url, data=body, method="POST" if body else "GET",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        sys.exit(f"http_e2e: {req.method} {url} answered {e.code}: {e.read().decode(errors='replace')}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spool", required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--jobs", type=int, required=True)
    ap.add_argument("--plugin", default="target/plugins/echo.wasm")
    a = ap.parse_args()
    if not os.path.isfile(a.plugin):
        sys.exit(f"http_e2e: no plugin at {a.plugin}: build the examples first "
                 "(scripts/build-plugins.sh target/plugins)")
    work = tempfile.mkdtemp(prefix="spool-http-e2e-")
    log = open(os.path.join(work, "daemon.log"), "w")
    os.mkdir(os.path.join(work, "plugins"))
    shutil.copy(a.plugin, os.path.join(work, "plugins", "echo.wasm"))
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    daemon = subprocess.Popen(
        [os.path.abspath(a.spool), "daemon", "--storage", f"redis://127.0.0.1:{a.redis_port}",
         "--plugins", "plugins", "--listen", f"127.0.0.1:{port}"],
        cwd=work, env={**os.environ, "SPOOL_LOG": "warn"},
        stdout=log, stderr=subprocess.STDOUT)

    def fail(why):
        log.flush()
        tail = open(log.name).read()[-2000:]
        sys.exit(f"http_e2e: {why}\n--- daemon log (last lines) ---\n{tail}")

    try:
        deadline = time.time() + 60
        while True:
            try:
                # Ready once the plugin is loaded, so its compile is not timed.
                if "echo" in json.dumps(call(base + "/plugins")["plugins"]):
                    break
            except OSError:
                pass
            if daemon.poll() is not None or time.time() > deadline:
                fail("the daemon did not start, or did not load the echo plugin, within 60 s")
            time.sleep(0.05)
        batch = json.dumps({"jobs": [{"type": "echo", "payload": {"bench": True}}] * BATCH})
        start = time.time()
        sent = 0
        while sent < a.jobs:
            n = min(BATCH, a.jobs - sent)
            body = batch if n == BATCH else json.dumps(
                {"jobs": [{"type": "echo", "payload": {"bench": True}}] * n})
            call(base + "/jobs/batch", body.encode())
            sent += n
        while True:
            counts = call(base + "/stats")["types"].get("echo", {}).get("counts", {})
            if counts.get("completed", 0) >= a.jobs:
                break
            if counts.get("failed", 0) or counts.get("retrying", 0):
                fail(f"echo jobs failed, so the run measures nothing: {counts}")
            if daemon.poll() is not None:
                fail(f"the daemon exited before the jobs completed: {counts}")
            if time.time() - start > 600:
                fail(f"the jobs did not complete within 600 s: {counts}")
            time.sleep(0.02)
        seconds = time.time() - start
        print(json.dumps({"jobs": a.jobs, "seconds": seconds, "jobs_per_second": a.jobs / seconds}))
    finally:
        daemon.terminate()
        daemon.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
