#!/usr/bin/env bash
# Spool and BullMQ side by side on this machine, in one run: one private redis-server (no
# persistence) on a free loopback port, BullMQ's own worker with a no-op processor
# (scripts/compare/bullmq.mjs, versions pinned in scripts/compare/package.json) and
# `spool bench` with the `echo` plugin, interleaved round by round. Prints every figure, the
# median of each over the rounds, and Spool / BullMQ.
#
#   scripts/compare-bullmq.sh [--jobs N] [--rounds R] [--latency-jobs N] [--workers N]
#
# Scenarios (jobs/s unless noted):
#   redis_us   Redis CPU (user + system) per job over the drain run, in microseconds
#   drain      a backlog of N jobs drained (BullMQ at concurrency 100; Spool: `bench --drain`)
#   http       Spool's daemon fed N jobs over its HTTP API in batches of 1000 while it runs them,
#              first POST to last completion (scripts/compare/http_e2e.py), against BullMQ's
#              drain of the same round
#   burst      N jobs added in batches of 1000 while workers run, first add to last completion
#   bulk       N jobs added in batches of 1000 into an idle queue
#   single     N jobs added one awaited call at a time (Spool: while its workers drain them)
#   latency    add -> completed at 500 jobs/s, p50 and p99 in ms
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=50000
rounds=3
latency_jobs=5000
workers=""
while [ $# -gt 0 ]; do
    case "$1" in
        --jobs) jobs="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --latency-jobs) latency_jobs="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "compare-bullmq: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

need() { command -v "$1" >/dev/null 2>&1 || { echo "compare-bullmq: $1 is missing; run scripts/setup.sh first" >&2; exit 1; }; }
need node
need npm
need redis-server
need redis-cli
need python3

echo "==> building spool (release) and the echo plugin" >&2
cargo build --release -p spool-host --bin spool >&2
[ -f target/plugins/echo.wasm ] || scripts/build-plugins.sh target/plugins >&2
spool=target/release/spool

echo "==> installing BullMQ (scripts/compare/package-lock.json)" >&2
(cd scripts/compare && npm ci --no-audit --no-fund --loglevel=error >&2)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis_dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$redis_dir" \
    --logfile "$redis_dir/redis.log" --daemonize no &
redis_pid=$!
cleanup() { kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; rm -rf "$redis_dir"; }
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$port" ping >/dev/null

results=$(mktemp)
worker_flag=()
[ -n "$workers" ] && worker_flag=(--workers "$workers")

# record SCENARIO SIDE VALUE
record() { printf '%s %s %s\n' "$1" "$2" "$3" >> "$results"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); v=d
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }
fresh() { redis-cli -p "$port" flushall >/dev/null; }
# Redis CPU (user + system) in microseconds so far.
redis_cpu() { redis-cli -p "$port" info cpu | python3 -c 'import sys
d=dict(l.strip().split(":",1) for l in sys.stdin if ":" in l)
print(round((float(d["used_cpu_user"])+float(d["used_cpu_sys"]))*1e6))'; }
# per_job SCENARIO SIDE CPU_BEFORE JOBS: Redis CPU per job since CPU_BEFORE.
per_job() { record "$1" "$2" "$(( ($(redis_cpu) - $3) / $4 ))"; }
bull() { REDIS_PORT=$port node scripts/compare/bullmq.mjs "$@"; }
spool_bench() { SPOOL_LOG=warn "$spool" bench --json --storage "redis://127.0.0.1:$port" --plugins target/plugins "${worker_flag[@]}" "$@"; }

echo "==> $rounds rounds, $jobs jobs each ($latency_jobs for latency); load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq "$rounds"); do
    echo "--- round $r" >&2
    fresh; cpu=$(redis_cpu); out=$(bull drain "$jobs" 100)
    bull_drain=$(field jobs_per_second <<<"$out")
    record drain bullmq "$bull_drain"; per_job redis_us bullmq "$cpu" "$jobs"
    fresh; cpu=$(redis_cpu); out=$(spool_bench --drain --jobs "$jobs")
    record drain spool "$(field jobs_per_second <<<"$out")"; per_job redis_us spool "$cpu" "$jobs"
    record bulk spool "$(field enqueue_per_second <<<"$out")"
    fresh; out=$(python3 scripts/compare/http_e2e.py --spool "$spool" --redis-port "$port" --jobs "$jobs")
    record http spool "$(field jobs_per_second <<<"$out")"; record http bullmq "$bull_drain"
    fresh; out=$(bull bulk "$jobs"); record bulk bullmq "$(field jobs_per_second <<<"$out")"
    fresh; out=$(bull burst "$jobs" 100); record burst bullmq "$(field jobs_per_second <<<"$out")"
    fresh; out=$(spool_bench --jobs "$jobs"); record burst spool "$(field jobs_per_second <<<"$out")"
    fresh; out=$(bull enqueue "$latency_jobs"); record single bullmq "$(field jobs_per_second <<<"$out")"
    fresh; out=$(spool_bench --jobs "$latency_jobs" --rate 1000000000)
    record single spool "$(field enqueue_per_second <<<"$out")"
    fresh; out=$(bull latency "$latency_jobs" 500 100)
    record p50_ms bullmq "$(field p50_ms <<<"$out")"; record p99_ms bullmq "$(field p99_ms <<<"$out")"
    fresh; out=$(spool_bench --jobs "$latency_jobs" --rate 500)
    record p50_ms spool "$(field enqueue_to_done.p50_ms <<<"$out")"
    record p99_ms spool "$(field enqueue_to_done.p99_ms <<<"$out")"
done

python3 - "$results" "$rounds" "$jobs" <<'EOF'
import statistics, sys
from collections import defaultdict
path, rounds, jobs = sys.argv[1], sys.argv[2], sys.argv[3]
runs = defaultdict(list)
for line in open(path):
    scenario, side, value = line.split()
    runs[(scenario, side)].append(float(value))
print(f"Spool vs BullMQ, {rounds} interleaved rounds, {jobs} jobs per throughput run, one private Redis")
print(f"{'scenario':<18}{'BullMQ (median)':>16}{'Spool (median)':>16}{'Spool/BullMQ':>14}   every round (BullMQ | Spool)")
names = {"redis_us": "Redis CPU us/job", "drain": "drain jobs/s", "http": "HTTP e2e jobs/s",
         "burst": "burst jobs/s", "bulk": "bulk add jobs/s",
         "single": "single add jobs/s", "p50_ms": "p50 ms at 500/s", "p99_ms": "p99 ms at 500/s"}
for key, label in names.items():
    b, s = runs[(key, "bullmq")], runs[(key, "spool")]
    if not b or not s:
        continue
    mb, ms = statistics.median(b), statistics.median(s)
    # For latency and Redis CPU, lower is better: the ratio says how many times less Spool
    # needs.
    lower_better = key.endswith("_ms") or key == "redis_us"
    ratio = mb / ms if lower_better else ms / mb
    fmt = (lambda v: f"{v:.2f}") if key.endswith("_ms") else (lambda v: f"{v:,.0f}")
    print(f"{label:<18}{fmt(mb):>16}{fmt(ms):>16}{ratio:>13.2f}x   "
          f"{' '.join(fmt(v) for v in b)} | {' '.join(fmt(v) for v in s)}")
print("(latency and Redis CPU: the ratio is BullMQ / Spool, above 1 means Spool needs less;")
print(" Redis CPU per job is measured over the drain: enqueue, claim and completion together;")
print(" HTTP e2e: Spool's daemon fed over HTTP, against BullMQ's drain of the same round)")
EOF
rm -f "$results"
