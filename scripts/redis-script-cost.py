#!/usr/bin/env python3
"""Redis's own cost of Spool's job scripts, per job, in a fixed regime: enqueue N jobs in
batches of 1000, then claim batches of C and complete each batch (the host's HGETALL of the
claimed jobs included), against the Lua in a folder (by default host/src/storage/redis/lua).

    scripts/redis-script-cost.py [--lua DIR] [--jobs N] [--claim C] [--callgrind]
                                 [--redis-server PATH]

Without --callgrind it starts a plain redis-server on a free port and prints CPU microseconds
per job (noisy on a shared machine: compare runs side by side). With --callgrind it runs
redis-server under `valgrind --tool=callgrind` and prints instructions per job, which repeat
run to run whatever else the machine does: the way to compare two versions of the scripts
(copy the old lua folder aside, pass it with --lua). Claims run one batch ahead of the
completions, as the daemon's prefetch does, so the set of running jobs never empties (an
empty one is rebuilt in Redis's small-set encoding, which costs several times more per job
than the daemon ever pays). --redis-server runs another build of Redis, e.g. one with
symbols for callgrind_annotate (the dumps stay in the folder printed at the end). Needs `pip install redis` and, for
--callgrind, valgrind. Measures only; it is not part of the test suite.
"""
import argparse, glob, os, shutil, socket, subprocess, sys, tempfile, time, uuid

try:
    import redis
except ImportError:
    sys.exit("redis-script-cost: needs the redis package: pip install redis")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lua", default=os.path.join(ROOT, "host/src/storage/redis/lua"))
    ap.add_argument("--jobs", type=int, default=3000)
    ap.add_argument("--claim", type=int, default=64)
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--redis-server", default="redis-server")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="spool-script-cost-")
    port = free_port()
    cmd = [a.redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", work]
    if a.callgrind:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + work + "/cg"] + cmd
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port)
        for _ in range(300):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        cost = Meter(r, server.pid, work, a.callgrind)
        run(r, a, cost)
    finally:
        server.terminate()
        server.wait()
        if a.callgrind and a.redis_server != "redis-server":
            print("callgrind dumps: %s (one per phase of each round)" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


class Meter:
    """Redis CPU seconds, or (callgrind) instructions, spent since the last reading."""

    def __init__(self, r, pid, work, callgrind):
        self.r, self.pid, self.work, self.callgrind = r, pid, work, callgrind
        self.last = self.total()

    def total(self):
        if not self.callgrind:
            i = self.r.info("cpu")
            return i["used_cpu_user"] + i["used_cpu_sys"]
        before = set(glob.glob(self.work + "/cg.*"))
        subprocess.run(["callgrind_control", "-d", str(self.pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        self.r.ping()
        for _ in range(400):
            new = set(glob.glob(self.work + "/cg.*")) - before
            if new:
                for line in open(new.pop()):
                    if line.startswith(("summary:", "totals:")):
                        self.acc = getattr(self, "acc", 0) + int(line.split()[1])
                        return self.acc
            time.sleep(0.05)
        sys.exit("redis-script-cost: callgrind wrote no dump")

    def take(self):
        now = self.total()
        spent, self.last = now - self.last, now
        return spent


def run(r, a, cost):
    lib = open(os.path.join(a.lua, "lib.lua")).read()

    def load(name):
        return r.script_load(lib + "\n" + open(os.path.join(a.lua, name)).read())

    enqueue, claim, complete = load("enqueue.lua"), load("claim.lua"), load("complete.lua")
    tag = "{cost%d}" % os.getpid()
    head = [1, tag + ":jobs", tag, "0", "100000"]  # KEYS[1], prefix, clock skew, max events
    ids = sorted(uuid7() for _ in range(a.jobs))
    cost.take()
    for k in range(0, a.jobs, 1000):
        args = [len(ids[k:k + 1000])]
        for i in ids[k:k + 1000]:
            args += [i, "echo", '{"bench":true}', "5", "4", "", "", "", "", "", ""]
        r.evalsha(enqueue, *head, *args)
    spent = {"enqueue": cost.take(), "claim": 0, "hgetall": 0, "complete": 0}
    done, ahead = 0, None
    while True:
        got, _reopens = r.evalsha(claim, *head, "30000", "w1", a.claim, 1, "echo", uuid.uuid4().hex)
        spent["claim"] += cost.take()
        pipe = r.pipeline(transaction=False)
        for i in got:
            pipe.hgetall(tag + ":job:" + i.decode())
        jobs = pipe.execute()
        spent["hgetall"] += cost.take()
        if ahead:
            done += complete_all(r, complete, head, ahead)
            spent["complete"] += cost.take()
        if not got:
            break
        ahead = jobs
    assert done == a.jobs, done
    unit = "instructions" if a.callgrind else "us of CPU"
    scale = 1 if a.callgrind else 1e6
    parts = "  ".join("%s %.1f" % (k, v * scale / a.jobs) for k, v in spent.items())
    total = sum(spent.values()) * scale / a.jobs
    print("%s per job: %s  total %.1f" % (unit, parts, total))


def uuid7():
    """An id of the daemon's form (UUIDv7: the time in ms, then random bits). Lua hashes a
    string from a sample of its bytes, so ids that differ only where it does not look (such
    as uuid1's, from one host within a second) would cost its string table more than the
    daemon's ids ever do."""
    ms = int(time.time() * 1000)
    h = "%012x%s" % (ms, uuid.uuid4().hex[12:])
    h = h[:12] + "7" + h[13:]
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def complete_all(r, complete, head, jobs):
    args = [len(jobs)]
    for j in jobs:
        args += [j[b"id"], j[b"lease"], '{"ok":1}', "[]", "v1", 0]
    codes = r.evalsha(complete, *head, *args)
    assert all(c == 1 for c in codes), codes
    return len(jobs)


if __name__ == "__main__":
    main()
