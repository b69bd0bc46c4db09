// BullMQ's side of scripts/compare-bullmq.sh: the same scenarios `spool bench` runs, with
// BullMQ's own worker and a no-op processor, against the Redis given by REDIS_PORT. Prints one
// JSON object on stdout.
//
//   node bullmq.mjs drain    JOBS CONCURRENCY   backlog of JOBS added in bulk, then drained
//   node bullmq.mjs burst    JOBS CONCURRENCY   addBulk() while the worker runs; first add ->
//                                               last completion
//   node bullmq.mjs enqueue  JOBS               add() one at a time, awaited in turn
//   node bullmq.mjs bulk     JOBS               addBulk() in batches of 1000
//   node bullmq.mjs latency  JOBS RATE CONC     add at RATE jobs/s while a worker runs;
//                                               add -> completed percentiles
import { Queue, Worker } from "bullmq";

const [mode, jobsArg, arg2, arg3] = process.argv.slice(2);
const port = Number(process.env.REDIS_PORT);
if (!port || !mode || !jobsArg) {
  console.error("usage: REDIS_PORT=N node bullmq.mjs drain|burst|enqueue|bulk|latency JOBS [...]");
  process.exit(2);
}
const jobs = Number(jobsArg);
const connection = { host: "127.0.0.1", port, maxRetriesPerRequest: null };
const name = `compare-${mode}-${process.pid}`;
const payload = { bench: true };
const opts = { removeOnComplete: true, removeOnFail: true };

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function addBacklog(queue) {
  for (let i = 0; i < jobs; i += 1000) {
    const n = Math.min(1000, jobs - i);
    await queue.addBulk(Array.from({ length: n }, () => ({ name: "echo", data: payload, opts })));
  }
}

/// Resolves once `count` jobs completed on `worker`.
function completions(worker, count, onEach) {
  return new Promise((resolve, reject) => {
    let done = 0;
    worker.on("completed", (job) => {
      if (onEach) onEach(job);
      done += 1;
      if (done === count) resolve();
    });
    worker.on("failed", (job, err) => reject(err));
  });
}

async function main() {
  const queue = new Queue(name, { connection });
  await queue.waitUntilReady();
  let out;
  if (mode === "drain") {
    const concurrency = Number(arg2 || 100);
    await addBacklog(queue);
    const worker = new Worker(name, async () => null, { connection, concurrency, autorun: false });
    const finished = completions(worker, jobs);
    const start = performance.now();
    worker.run();
    await finished;
    const seconds = (performance.now() - start) / 1000;
    await worker.close();
    out = { mode, jobs, concurrency, seconds, jobs_per_second: jobs / seconds };
  } else if (mode === "burst") {
    const concurrency = Number(arg2 || 100);
    const worker = new Worker(name, async () => null, { connection, concurrency });
    await worker.waitUntilReady();
    const finished = completions(worker, jobs);
    const start = performance.now();
    await addBacklog(queue);
    await finished;
    const seconds = (performance.now() - start) / 1000;
    await worker.close();
    out = { mode, jobs, concurrency, seconds, jobs_per_second: jobs / seconds };
  } else if (mode === "enqueue") {
    const start = performance.now();
    for (let i = 0; i < jobs; i++) {
      await queue.add("echo", payload, opts);
    }
    const seconds = (performance.now() - start) / 1000;
    out = { mode, jobs, seconds, jobs_per_second: jobs / seconds };
  } else if (mode === "bulk") {
    const start = performance.now();
    await addBacklog(queue);
    const seconds = (performance.now() - start) / 1000;
    out = { mode, jobs, seconds, jobs_per_second: jobs / seconds };
  } else if (mode === "latency") {
    const rate = Number(arg2 || 500);
    const concurrency = Number(arg3 || 100);
    const added = new Map();
    const latencies = [];
    const worker = new Worker(name, async () => null, { connection, concurrency });
    await worker.waitUntilReady();
    const finished = completions(worker, jobs, (job) => {
      const at = added.get(job.id);
      if (at !== undefined) latencies.push(performance.now() - at);
    });
    const start = performance.now();
    for (let i = 0; i < jobs; i++) {
      const due = start + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      // Known before the add returns: the job may complete before it does.
      const id = `l${i}`;
      added.set(id, performance.now());
      await queue.add("echo", payload, { ...opts, jobId: id });
    }
    await finished;
    await worker.close();
    latencies.sort((a, b) => a - b);
    out = {
      mode,
      jobs,
      rate,
      p50_ms: percentile(latencies, 50),
      p99_ms: percentile(latencies, 99),
      measured: latencies.length,
    };
  } else {
    console.error(`unknown mode ${mode}`);
    process.exit(2);
  }
  await queue.obliterate({ force: true });
  await queue.close();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(`bullmq ${mode} failed: ${e.stack || e}`);
  process.exit(1);
});
