/**
 * Durable-runs benchmark (issue: Postgres journal, leases, dispatcher, worker).
 *
 *  W1 fan-out: a parent starts N children at once (N = 100 and 1,000); each runs one trivial activity (input * 2);
 *     the parent awaits all and returns the sum. Wall time from start to result, and children/s.
 *  W2 sequential: a parent runs 200 children one after another; mean ms per child.
 *
 * Each is also printed against floors measured in the same run on the same database: a single-row insert + commit
 * round trip, and one 1,000-row insert. Database: DATABASE_URL, else 127.0.0.1:5432, else an embedded server.
 *
 * Run: npm run bench:durable
 */
import pino from 'pino';
import { activity, all, child, defineActivity, workflow } from '../src/runtime/commands.js';
import { Client } from '../src/client/client.js';
import { Worker } from '../src/worker/worker.js';
import type { PgJournal } from '../src/journal/postgres/index.js';
import { bulkInsertFloor, insertCommitFloor, runOnFreshSchema } from './support.js';

const double = defineActivity('double', async (n: number) => n * 2);
const leaf = workflow('w_leaf', function* (n: number) {
  return yield* activity(double, n);
});
const fanout = workflow('w1_fanout', function* (n: number) {
  const xs = yield* all(Array.from({ length: n }, (_, i) => child(leaf, i)));
  return xs.reduce((a, b) => a + b, 0);
});
const sequential = workflow('w2_sequential', function* (n: number) {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += yield* child(leaf, i);
  return sum;
});

async function floors(url: string, schema: string): Promise<{ insertCommitMs: number; bulk1000Ms: number }> {
  return { insertCommitMs: await insertCommitFloor(url, schema), bulk1000Ms: await bulkInsertFloor(url, schema) };
}

async function measure(journal: PgJournal, fn: (client: Client) => Promise<void>): Promise<number> {
  const worker = new Worker({
    workflows: [fanout, sequential, leaf],
    activities: [double],
    journal,
    concurrency: 5000,
    logger: pino({ level: 'warn' }),
    pollIntervalMs: 200,
  });
  worker.start();
  const client = new Client(journal);
  const t = performance.now();
  await fn(client);
  const ms = performance.now() - t;
  await worker.shutdown();
  return ms;
}

runOnFreshSchema('durable', async ({ url, schema, journal }) => {
  const floor = await floors(url, schema);
  console.log(`skein durable benchmark — node ${process.version}, PostgreSQL at ${url.replace(/\/\/[^@]*@/, '//')}`);
  console.log(`floors: insert+commit round trip ${floor.insertCommitMs.toFixed(3)} ms; one 1,000-row insert ${floor.bulk1000Ms.toFixed(2)} ms\n`);
  let k = 0;
  // Warm-up (JIT, connection pool), not reported: a long-lived worker's steady state is what we measure. Both
  // workloads at full size, twice, so the code paths they take are compiled before the clock starts.
  for (let w = 0; w < 2; w++) {
    await measure(journal, async (c) => void (await c.result(await c.start(fanout, 1000, { workflowId: `warm-${k++}` }))));
    await measure(journal, async (c) => void (await c.result(await c.start(sequential, 200, { workflowId: `warm-${k++}` }))));
  }
  for (const n of [100, 1000]) {
    const samples: number[] = [];
    for (let rep = 0; rep < 5; rep++) {
      samples.push(
        await measure(journal, async (c) => {
          const r = await c.result<number>(await c.start(fanout, n, { workflowId: `w1-${n}-${k++}` }));
          if (r !== n * (n - 1)) throw new Error(`W1 wrong result ${r}`);
        }),
      );
    }
    const ms = samples.sort((a, b) => a - b)[2]!;
    console.log(
      `W1 fan-out N=${String(n).padEnd(5)} ${ms.toFixed(1).padStart(8)} ms   ${Math.round((n / ms) * 1000).toLocaleString('en-US').padStart(7)} children/s   ` +
        `= ${(ms / floor.insertCommitMs).toFixed(0)} x insert+commit, ${(ms / floor.bulk1000Ms).toFixed(1)} x 1,000-row insert  (median of 5)`,
    );
  }
  const n2 = 200;
  const ms2 = await measure(journal, async (c) => {
    const r = await c.result<number>(await c.start(sequential, n2, { workflowId: `w2-${k++}` }));
    if (r !== n2 * (n2 - 1)) throw new Error(`W2 wrong result ${r}`);
  });
  const per = ms2 / n2;
  console.log(`W2 sequential 200   ${ms2.toFixed(1).padStart(8)} ms   ${per.toFixed(3)} ms/child = ${(per / floor.insertCommitMs).toFixed(1)} x insert+commit`);
  console.log('\nReference (same machine class, measured elsewhere): DBOS W1 ~3 s, W2 ~4.4 ms/child; BullMQ W1 ~0.19 s, W2 ~0.66 ms/child.');
  console.log('Targets: W1 (N=1000) < 150 ms, W2 < 0.5 ms/child.');
});
