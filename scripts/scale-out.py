#!/usr/bin/env python3
"""Scale-out on one Redis: 1, 2 and 3 `spool daemon` processes sharing one private
redis-server (no persistence, a free loopback port). Each run pauses `echo` over the API, adds
a backlog of JOBS through `POST /api/v1/jobs/batch`, resumes it and polls `GET /api/v1/stats`
until every job is completed; it prints jobs/s and Redis CPU (user + system) per job over the
drain (claims and completions, not the adds). Daemon counts are interleaved round by round and
the medians printed at the end.

    scripts/scale-out.py [--jobs N] [--rounds R] [--spool PATH] [--plugins DIR]

Needs a release build (`cargo build --release -p spool-host`), the example plugins
(`scripts/build-plugins.sh target/plugins`) and redis-server / redis-cli on PATH.
"""
import argparse, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request, statistics

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser(description="1, 2 and 3 daemons on one Redis")
ap.add_argument("--jobs", type=int, default=50000)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--spool", default=os.path.join(root, "target", "release", "spool"))
ap.add_argument("--plugins", default=os.path.join(root, "target", "plugins"))
args = ap.parse_args()
SPOOL = os.path.abspath(args.spool)
PLUGINS_SRC = os.path.abspath(args.plugins)
N = args.jobs
ROUNDS = args.rounds
for need, hint in [(SPOOL, "cargo build --release -p spool-host"),
                   (os.path.join(PLUGINS_SRC, "echo.wasm"), "scripts/build-plugins.sh target/plugins")]:
    if not os.path.exists(need):
        sys.exit(f"scale-out: {need} is missing; run `{hint}` first")
if not shutil.which("redis-server") or not shutil.which("redis-cli"):
    sys.exit("scale-out: redis-server and redis-cli are needed; run scripts/setup.sh first")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def redis_cli(*args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True).stdout

def redis_cpu():
    d = dict(l.strip().split(":", 1) for l in redis_cli("info", "cpu").splitlines() if ":" in l)
    return float(d["used_cpu_user"]) + float(d["used_cpu_sys"])

def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")

port = free_port()
work = tempfile.mkdtemp()
plugins = os.path.join(work, "plugins"); os.mkdir(plugins)
shutil.copy(os.path.join(PLUGINS_SRC, "echo.wasm"), plugins)
redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL)
for _ in range(100):
    if redis_cli("ping").strip() == "PONG":
        break
    time.sleep(0.05)
url = f"redis://127.0.0.1:{port}"
running = []  # every daemon started, stopped at the end whatever happens
results = {1: [], 2: [], 3: []}
cpu = {1: [], 2: [], 3: []}

def start_daemons(k):
    procs, urls = [], []
    for i in range(k):
        d = os.path.join(work, f"d{i}"); os.makedirs(d, exist_ok=True)
        cfg = os.path.join(d, "spool.toml")
        with open(cfg, "w") as f:
            f.write('[retention]\ncompleted_max_count = "off"\ncompleted_max_age = "off"\n'
                    'failed_max_count = "off"\nfailed_max_age = "off"\n')
        p = subprocess.Popen([SPOOL, "daemon", "--config", cfg, "--storage", url, "--plugins", plugins, "--listen", "127.0.0.1:0"],
                             cwd=d, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                             env={**os.environ, "SPOOL_LOG": "warn"})
        while True:
            line = p.stderr.readline()
            if not line:
                raise SystemExit("scale-out: a daemon exited before it listened")
            if line.startswith("listening on "):
                urls.append(line.split()[-1]); break
        procs.append(p)
        running.append(p)
    return procs, urls

try:
    for r in range(ROUNDS):
        for k in (1, 2, 3):
            redis_cli("flushall")
            procs, urls = start_daemons(k)
            base = urls[0]
            http("POST", f"{base}/api/v1/types/echo/pause")
            for i in range(0, N, 1000):
                http("POST", f"{base}/api/v1/jobs/batch", {"jobs": [{"type": "echo", "payload": {"n": j}} for j in range(i, min(N, i + 1000))]})
            c0 = redis_cpu(); t0 = time.monotonic()
            http("POST", f"{base}/api/v1/types/echo/resume")
            while True:
                s = http("GET", f"{base}/api/v1/stats")
                if s["totals"].get("completed", 0) >= N:
                    break
                time.sleep(0.05)
            secs = time.monotonic() - t0; c1 = redis_cpu()
            results[k].append(N / secs); cpu[k].append((c1 - c0) * 1e6 / N)
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(timeout=30)
            print(f"round {r+1} daemons {k}: {N/secs:,.0f} jobs/s, Redis {cpu[k][-1]:.0f} us/job", flush=True)
finally:
    for p in running:
        if p.poll() is None:
            p.kill()
            p.wait()
    redis.terminate(); redis.wait(); shutil.rmtree(work, ignore_errors=True)
print(f"{N} jobs per run, {ROUNDS} rounds, load average {os.getloadavg()[0]:.2f}")
for k in (1, 2, 3):
    print(f"{k} daemon(s): median {statistics.median(results[k]):,.0f} jobs/s "
          f"({' '.join(f'{v:,.0f}' for v in results[k])}); Redis CPU median {statistics.median(cpu[k]):.0f} us/job")
