import { describe, expect, it } from 'vitest';
import { activity, all, child, defineActivity, now, random, sleep, uuid, workflow } from '../../src/runtime/commands.js';
import { ActivityFailedError, WorkflowFailedError } from '../../src/runtime/errors.js';
import { createTestEnv } from '../../src/testing/index.js';

const DAY = 24 * 60 * 60 * 1000;

const charge = defineActivity('charge', async (order: { id: string; amount: number }) => ({ charged: order.amount }));
const remind = defineActivity('remind', async (id: string) => `reminded ${id}`);

const invoice = workflow('invoice', function* (order: { id: string; amount: number }) {
  const issuedAt = yield* now();
  yield* sleep(DAY);
  const reminded = yield* activity(remind, order.id);
  yield* sleep(29 * DAY);
  const paid = yield* activity(charge, order);
  const closedAt = yield* now();
  return { reminded, paid, days: (closedAt - issuedAt) / DAY };
});

const payment = workflow('payment', function* (order: { id: string; amount: number }) {
  return yield* activity(charge, order);
});

const batch = workflow('batch', function* (ids: string[]) {
  const tag = yield* uuid();
  const r = yield* random();
  const paid = yield* all(ids.map((id) => child(payment, { id, amount: id.length }, { id: `order-${id}` })));
  return { tag, r, paid };
});

