import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { workflow, child, all, activity, defineActivity, sleep } from '../../src/runtime/commands.js';
import { MemoryJournal } from '../../src/journal/memory.js';
import { Worker } from '../../src/worker/worker.js';
import { Client } from '../../src/client/client.js';

const double = defineActivity('double', async (n: number) => n * 2);
const leaf = workflow('leaf', function* (n: number) {
  return yield* activity(double, n);
});
const fan = workflow('fan', function* (n: number) {
  const xs = yield* all(Array.from({ length: n }, (_, i) => child(leaf, i, { id: `leaf-${i}` })));
  yield* sleep(5);
  return xs.reduce((a, b) => a + b, 0);
});

describe('worker on the memory journal', () => {
  it('runs a fan-out through XState run actors', async () => {
    const journal = new MemoryJournal();
    const worker = new Worker({ workflows: [fan, leaf], activities: [double], journal, logger: pino({ level: 'silent' }), pollIntervalMs: 20 });
    worker.start();
    const client = new Client(journal);
    const ref = await client.start(fan, 100, { workflowId: 'fan-1' });
    const result = await client.result(ref, { timeoutMs: 10_000 });
    expect(result).toBe(2 * (99 * 100) / 2);
    const again = await client.start(fan, 100, { workflowId: 'fan-1' });
    expect(again).toMatchObject({ runId: ref.runId, created: false });
    const kids = await client.listChildren(ref.runId, { status: 'completed' });
    expect(kids).toHaveLength(100);
    expect(kids.map((k) => k.workflowId)).toContain('fan-1/leaf-7');
    await worker.shutdown();
    expect(worker.health().state).toBe('stopped');
  });
});
