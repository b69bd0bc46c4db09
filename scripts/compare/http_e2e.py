#!/usr/bin/env python3
"""Spool's HTTP end-to-end scenario of scripts/compare-bullmq.sh: a `spool daemon` (release
build, only the `echo` plugin) on the given Redis, N jobs POSTed to /api/v1/jobs/batch in
batches of 1,000 while its workers run, timed from the first POST until /api/v1/stats counts
all N completed. Prints one JSON object on stdout. Standard library only.

    http_e2e.py --spool PATH --redis-port N --jobs N [--plugin PATH]
"""
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request

BATCH = 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, body=None):
    req = urllib.request.Request(url, data=body, method="POST" if body else "GET",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spool", required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--jobs", type=int, required=True)
    ap.add_argument("--plugin", default="target/plugins/echo.wasm")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="spool-http-e2e-")
    os.mkdir(os.path.join(work, "plugins"))
    shutil.copy(a.plugin, os.path.join(work, "plugins", "echo.wasm"))
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    daemon = subprocess.Popen(
        [os.path.abspath(a.spool), "daemon", "--storage", f"redis://127.0.0.1:{a.redis_port}",
         "--plugins", "plugins", "--listen", f"127.0.0.1:{port}"],
        cwd=work, env={**os.environ, "SPOOL_LOG": "warn"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
                sys.exit("http_e2e: the daemon did not start")
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
            if time.time() - start > 600:
                sys.exit(f"http_e2e: jobs did not complete: {counts}")
            time.sleep(0.02)
        seconds = time.time() - start
        print(json.dumps({"jobs": a.jobs, "seconds": seconds, "jobs_per_second": a.jobs / seconds}))
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
