/**
 * How a worker claims due runs when more are due than it has room for (docs/operating.md, "Concurrency and
 * admission"): in batches, but never leaving free slots idle for longer than a poll interval. A real worker on the
 * memory journal, real time; each run's activity holds its slot until the test lets it go.
 */
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { activity, Client, defineActivity, MemoryJournal, Worker, workflow } from '../../src/index.js';

const silent = pino({ level: 'silent' });

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not reached in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let worker: Worker | undefined;
afterEach(async () => {
  await worker?.shutdown();
  worker = undefined;
});

describe('claiming a backlog of due runs', () => {
  it('fills slots freed by long-running runs within a poll interval, even when too few are free for a full batch', async () => {
    const started = new Set<number>();
    const gates = new Map<number, () => void>();
    const hold = defineActivity('hold', async (n: number) => {
      started.add(n);
      await new Promise<void>((release) => gates.set(n, release));
      return n;
    });
    const slow = workflow('slow', function* (n: number) {
      return yield* activity(hold, n);
    });
    const journal = new MemoryJournal();
    const client = new Client(journal, { logger: silent });
    // 60 runs due before the worker starts (no wake-ups reach it: only its poll finds them)
    const runs = [];
    for (let n = 0; n < 60; n++) runs.push(await client.start(slow, n, { workflowId: `slow-${n}` }));

    const pollIntervalMs = 200;
    worker = new Worker({ workflows: [slow], activities: [hold], journal, logger: silent, concurrency: 40, pollIntervalMs });
    worker.start();
    // The first claim takes all the room there is (a full claim: more runs are due than the worker can hold).
    await until(() => started.size === 40, 5000, '40 runs running');

    // Five runs end: five slots are free, fewer than a batch (a quarter of the concurrency). The worker waits a little
    // for more room, but no longer than a poll interval: the five free slots are taken.
    for (const n of [...started].slice(0, 5)) gates.get(n)!();
    await until(() => started.size === 45, 3 * pollIntervalMs + 2000, 'the 5 free slots used');
    expect(started.size).toBe(45);

    // Everything still completes, and no run is started twice.
    const release = setInterval(() => {
      for (const [n, go] of gates) {
        gates.delete(n);
        go();
      }
    }, 5);
    try {
      const results = await Promise.all(runs.map((r) => client.result(r, { timeoutMs: 10_000 })));
      expect(results).toEqual(Array.from({ length: 60 }, (_, n) => n));
    } finally {
      clearInterval(release);
    }
    expect(started.size).toBe(60);
  });
});
