/**
 * W3 cascade benchmark (issue: run lifecycle).
 *
 * A 364-run tree (each run starts 3 children, depth 5: 1 + 3 + 9 + 27 + 81 + 243), every run waiting on a signal,
 * hosted by a worker. We time, from `client.cancel(root)`:
 *  - db: until every run of the tree is cancelled in the database (the cancel's one transaction committed);
 *  - actors: until the worker has stopped every actor and dropped every cached engine of the tree (it learns through
 *    the stop notification, not a poll).
 * Both are printed against the floor measured in the same run: one insert+commit round trip.
 *
 * Run: npm run bench:cascade
 */
import pino from 'pino';
import { startChild, waitForSignal, workflow, type WorkflowDef } from '../src/runtime/commands.js';
import { Client } from '../src/client/client.js';
import { Worker } from '../src/worker/worker.js';
import { insertCommitFloor, runOnFreshSchema } from './support.js';

const DEPTH = 5;
const node: WorkflowDef<number, string> = workflow('w3_node', function* (depth: number): Generator<any, string, any> {
  if (depth < DEPTH) for (let i = 0; i < 3; i++) yield* startChild(node, depth + 1, { id: `n${i}` });
  yield* waitForSignal('never');
  return 'unreachable';
});

runOnFreshSchema('w3', async ({ url, schema, journal }) => {
  const worker = new Worker({ workflows: [node], journal, logger: pino({ level: 'warn' }), pollIntervalMs: 200, concurrency: 5000 });
  try {
    const floor = await insertCommitFloor(url, schema);
    worker.start();
    const client = new Client(journal, { logger: pino({ level: 'warn' }) });
    const samples: { db: number; actors: number }[] = [];
    for (let rep = 0; rep < 3; rep++) {
      const ref = await client.start(node, 0, { workflowId: `w3-${rep}` });
      // Wait until the whole tree exists and every run is waiting on its signal.
      for (;;) {
        const { rows } = await journal.pool.query(
          `select count(*)::int n, count(*) filter (where last_seq >= 2 and lease_owner is null)::int idle from ${schema}.runs where root_run_id = $1`,
          [ref.runId],
        );
        if (rows[0].n === 364 && rows[0].idle === 364) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 100));
      const before = worker.health().cachedEngines;
      const t0 = performance.now();
      const result = await client.cancel(ref.runId, 'bench', { graceMs: 0 });
      const tDb = performance.now() - t0;
      if (result.closed.length !== 363) throw new Error(`cascade closed ${result.closed.length} descendants, expected 363`);
      // The worker drops each cancelled run's cached engine (and stops any actor) when the stop notification lands.
      while (worker.health().cachedEngines > before - 364 || worker.health().activeRuns > 0) await new Promise((r) => setImmediate(r));
      const tActors = performance.now() - t0;
      samples.push({ db: tDb, actors: tActors });
    }
    const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const dbMs = med(samples.map((s) => s.db));
    const actorMs = med(samples.map((s) => s.actors));
    console.log(`skein W3 cascade benchmark — node ${process.version}`);
    console.log(`floor: insert+commit round trip ${floor.toFixed(3)} ms`);
    console.log(`W3 cancel 364-run tree: db ${dbMs.toFixed(1)} ms (${(dbMs / floor).toFixed(0)} x floor), every actor stopped ${actorMs.toFixed(1)} ms  (median of 3)`);
    console.log('Reference: DBOS flips rows in ~14 ms but its code stops ~9.6 s later (10 s poll). Target: < 20 ms to both.');
  } finally {
    await worker.shutdown();
  }
});
