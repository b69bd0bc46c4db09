// `{{name}}`: a Spool job handler in JavaScript (ES module; no Node APIs, no npm packages at
// run time: the code runs inside the component, in SpiderMonkey).
//
// Payload: {"name": "ada"}. Result: {"greeting": "hello, ada", "times_greeted": 1}.
// It shows the host imports: log, progress, cache (a counter per name) and config (`greeting`
// from {{name}}.toml), and the two kinds of error: a bad payload fails the job for good; a
// cache outage asks for a retry.
//
// Errors: throw a `job-error` value, `{tag: 'fail', val: 'message'}` or
// `{tag: 'retry', val: {message: '...', afterMs: 5000n}}` (afterMs is a BigInt, or undefined).
// Throwing anything else (an Error object, a bug) traps: the host records a crash and the
// retry policy applies. Host imports that return `result<_, string>` throw the error string.
// 64-bit numbers (u64, s64) are BigInts.
//
// Contract 0.2.0 also gives `fetch` (to the hosts `allowed_hosts` in {{name}}.toml lists) and
// secrets (`import { get as secret } from 'spool:plugin/secrets@0.2.0'`). `handle` may then be
// an `async function`: the engine runs until its promise settles, and a rejection with a
// job-error value is that error:
//
//   export async function handle(job) {
//     let response;
//     try {
//       response = await fetch('https://api.example.com/greet', { method: 'POST', body: job.payload });
//     } catch (e) { // no response: host not allowed, refused, timed out, a limit
//       throw { tag: 'retry', val: { message: `${e.message}`, afterMs: undefined } };
//     }
//     return JSON.stringify({ status: response.status });
//   }

import { log } from 'spool:plugin/log@0.2.0';
import { report } from 'spool:plugin/progress@0.2.0';
import { increment } from 'spool:plugin/cache@0.2.0';
import { get as configGet } from 'spool:plugin/config@0.2.0';

export function handle(job) {
  const payload = JSON.parse(job.payload);
  if (typeof payload?.name !== 'string') {
    throw { tag: 'fail', val: 'the payload needs a `name` string, such as {"name": "ada"}' };
  }
  log('info', `greeting ${payload.name} (attempt ${job.attempt})`);
  report(50, 'counting');

  let timesGreeted;
  try {
    timesGreeted = increment(`greeted:${payload.name}`, 1n, undefined);
  } catch (e) {
    throw { tag: 'retry', val: { message: `the cache is unavailable: ${e}`, afterMs: 5000n } };
  }
  const greeting = configGet('greeting') ?? 'hello';

  report(100, 'done');
  return JSON.stringify({ greeting: `${greeting}, ${payload.name}`, times_greeted: Number(timesGreeted) });
}
