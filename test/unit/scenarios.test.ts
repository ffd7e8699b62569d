/**
 * Example-based scenarios on the deterministic Simulation: the shapes users write (batch fan-out, nested children,
 * caught child failures, mixed and nested barriers) and the errors they meet (non-determinism, bad payloads,
 * duplicate child ids).
 */
import { describe, expect, it } from 'vitest';
import {
  activity,
  all,
  allSettled,
  child,
  defineActivity,
  now,
  random,
  sleep,
  uuid,
  workflow,
  type WorkflowDef,
} from '../../src/runtime/commands.js';
import { RunEngine } from '../../src/runtime/engine.js';
import {
  ActivityFailedError,
  ApplicationError,
  ChildFailedError,
  DuplicateChildIdError,
  NonDeterminismError,
  PayloadError,
} from '../../src/runtime/errors.js';
import type { JournalEvent } from '../../src/runtime/events.js';
import { Simulation } from '../../src/testing/simulator.js';

const types = (events: JournalEvent[]) => events.map((e) => e.type);
const ofType = <T extends JournalEvent['type']>(events: JournalEvent[], type: T) =>
  events.filter((e): e is Extract<JournalEvent, { type: T }> => e.type === type);

async function runToEnd(workflows: WorkflowDef[], root: WorkflowDef, input: unknown, opts: { activities?: any[]; workflowId?: string } = {}) {
  const sim = new Simulation({ workflows, activities: opts.activities ?? [] });
  const runId = await sim.start(root, input, { workflowId: opts.workflowId ?? 'root', runId: 'root' });
  await sim.runUntilIdle();
  return { sim, runId, run: await sim.run(runId), events: await sim.history(runId) };
}

/** Replays a run's journal with a fresh engine running `def`. */
function replayWith(def: WorkflowDef, events: JournalEvent[], run = { runId: 'root', workflowId: 'root', depth: 0, queue: 'default' }) {
  const engine = new RunEngine(def, run);
  engine.replay(events, 0);
  return engine;
}

// ---- shared workflows and activities ------------------------------------------------------------------------------

const charge = defineActivity('charge', async (id: string) => `charged:${id}`);
const email = defineActivity('email', async (to: string) => ({ sent: to }));
const double = defineActivity('double', async (n: number) => n * 2);

const audit = workflow('audit', function* (x: { batch: string }) {
  return `audited ${x.batch}`;
});
const processOrder = workflow('processOrder', function* (id: string) {
  const receipt = yield* activity(charge, id);
  return { id, receipt };
});
const batchFlow = workflow('batchFlow', function* (input: { batch: string; orderIds: string[] }) {
  const audited = yield* child(audit, { batch: input.batch });
  const orders = yield* all(input.orderIds.map((id) => child(processOrder, id, { id: `order-${id}` })));
  return { audited, orders };
});

const cWf = workflow('C', function* (n: number) {
  return n * 10;
});
const bWf = workflow('B', function* (n: number) {
  return (yield* child(cWf, n + 1)) + 1;
});
const aWf = workflow('A', function* (n: number) {
  return { b: yield* child(bWf, n) };
});

const payment = workflow('payment', function* (p: { amount: number }) {
  if (p.amount > 100) throw new ApplicationError('card declined', { name: 'CardDeclined', details: { amount: p.amount } });
  return 'paid';
});
const invoice = workflow('invoice', function* (p: { amount: number }) {
  return `invoiced ${p.amount}`;
});
const checkout = workflow('checkout', function* (p: { amount: number }) {
  try {
    return { via: 'card', r: yield* child(payment, p) };
  } catch (e) {
    if (!(e instanceof ChildFailedError)) throw e;
    const r = yield* child(invoice, p);
    return { via: 'invoice', r, why: (e.cause as Error).message, causeName: (e.cause as Error).name, failedWorkflow: e.workflow };
  }
});

const echo = workflow('echo', function* (x: string) {
  return `echo:${x}`;
});
const boom = workflow('boom', function* (x: string) {
  throw new ApplicationError(`boom:${x}`, { name: 'Boom' });
});

