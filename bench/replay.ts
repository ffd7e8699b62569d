/**
 * Replay benchmark (issue: core runtime).
 *
 * For histories of ~1k and ~10k events it prints:
 *  - replay throughput (events/s) of RunEngine.replay over the full journal, and the same work as a ratio against
 *    bare generator stepping of the same program (no engine at all) measured in this run;
 *  - the cost of one activation of a cached (sticky) run — deliver one activity result, advance, collect the next
 *    decision — at the end of each history, also as a ratio against one bare generator step. It should not grow
 *    with the history length.
 *
 * Run: npm run bench:replay
 */
import { activity, defineActivity, workflow, type WorkflowDef } from '../src/runtime/commands.js';
import { RunEngine } from '../src/runtime/engine.js';
import type { JournalEvent, NewEvent } from '../src/runtime/events.js';

const work = defineActivity('work', async (n: number) => n + 1);

/** A sequential program: `steps` activities, each fed the previous result. */
const seq = workflow('seq', function* (steps: number) {
  let acc = 0;
  for (let i = 0; i < steps; i++) acc = yield* activity(work, acc);
  return acc;
});

/** The same program with no engine: a generator yielding plain values, resumed directly. */
function* bare(steps: number): Generator<number, number, number> {
  let acc = 0;
  for (let i = 0; i < steps; i++) acc = yield acc;
  return acc;
}

const run = { runId: 'r_bench', workflowId: 'bench', depth: 0, queue: 'default' };

function startEvent(steps: number): JournalEvent {
  return { seq: 1, recordedAt: 0, type: 'RunStarted', payload: { workflow: 'seq', workflowId: 'bench', input: steps, depth: 0 } };
}

function completion(path: string, result: number, t: number): NewEvent {
  return { type: 'ActivityCompleted', payload: { path, result, closedAt: t, attempts: 1 } };
}

/** Builds a complete live history by running the engine, feeding each activity its result. */
function buildHistory(def: WorkflowDef, steps: number): { engine: RunEngine; events: JournalEvent[] } {
  const engine = new RunEngine(def, run);
  engine.replay([startEvent(steps)], 0);
  let out = engine.takeOutput();
  let t = 1;
  while (!engine.closed) {
    const a = out.activities[0]!;
    out = engine.activate([completion(a.path, (a.input as number) + 1, t++)], t);
  }
  return { engine, events: engine.events.slice() };
}

function timeIt(fn: () => void, minMs = 300): number {
  // Warm up, then repeat until at least minMs elapsed; returns ns per call.
  for (let i = 0; i < 3; i++) fn();
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  while (elapsed < BigInt(minMs) * 1_000_000n) {
    fn();
    n++;
    elapsed = process.hrtime.bigint() - start;
  }
  return Number(elapsed) / n;
}

function bareRun(steps: number): void {
  const g = bare(steps);
  let r = g.next();
  while (!r.done) r = g.next((r.value as number) + 1);
}

const fmt = (n: number, d = 1) => n.toLocaleString('en-US', { maximumFractionDigits: d });

console.log('skein replay benchmark — node', process.version);
console.log('history    events   replay(ms)   events/s      x bare-gen   activation(us)   x bare-step');
for (const steps of [500, 5000]) {
  const { events } = buildHistory(seq, steps);
  const replayNs = timeIt(() => {
    const e = new RunEngine(seq, run);
    e.replay(events, 0);
  });
  const bareNs = timeIt(() => bareRun(steps));
  const eventsPerSec = events.length / (replayNs / 1e9);

  // One activation of a cached run whose history is this long: the same program with K more steps to go, replayed
  // to the point where it waits on activity number `steps`, then fed K completions one activation at a time.
  const K = 2000;
  const samples: number[] = [];
  for (let rep = 0; rep < 5; rep++) {
    const e = new RunEngine(seq, run);
    e.replay([startEvent(steps + K)], 0);
    let next = e.takeOutput().activities[0]!;
    for (let i = 0; i < steps; i++) next = e.activate([completion(next.path, (next.input as number) + 1, i)], i).activities[0]!;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < K; i++) next = e.activate([completion(next.path, (next.input as number) + 1, i)], i).activities[0]!;
    samples.push(Number(process.hrtime.bigint() - t0) / K);
  }
  samples.sort((a, b) => a - b);
  const activationNs = samples[Math.floor(samples.length / 2)]!;
  const bareStepNs = bareNs / steps;
  console.log(
    `${String(steps * 2 + 2).padStart(6)}  ${String(events.length).padStart(7)}   ${fmt(replayNs / 1e6, 3).padStart(9)}   ${fmt(eventsPerSec, 0).padStart(11)}   ${fmt(replayNs / bareNs, 1).padStart(9)}x   ${fmt(activationNs / 1000, 2).padStart(12)}   ${fmt(activationNs / bareStepNs, 1).padStart(10)}x`,
  );
}
console.log('\nTarget: a 10k-event replay under 10 ms (>= 1M events/s); activation cost flat across history lengths.');
