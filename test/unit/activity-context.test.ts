/**
 * The activity context (docs/semantics.md, "Activities"): ids, attempt, heartbeat, and a signal aborted on timeout, on
 * the run's cancel or terminate, and on worker shutdown past its grace period. Real slow activities on a real worker
 * (memory journal, real time): each waits for its signal, as a fetch given `ctx.signal` would.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  activity,
  ActivityAbortedError,
  ActivityTimeoutError,
  CancelledError,
  Client,
  defineActivity,
  MemoryJournal,
  Worker,
  workflow,
  WorkflowFailedError,
  type ActivityContext,
  type ActivityDef,
  type WorkflowDef,
} from '../../src/index.js';
import { activityIdOf } from '../../src/runtime/activities.js';
import { createTestEnv } from '../../src/testing/index.js';

const silent = pino({ level: 'silent' });

/** Waits until `ctx.signal` aborts (or `ms` pass): a stand-in for a fetch or a query given the signal. */
function slowWork(ctx: ActivityContext, ms = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => resolve('finished'), ms);
    ctx.signal.addEventListener('abort', () => {
      clearTimeout(t);
      reject(ctx.signal.reason);
    });
  });
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

type Seen = { attempt: number; activityId: string; runId: string; workflowId: string; details: unknown; aborted?: unknown; at: number };

let workers: Worker[] = [];
afterEach(async () => {
  await Promise.all(workers.map((w) => w.shutdown()));
  workers = [];
});

function setup(defs: { workflows: WorkflowDef[]; activities: ActivityDef[] }, opts: { shutdownGraceMs?: number } = {}) {
  const journal = new MemoryJournal();
  const worker = new Worker({ ...defs, journal, logger: silent, pollIntervalMs: 10, ...opts });
  workers.push(worker);
  worker.start();
  return { journal, worker, client: new Client(journal) };
}