describe('scenarios', () => {
  it('BatchFlow: an audit child, then a fan-out keyed by order id with greppable child workflow ids', async () => {
    const { sim, run } = await runToEnd([batchFlow, audit, processOrder], batchFlow, { batch: 'b7', orderIds: ['1', '2', '3'] }, {
      activities: [charge],
      workflowId: 'batch-7',
    });
    expect(run.status).toBe('completed');
    expect(run.result).toEqual({
      audited: 'audited b7',
      orders: [
        { id: '1', receipt: 'charged:1' },
        { id: '2', receipt: 'charged:2' },
        { id: '3', receipt: 'charged:3' },
      ],
    });
    const kids = await sim.journal.listChildren('root');
    expect(kids.map((k) => k.workflowId).sort()).toEqual(['batch-7/audit@0', 'batch-7/order-1', 'batch-7/order-2', 'batch-7/order-3']);
    for (const k of kids) expect(k).toMatchObject({ parentRunId: 'root', rootRunId: 'root', depth: 1, status: 'completed' });
    const scheduled = ofType(await sim.history('root'), 'ChildScheduled');
    expect(scheduled.map((e) => [e.payload.path, e.payload.id])).toEqual([
      ['0', undefined],
      ['1.0', 'order-1'],
      ['1.1', 'order-2'],
      ['1.2', 'order-3'],
    ]);
    // The fan-out of three children is one activation of the parent, and one more to collect them.
    expect(sim.activations.get('root')).toBe(3);
  });

  it('nested A -> B -> C: depths, lineage and result', async () => {
    const { sim, run } = await runToEnd([aWf, bWf, cWf], aWf, 4);
    expect(run.result).toEqual({ b: 51 });
    const runs = sim.journal.allRuns();
    const byWf = Object.fromEntries(runs.map((r) => [r.workflow, r]));
    expect(byWf.A!.depth).toBe(0);
    expect(byWf.B).toMatchObject({ depth: 1, parentRunId: byWf.A!.runId, rootRunId: 'root' });
    expect(byWf.C).toMatchObject({ depth: 2, parentRunId: byWf.B!.runId, rootRunId: 'root', workflowId: 'root/B@0/C@0' });
  });

  it('a parent catches a failing payment child (ChildFailedError with the remote cause) and takes another branch', async () => {
    const { sim, run, events } = await runToEnd([checkout, payment, invoice], checkout, { amount: 500 });
    expect(run.status).toBe('completed');
    expect(run.result).toEqual({ via: 'invoice', r: 'invoiced 500', why: 'card declined', causeName: 'CardDeclined', failedWorkflow: 'payment' });
    expect(types(events)).toEqual(['RunStarted', 'ChildScheduled', 'ChildFailed', 'FailureHandled', 'ChildScheduled', 'ChildCompleted', 'RunCompleted']);
    const [handled] = ofType(events, 'FailureHandled');
    expect(handled!.payload).toMatchObject({
      path: '0',
      error: { name: 'ChildFailedError', cause: { name: 'CardDeclined', message: 'card declined', details: { amount: 500 } } },
    });
    const pay = sim.journal.allRuns().find((r) => r.workflow === 'payment')!;
    expect(pay.status).toBe('failed');
    // The happy path journals no failure at all.
    const ok = await runToEnd([checkout, payment, invoice], checkout, { amount: 5 });
    expect(ok.run.result).toEqual({ via: 'card', r: 'paid' });
    expect(ofType(ok.events, 'FailureHandled')).toEqual([]);
  });

  it('a mixed barrier of children and activities returns the typed nested tuple', async () => {
    const wf = workflow('mixed', function* () {
      const [a, [b, c], { d }] = yield* all([child(echo, 'a'), [activity(double, 21), child(cWf, 2)], { d: activity(email, 'x@y') }]);
      return { a, b, c, d };
    });
    const { run, events } = await runToEnd([wf, echo, cWf], wf, null, { activities: [double, email] });
    expect(run.result).toEqual({ a: 'echo:a', b: 42, c: 20, d: { sent: 'x@y' } });
    expect(ofType(events, 'ChildScheduled').map((e) => e.payload.path)).toEqual(['0.0', '0.2']);
    expect(ofType(events, 'ActivityScheduled').map((e) => e.payload.path)).toEqual(['0.1', '0.3']);
  });

  it('a child-only barrier nested inside a larger one: leaf indices run across the nesting; failure and success', async () => {
    const wf = workflow('outer', function* (fail: boolean) {
      try {
        const [x, inner, { z }] = yield* all([activity(double, 1), all([child(echo, 'p'), child(fail ? boom : echo, 'q')]), { z: child(echo, 'r') }]);
        return { x, inner, z };
      } catch (e) {
        return { caught: (e as Error).name, cause: ((e as Error).cause as Error).message };
      }
    });
    const ok = await runToEnd([wf, echo, boom], wf, false, { activities: [double] });
    expect(ok.run.result).toEqual({ x: 2, inner: ['echo:p', 'echo:q'], z: 'echo:r' });
    const bad = await runToEnd([wf, echo, boom], wf, true, { activities: [double] });
    expect(bad.run.result).toEqual({ caught: 'ChildFailedError', cause: 'boom:q' });
    expect(ofType(bad.events, 'BarrierFailed').map((e) => e.payload)).toEqual([{ path: '0', leafIndex: 2, leafPath: '0.2' }]);
  });

  it('allSettled returns every outcome, in shape, without throwing', async () => {
    const wf = workflow('settle', function* () {
      const r = yield* allSettled([child(echo, 'ok'), child(boom, 'no'), { act: activity(double, 4) }]);
      const [a, b, { act }] = r;
      return {
        a,
        b: b.status === 'rejected' ? { status: b.status, name: b.reason.name, cause: (b.reason.cause as Error).message } : b,
        act,
      };
    });
    const { run, events } = await runToEnd([wf, echo, boom], wf, null, { activities: [double] });
    expect(run.result).toEqual({
      a: { status: 'fulfilled', value: 'echo:ok' },
      b: { status: 'rejected', name: 'ChildFailedError', cause: 'boom:no' },
      act: { status: 'fulfilled', value: 8 },
    });
    expect(ofType(events, 'BarrierFailed')).toEqual([]);
    expect(ofType(events, 'FailureHandled')).toEqual([]);
  });

  it('yield (untyped) works as well as yield*', async () => {
    const wf = workflow('plainYield', function* (n: number) {
      const a = yield child(cWf, n);
      const b = yield activity(double, a);
      const [c, d] = yield all([child(echo, 'e'), activity(double, 1)]);
      const t = yield now();
      yield sleep(5);
      return { a, b, c, d, t: typeof t };
    });
    const { run } = await runToEnd([wf, cWf, echo], wf, 3, { activities: [double] });
    expect(run.result).toEqual({ a: 30, b: 60, c: 'echo:e', d: 2, t: 'number' });
  });

  it('a non-JSON input to an activity (BigInt) throws a PayloadError at that yield; the run can catch it and go on', async () => {
    const wf = workflow('bigint', function* () {
      let caught = '';
      try {
        yield* activity(double, 10n as unknown as number);
      } catch (e) {
        caught = e instanceof PayloadError ? `${e.name}: ${e.message}` : `other ${String(e)}`;
      }
      return { caught, after: yield* activity(double, 2) };
    });
    const { run, events } = await runToEnd([wf], wf, null, { activities: [double] });
    expect(run.status).toBe('completed');
    const r = run.result as { caught: string; after: number };
    expect(r.caught).toMatch(/^PayloadError: input of activity 'double' cannot be journaled: .*BigInt/);
    expect(r.after).toBe(4);
    expect(ofType(events, 'ActivityScheduled').map((e) => e.payload.input)).toEqual([2]);
    expect(ofType(events, 'FailureHandled')[0]!.payload).toMatchObject({ path: '0', error: { name: 'PayloadError' } });
    // Uncaught, the same error fails the run.
    const wf2 = workflow('bigint2', function* () {
      return yield* activity(double, 1n as unknown as number);
    });
    const r2 = await runToEnd([wf2], wf2, null, { activities: [double] });
    expect(r2.run.status).toBe('failed');
    expect(r2.run.error).toMatchObject({ name: 'PayloadError' });
  });

  it('a duplicate child id fails that child() with DuplicateChildIdError, journaled as ChildStartFailed', async () => {
    const wf = workflow('dup', function* () {
      const first = yield* child(echo, '1', { id: 'same' });
      try {
        yield* child(echo, '2', { id: 'same' });
        return 'no error';
      } catch (e) {
        const d = e as DuplicateChildIdError;
        return { first, name: d.name, id: d.id, childWorkflowId: d.childWorkflowId, isDup: e instanceof DuplicateChildIdError };
      }
    });
    const { sim, run, events } = await runToEnd([wf, echo], wf, null);
    expect(run.result).toEqual({ first: 'echo:1', name: 'DuplicateChildIdError', id: 'same', childWorkflowId: 'root/same', isDup: true });
    expect(ofType(events, 'ChildStartFailed').map((e) => e.payload)).toMatchObject([{ path: '1', workflow: 'echo', error: { name: 'DuplicateChildIdError' } }]);
    expect(sim.journal.allRuns()).toHaveLength(2);
    // Replay reproduces the refusal silently.
    expect(replayWith(wf, events).takeOutput().events).toEqual([]);
  });

  it('random(), uuid() and now() replay to the recorded values, with or without the sticky cache', async () => {
    const seen: unknown[] = [];
    const wf = workflow('values', function* () {
      const r = yield* random();
      const u = yield* uuid();
      const t = yield* now();
      seen.push({ r, u, t });
      yield* sleep(100); // a second activation: without the cache, it replays the values above
      const t2 = yield* now();
      return { r, u, t, t2 };
    });
    for (const cacheCapacity of [10, 0]) {
      seen.length = 0;
      const sim = new Simulation({ workflows: [wf], cacheCapacity });
      await sim.start(wf, null, { workflowId: 'v', runId: 'v' });
      await sim.runUntilIdle();
      const run = await sim.run('v');
      const res = run.result as { r: number; u: string; t: number; t2: number };
      expect(res.r).toBeGreaterThanOrEqual(0);
      expect(res.r).toBeLessThan(1);
      expect(res.u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(res.t2).toBeGreaterThanOrEqual(res.t + 100);
      const events = await sim.history('v');
      expect(ofType(events, 'SideEffect').map((e) => e.payload.value)).toEqual([res.r, res.u, res.t, res.t2]);
      // Every execution of the body (live, and replays when uncached) saw the same values.
      expect(seen.length).toBe(cacheCapacity ? 1 : 2);
      for (const s of seen) expect(s).toEqual({ r: res.r, u: res.u, t: res.t });
      // A fresh replay, at any clock, returns them again.
      seen.length = 0;
      const engine = new RunEngine(wf, { runId: 'v', workflowId: 'v', depth: 0, queue: 'default' });
      engine.replay(events, 42);
      expect(engine.closed).toBe(true);
      expect(engine.takeOutput().events).toEqual([]);
      expect(seen).toEqual([{ r: res.r, u: res.u, t: res.t }]);
    }
  });
});

describe('non-determinism', () => {
  const v1 = workflow('order', function* (n: number) {
    const a = yield* child(echo, `n${n}`);
    yield* sleep(10);
    return a;
  });

  it('replaying with a different child workflow name raises NonDeterminismError naming the seq and both commands', async () => {
    const { events } = await runToEnd([v1, echo, cWf], v1, 1);
    const renamed = workflow('order', function* (n: number) {
      const a = yield* child(cWf, n);
      yield* sleep(10);
      return a;
    });
    let err: unknown;
    try {
      replayWith(renamed, events);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NonDeterminismError);
    const nd = err as NonDeterminismError;
    expect(nd.seq).toBe(2);
    expect(nd.journaled).toMatch(/^ChildScheduled\(path 0, workflow 'echo', input hash [0-9a-f]+\)$/);
    expect(nd.issued).toMatch(/^ChildScheduled\(path 0, workflow 'C', input hash [0-9a-f]+\)$/);
    expect(nd.message).toContain('seq 2');
    expect(nd.message).toContain(nd.journaled);
    expect(nd.message).toContain(nd.issued);
  });

  it('replaying with a different child input raises NonDeterminismError (input hash), never reusing the child', async () => {
    const { events } = await runToEnd([v1, echo], v1, 1);
    const otherInput = workflow('order', function* (n: number) {
      const a = yield* child(echo, `m${n}`);
      yield* sleep(10);
      return a;
    });
    expect(() => replayWith(otherInput, events)).toThrow(NonDeterminismError);
    try {
      replayWith(otherInput, events);
    } catch (e) {
      const nd = e as NonDeterminismError;
      expect(nd.seq).toBe(2);
      const hashes = [nd.journaled, nd.issued].map((s) => /input hash ([0-9a-f]+)/.exec(s)![1]);
      expect(hashes[0]).not.toBe(hashes[1]);
      expect(nd.journaled.replace(/input hash \w+/, '')).toBe(nd.issued.replace(/input hash \w+/, ''));
    }
    // The unchanged code replays silently.
    expect(replayWith(v1, events).takeOutput().events).toEqual([]);
  });

  it('a run whose code changed is blocked by its host (status blocked, RunBlocked journaled), not failed or retried', async () => {
    let deployed = 1; // which version of the code the "worker" runs
    const wf = workflow('deploy', function* () {
      if (deployed === 1) yield* child(echo, 'x');
      else yield* child(cWf, 1); // version 2 changed the first command
      yield* sleep(1000);
      return 'done';
    });
    const sim = new Simulation({ workflows: [wf, echo, cWf] });
    await sim.start(wf, null, { workflowId: 'd', runId: 'd' });
    // Run until the run sleeps (no timer advance): the child has run and its outcome is journaled.
    while (sim.actions().length) await sim.perform(sim.actions()[0]!);
    expect(types(await sim.history('d'))).toEqual(['RunStarted', 'ChildScheduled', 'ChildCompleted', 'TimerStarted']);
    // The worker restarts (its cached generators are gone) with the new code; the timer fires.
    sim.crash();
    deployed = 2;
    await sim.runUntilIdle();
    const run = await sim.run('d');
    expect(run.status).toBe('blocked');
    expect(run.error).toMatchObject({ name: 'NonDeterminismError' });
    const events = await sim.history('d');
    expect(types(events)).toEqual(['RunStarted', 'ChildScheduled', 'ChildCompleted', 'TimerStarted', 'RunBlocked']);
    const blocked = ofType(events, 'RunBlocked')[0]!;
    expect(blocked.payload.error.message).toMatch(/seq 2 recorded ChildScheduled\(path 0, workflow 'echo'.*issued ChildScheduled\(path 0, workflow 'C'/);
    // Blocked is not due: nothing retries it in a loop.
    expect(run.nextWakeupAt).toBeNull();
    expect(sim.actions()).toEqual([]);
  });

  it('an activity failure is thrown as ActivityFailedError with the remote cause', async () => {
    const flaky = defineActivity('flaky', async (_: null) => {
      throw new ApplicationError('nope', { name: 'Flaky', nonRetryable: true });
    });
    const wf = workflow('useFlaky', function* () {
      try {
        return yield* activity(flaky, null);
      } catch (e) {
        return { name: (e as Error).name, isAct: e instanceof ActivityFailedError, cause: ((e as Error).cause as Error).name };
      }
    });
    const { run } = await runToEnd([wf], wf, null, { activities: [flaky] });
    expect(run.result).toEqual({ name: 'ActivityFailedError', isAct: true, cause: 'Flaky' });
  });
});
