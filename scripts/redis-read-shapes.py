#!/usr/bin/env python3
"""Redis's cost of reading claimed jobs back, per job, for several ways of storing and reading
a job: the question a change of the Redis layout (a job as one value instead of a hash) has to
answer first.

    scripts/redis-read-shapes.py [--jobs N] [--rounds R]

Runs redis-server under `valgrind --tool=callgrind` once per shape (and once without reads, the
baseline), fills N jobs shaped like Spool's running jobs (16 fields) both as hashes and as
one JSON string each, reads all N R times in that shape, and prints Redis's instructions per
job read (the run minus the baseline, divided by N x R). Instruction counts repeat run to run
whatever else the machine does. Shapes:

    pipe_hgetall   one HGETALL per job, pipelined (what the host does after a claim today)
    lua_hgetall    the same HGETALLs inside one script, returned as a table
    pipe_get       one GET per job (the job as one JSON string), pipelined
    mget           one MGET of all N
    lua_get        the GETs inside one script

Needs `pip install redis` and valgrind. Measures only; it is not part of the test suite.
"""
import argparse, json, os, socket, subprocess, sys, tempfile, time

try:
    import redis
except ImportError:
    sys.exit("redis-read-shapes: needs the redis package: pip install redis")

JOB = {
    "id": "01JABCDEF0123456789XYZ", "type": "echo", "payload": '{"bench":true}',
    "priority": "5", "status": "running", "max_attempts": "3", "run_at": "1733550000000",
    "created_at": "1733550000000",
    "backoff": '{"kind":"exponential","base_ms":1000,"max_ms":3600000}',
    "timeout_ms": "30000", "attempt": "1", "started_at": "1733550000123",
    "lease": "abcdef0123456789abcdef0123456789-17", "worker": "host-1234",
    "lease_expires_at": "1733550030123", "plugin_version": "sha256:0123456789abcdef",
}
SHAPES = ["pipe_hgetall", "lua_hgetall", "pipe_get", "mget", "lua_get"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port):
    deadline = time.time() + 60
    while True:
        try:
            r = redis.Redis(port=port)
            r.ping()
            return r
        except redis.exceptions.ConnectionError:
            if time.time() > deadline:
                sys.exit(f"redis-read-shapes: redis-server on port {port} did not answer in 60 s")
            time.sleep(0.1)


def instructions(out):
    with open(out) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    sys.exit(f"redis-read-shapes: no instruction total in {out}")


def run(shape, jobs, rounds, work):
    port = free_port()
    out = os.path.join(work, f"callgrind.{shape}.out")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "redis-server",
         "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = connect(port)
        fill = r.pipeline(transaction=False)
        for i in range(jobs):
            fill.hset(f"j:{i}", mapping=JOB)
            fill.set(f"v:{i}", json.dumps(JOB))
        fill.execute()
        hashes = [f"j:{i}" for i in range(jobs)]
        values = [f"v:{i}" for i in range(jobs)]
        lua_hgetall = r.register_script(
            "local o = {} for i = 1, #KEYS do o[i] = redis.call('HGETALL', KEYS[i]) end return o")
        lua_get = r.register_script(
            "local o = {} for i = 1, #KEYS do o[i] = redis.call('GET', KEYS[i]) end return o")
        for _ in range(rounds if shape != "baseline" else 0):
            if shape in ("pipe_hgetall", "pipe_get"):
                p = r.pipeline(transaction=False)
                for k in (hashes if shape == "pipe_hgetall" else values):
                    p.hgetall(k) if shape == "pipe_hgetall" else p.get(k)
                p.execute()
            elif shape == "lua_hgetall":
                lua_hgetall(keys=hashes)
            elif shape == "mget":
                r.mget(values)
            elif shape == "lua_get":
                lua_get(keys=values)
        r.shutdown(nosave=True)
    except redis.exceptions.ConnectionError:
        pass  # the shutdown closes the connection
    finally:
        server.wait(timeout=120)
    return instructions(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=40)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="spool-read-shapes-")
    base = run("baseline", a.jobs, a.rounds, work)
    print(f"instructions per job read ({a.jobs} jobs x {a.rounds} rounds, callgrind):")
    for shape in SHAPES:
        per_job = (run(shape, a.jobs, a.rounds, work) - base) / (a.jobs * a.rounds)
        print(f"  {shape:14s} {per_job:10.0f}")


if __name__ == "__main__":
    main()
