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

import { log } from 'spool:plugin/log@0.1.0';
import { report } from 'spool:plugin/progress@0.1.0';
import { increment } from 'spool:plugin/cache@0.1.0';
import { get as configGet } from 'spool:plugin/config@0.1.0';

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