describe('activity context', () => {
  it('gives ids, the attempt and the run-bound logger; activityId is stable across retries; heartbeat details reach the next attempt', async () => {
    const seen: Seen[] = [];
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(JSON.parse(String(chunk)));
        done();
      },
    });
    const flaky = defineActivity(
      'flaky',
      async (n: number, ctx) => {
        seen.push({ attempt: ctx.attempt, activityId: ctx.activityId, runId: ctx.runId, workflowId: ctx.workflowId, details: ctx.heartbeatDetails, at: Date.now() });
        ctx.log.info({ n }, 'working');
        ctx.heartbeat({ processed: ctx.attempt * 10 });
        if (ctx.attempt < 3) throw new Error(`transient ${ctx.attempt}`);
        return { n, key: ctx.activityId };
      },
      { retry: { initialIntervalMs: 1, maximumAttempts: 3 } },
    );
    const twice = workflow('twice', function* (n: number) {
      const a = yield* activity(flaky, n);
      const b = yield* activity(flaky, n + 1);
      return [a.key, b.key];
    });
    const journal = new MemoryJournal();
    const worker = new Worker({ workflows: [twice], activities: [flaky], journal, logger: pino({ level: 'info' }, sink), pollIntervalMs: 10 });
    workers.push(worker);
    worker.start();
    const client = new Client(journal);
    const ref = await client.start(twice, 1, { workflowId: 'twice-1' });
    const [k1, k2] = await client.result(ref, { timeoutMs: 10_000 });

    expect(seen.map((s) => s.attempt)).toEqual([1, 2, 3, 1, 2, 3]);
    expect(new Set(seen.slice(0, 3).map((s) => s.activityId))).toEqual(new Set([k1]));
    expect(new Set(seen.slice(3).map((s) => s.activityId))).toEqual(new Set([k2]));
    expect(k1).not.toBe(k2); // one key per call, not per activity name
    expect(k1).toMatch(/^a_[\w-]{22}$/);
    expect(seen.every((s) => s.runId === ref.runId && s.workflowId === 'twice-1')).toBe(true);
    // The last heartbeat details of the previous attempt, undefined for the first.
    expect(seen.slice(0, 3).map((s) => s.details)).toEqual([undefined, { processed: 10 }, { processed: 20 }]);
    expect(seen[3]!.details).toBeUndefined(); // another call starts afresh
    // Every line the activity logs says which run, call and attempt it is about.
    const working = lines.filter((l) => l.msg === 'working');
    expect(working).toHaveLength(6);
    expect(working[0]).toMatchObject({ runId: ref.runId, workflowId: 'twice-1', activity: 'flaky', activityId: k1, attempt: 1, n: 1 });

    // Derived from the run id and the call path, not random: the key of that call, wherever it runs.
    expect(k1).toBe(activityIdOf(ref.runId, '0'));
    expect(k2).toBe(activityIdOf(ref.runId, '1'));
    // The test environment gives the same context.
    const env = createTestEnv({ workflows: [twice], activities: [flaky] });
    seen.length = 0;
    const envRef = await env.start(twice, 1, { workflowId: 'twice-1' });
    expect(await env.result(envRef)).toEqual([activityIdOf(envRef.runId, '0'), activityIdOf(envRef.runId, '1')]);
    expect(seen.map((s) => s.attempt)).toEqual([1, 2, 3, 1, 2, 3]);
    expect(seen[2]).toMatchObject({ runId: envRef.runId, workflowId: 'twice-1', details: { processed: 20 } });
  });

  it('aborts an attempt at its timeout (ActivityTimeoutError) and retries; heartbeats renew the timeout', async () => {
    const aborts: unknown[] = [];
    const slow = defineActivity(
      'slow',
      async (_: null, ctx) => {
        if (ctx.attempt === 1) {
          try {
            return await slowWork(ctx);
          } catch (err) {
            aborts.push(err);
            throw err;
          }
        }
        return `attempt ${ctx.attempt}`;
      },
      { timeoutMs: 100, retry: { initialIntervalMs: 1 } },
    );
    // Runs 400 ms with a 100 ms timeout, heartbeating every 30 ms: never timed out. (The context destructured, as
    // users write it: heartbeat and signal work detached from it.)
    const beating = defineActivity(
      'beating',
      async (_: null, { heartbeat, signal, attempt }) => {
        for (let i = 0; i < 13; i++) {
          await new Promise((r) => setTimeout(r, 30));
          heartbeat(i);
        }
        return { attempt, aborted: signal.aborted };
      },
      { timeoutMs: 100 },
    );
    const wf = workflow('timeouts', function* () {
      return [yield* activity(slow, null), yield* activity(beating, null)] as const;
    });
    const { client } = setup({ workflows: [wf], activities: [slow, beating] });
    const t0 = Date.now();
    const ref = await client.start(wf, null);
    expect(await client.result(ref, { timeoutMs: 10_000 })).toEqual(['attempt 2', { attempt: 1, aborted: false }]);
    expect(aborts).toHaveLength(1);
    expect(aborts[0]).toBeInstanceOf(ActivityTimeoutError);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("aborts a running activity when its run is cancelled (CancelledError with the cancel's reason); cleanup activities still run", async () => {
    const starts: Seen[] = [];
    const hang = defineActivity('hang', async (_: null, ctx) => {
      const me: Seen = { attempt: ctx.attempt, activityId: ctx.activityId, runId: ctx.runId, workflowId: ctx.workflowId, details: null, at: Date.now() };
      starts.push(me);
      try {
        return await slowWork(ctx);
      } catch (err) {
        me.aborted = err;
        throw err;
      }
    });
    const cleanup = defineActivity('cleanup', async (_: null, ctx) => ({ aborted: ctx.signal.aborted }));
    let cleaned: unknown;
    const wf = workflow('cancellable', function* () {
      try {
        return yield* activity(hang, null);
      } catch (err) {
        if (err instanceof CancelledError) cleaned = yield* activity(cleanup, null);
        throw err;
      }
    });
    const { client } = setup({ workflows: [wf], activities: [hang, cleanup] });
    const ref = await client.start(wf, null);
    await until(() => starts.length > 0);
    const t0 = Date.now();
    await client.cancel(ref.runId, 'customer left', { graceMs: 10_000 });
    const err = await client.result(ref, { timeoutMs: 10_000 }).catch((e) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(err.status).toBe('cancelled');
    expect(Date.now() - t0).toBeLessThan(5000); // not the activity's 30 s
    expect(cleaned).toEqual({ aborted: false });
    // Every start of `hang` (the worker may restart it once when it takes the run back) was aborted, with the reason.
    await until(() => starts.every((s) => s.aborted !== undefined));
    for (const s of starts) {
      expect(s.aborted).toBeInstanceOf(CancelledError);
      expect((s.aborted as CancelledError).reason).toBe('customer left');
    }
  });

  it('aborts a running activity when its run is terminated, or cancelled without grace', async () => {
    for (const how of ['terminate', 'cancel-now'] as const) {
      const starts: Seen[] = [];
      const hang = defineActivity('hang', async (_: null, ctx) => {
        const me: Seen = { attempt: ctx.attempt, activityId: ctx.activityId, runId: ctx.runId, workflowId: ctx.workflowId, details: null, at: Date.now() };
        starts.push(me);
        return slowWork(ctx).catch((err) => {
          me.aborted = err;
          throw err;
        });
      });
      const wf = workflow('hanging', function* () {
        return yield* activity(hang, null);
      });
      const { client, worker } = setup({ workflows: [wf], activities: [hang] });
      const ref = await client.start(wf, null);
      await until(() => starts.length === 1);
      if (how === 'terminate') await client.terminate(ref.runId, 'operator');
      else await client.cancel(ref.runId, 'now', { graceMs: 0 });
      await until(() => starts[0]!.aborted !== undefined);
      expect(starts[0]!.aborted).toBeInstanceOf(ActivityAbortedError);
      expect((starts[0]!.aborted as Error).message).toContain('closed from outside');
      await worker.idle();
      expect(starts).toHaveLength(1);
    }
  });

  it('aborts activities still running when the worker shuts down past its grace period; quick ones finish', async () => {
    const aborted: unknown[] = [];
    let started = 0;
    const hang = defineActivity('hang', async (_: null, ctx) => {
      started++;
      return slowWork(ctx).catch((err) => {
        aborted.push(err);
        throw err;
      });
    });
    const wf = workflow('long', function* () {
      return yield* activity(hang, null);
    });
    const { client, worker, journal } = setup({ workflows: [wf], activities: [hang] }, { shutdownGraceMs: 150 });
    const ref = await client.start(wf, null);
    await until(() => started === 1);
    const t0 = Date.now();
    await worker.shutdown();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(aborted).toHaveLength(1);
    expect(aborted[0]).toBeInstanceOf(ActivityAbortedError);
    expect((aborted[0] as Error).message).toContain('worker shut down');
    // Nothing was journaled for it: the run is open, released, and the next worker runs the activity again.
    const run = await journal.getRun(ref.runId);
    expect(run).toMatchObject({ status: 'running', leaseOwner: null });
    expect((await client.history(ref.runId)).events.some((e) => e.type === 'ActivityFailed')).toBe(false);
  });

  it('an activity that ignores its signal cannot hold up its run: the timeout still fails the attempt', async () => {
    const stubborn = defineActivity(
      'stubborn',
      async () => {
        await new Promise((r) => setTimeout(r, 400));
        return 'late';
      },
      { timeoutMs: 50, retry: { maximumAttempts: 1 } },
    );
    const wf = workflow('stubborn', function* () {
      return yield* activity(stubborn, null);
    });
    const { client } = setup({ workflows: [wf], activities: [stubborn] });
    const err = await client.result(await client.start(wf, null), { timeoutMs: 5000 }).catch((e) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(String(err.cause?.message)).toContain('did not finish within 50 ms');
  });
});