describe('createTestEnv', () => {
  it('skips a day-long sleep (and a month) instantly on the virtual clock', async () => {
    const env = createTestEnv({ workflows: [invoice], activities: [charge, remind] });
    const t0 = env.now();
    const wall = Date.now();
    const ref = await env.start(invoice, { id: 'i-1', amount: 5 });
    expect(await env.result(ref)).toEqual({ reminded: 'reminded i-1', paid: { charged: 5 }, days: 30 });
    expect(env.now() - t0).toBe(30 * DAY);
    expect(Date.now() - wall).toBeLessThan(2000);
  });

  it('advance(ms) fires only the timers that fall due, at their own time', async () => {
    const env = createTestEnv({ workflows: [invoice], activities: [charge, remind] });
    const ref = await env.start(invoice, { id: 'i-2', amount: 1 }, { workflowId: 'inv-2' });
    expect(ref).toMatchObject({ workflowId: 'inv-2', workflow: 'invoice', created: true });
    await env.runUntilIdle();
    expect((await env.describe(ref.runId)).waitKind).toBe('timer');
    await env.advance(DAY - 1);
    expect((await env.history(ref.runId)).events.some((e) => e.type === 'TimerFired')).toBe(false);
    await env.advance(DAY); // crosses the first timer, not the second
    const h = await env.history(ref.runId);
    const fired = h.events.filter((e) => e.type === 'TimerFired');
    expect(fired).toHaveLength(1);
    expect(fired[0]!.recordedAt - h.events[0]!.recordedAt).toBe(DAY);
    expect((await env.describe(ref.runId)).status).toBe('running');
    const skipped = await env.skipTime();
    expect(skipped).toBe(28 * DAY + 1); // from +2 days - 1 ms to the second timer at +30 days
    expect((await env.describe(ref.runId)).status).toBe('completed');
  });

  it('mockActivity replaces an activity for this env; result() throws WorkflowFailedError', async () => {
    const env = createTestEnv({ workflows: [payment], activities: [charge] });
    let calls = 0;
    env.mockActivity('charge', async () => {
      calls++;
      throw new Error('card declined');
    });
    const ref = await env.start(payment, { id: 'p', amount: 3 });
    const err = await env.result(ref).catch((e) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(err.message).toContain('card declined');
    expect((err.cause as Error).name).toBe(ActivityFailedError.name);
    expect(calls).toBe(3); // the default retry policy, with no real waiting between attempts

    const restore = env.mockActivity('charge', async (o: { amount: number }) => ({ charged: o.amount * 100 }));
    expect(await env.execute(payment, { id: 'q', amount: 2 })).toEqual({ charged: 200 });
    restore(); // back to the failing mock
    await expect(env.execute(payment, { id: 'r', amount: 2 })).rejects.toThrow('card declined');

    const fresh = createTestEnv({ workflows: [payment], activities: [charge] }); // mocks are per environment
    expect(await fresh.execute(payment, { id: 's', amount: 2 })).toEqual({ charged: 2 });
  });

  it('the same seed gives the same journals; another seed another schedule', async () => {
    const journals = async (seed: number | undefined) => {
      const env = createTestEnv({ workflows: [batch, payment], activities: [charge], seed, stepMs: 1 });
      const ref = await env.start(batch, ['a', 'bb', 'ccc', 'dddd']);
      await env.result(ref);
      const all = await Promise.all(env.runs().map((r) => env.history(r.runId)));
      return JSON.stringify(all);
    };
    expect(await journals(7)).toBe(await journals(7));
    expect(await journals(undefined)).toBe(await journals(undefined));
    const seeds = new Set(await Promise.all([1, 2, 3, 4, 5].map(journals)));
    expect(seeds.size).toBeGreaterThan(1);
  });

  it('describe, history and exportHistories have the Client shapes', async () => {
    const env = createTestEnv({ workflows: [batch, payment], activities: [charge] });
    const ref = await env.start(batch, ['x', 'y']);
    await env.result(ref);
    const d = await env.describe(ref.runId);
    expect(d.status).toBe('completed');
    expect(d.lineage.children.map((c) => c.workflowId).sort()).toEqual(['batch-1/order-x', 'batch-1/order-y']);
    const tree = await env.exportHistories(ref.runId);
    expect(tree.map((h) => h.workflowId)).toEqual(['batch-1', 'batch-1/order-x', 'batch-1/order-y']);
    expect(tree[0]).toMatchObject({ format: 'skein-history/1', workflow: 'batch' });
    expect(await env.client.history(ref.runId)).toEqual(tree[0]);
  });

  it('survives a crash mid-run by replay', async () => {
    const env = createTestEnv({ workflows: [batch, payment], activities: [charge] });
    const ref = await env.start(batch, ['x', 'y']);
    await env.runUntilIdle();
    env.crash();
    const out = await env.result(ref);
    expect(out.paid).toEqual([{ charged: 1 }, { charged: 1 }]);
  });

  it('refuses to start a different definition under a registered name', async () => {
    const env = createTestEnv({ workflows: [payment], activities: [charge] });
    const other = workflow('payment', function* () {
      return 'v2';
    });
    await expect(env.start(other, undefined as never)).rejects.toThrow(/registered in this environment with a different definition/);
  });

  it('with cacheCapacity 0 every activation replays, so a Math.random() workflow gets blocked', async () => {
    const flaky = workflow('flaky', function* () {
      const n = Math.random() < 0.5 ? 1 : 2;
      for (let i = 0; i < n + 4; i++) yield* activity(remind, String(i));
      return n;
    });
    let blocked = 0;
    for (let seed = 0; seed < 8; seed++) {
      const env = createTestEnv({ workflows: [flaky], activities: [remind], cacheCapacity: 0, seed });
      const err = await env.execute(flaky, undefined).catch((e) => e);
      if (err instanceof WorkflowFailedError) {
        expect(err.message).toMatch(/is blocked: NonDeterminismError/);
        blocked++;
      }
    }
    expect(blocked).toBeGreaterThan(0);
  });
});

describe('signals and cancellation in the test environment', () => {
  it('delivers a signal and lets a cancelled run compensate, in virtual time', async () => {
    const { createTestEnv } = await import('../../src/testing/index.js');
    const { workflow, waitForSignal, sleep } = await import('../../src/index.js');
    const approval = workflow('approval', function* (_: null) {
      const who = yield* waitForSignal<string>('approve', { timeout: 86_400_000 });
      return `approved by ${who}`;
    });
    const env = createTestEnv({ workflows: [approval] });
    const a = await env.start(approval, null);
    await env.runUntilIdle();
    await env.signal(a.runId, 'approve', 'ada');
    expect(await env.result(a)).toBe('approved by ada');

    const cleanup: string[] = [];
    const longJob = workflow('longJob', function* (_: null) {
      try {
        yield* sleep(86_400_000);
        return 'finished';
      } finally {
        cleanup.push('released');
      }
    });
    const env2 = createTestEnv({ workflows: [longJob] });
    const b = await env2.start(longJob, null);
    await env2.runUntilIdle();
    await env2.cancel(b.runId, 'user gave up');
    await env2.runUntilIdle();
    expect((await env2.journal.getRun(b.runId))!.status).toBe('cancelled');
    expect(cleanup).toEqual(['released']);
  });
});
