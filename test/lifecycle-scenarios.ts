import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import {
  activity,
  CancelledError,
  child,
  ChildTimeoutError,
  continueAsNew,
  defineActivity,
  RunClosedError,
  SignalTimeoutError,
  sleep,
  startChild,
  waitForSignal,
  workflow,
  now,
  all,
  allSettled,
  RunEngine,
  RunStateError,
  type WorkflowDef,
} from '../src/index.js';
import type { Journal } from '../src/journal/journal.js';
import { Worker, type WorkerOptions } from '../src/worker/worker.js';
import { Client } from '../src/client/client.js';

/**
 * The run lifecycle end to end (signals, cancel with compensation, terminate, parent-close policies, child timeouts,
 * continue-as-new, retries, execution timeouts): a Worker and a Client on a journal, through the Journal interface
 * only, so the same scenarios hold on every journal (test/unit/lifecycle.test.ts: memory; test/integration/
 * pg-lifecycle.test.ts: PostgreSQL). Each test gets a fresh journal (with the system clock: timers run in real time).
 */

export type MakeLifecycleJournal = () => Promise<{ journal: Journal; cleanup: () => Promise<void> }>;

const silent = pino({ level: process.env.TEST_LOG ?? 'silent' });

export function describeLifecycle(name: string, makeJournal: MakeLifecycleJournal): void {
  describe(`run lifecycle: ${name}`, () => {
    const workers: Worker[] = [];
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      await Promise.all(workers.splice(0).map((w) => w.shutdown()));
      while (cleanups.length) await cleanups.pop()!();
    });

    async function setup(workflows: WorkerOptions['workflows'], activities: WorkerOptions['activities'] = []) {
      const { journal, cleanup } = await makeJournal();
      cleanups.push(cleanup);
      const worker = new Worker({ workflows, activities, journal, logger: silent, pollIntervalMs: 10, shutdownGraceMs: 100 });
      workers.push(worker);
      worker.start();
      return { journal, worker, client: new Client(journal, { logger: silent }) };
    }

    async function until(cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
      const end = Date.now() + ms;
      while (!(await cond())) {
        if (Date.now() > end) throw new Error('condition not reached in time');
        await new Promise((r) => setTimeout(r, 5));
      }
    }

    const waiter = workflow('waiter', function* (_: null) {
      return yield* waitForSignal<string>('go');
    });

    describe('signals', () => {
      it('buffers a signal sent before the wait and delivers each once, in send order', async () => {
        const twoWaits = workflow('twoWaits', function* (_: null) {
          yield* sleep(30);
          const a = yield* waitForSignal<number>('n');
          const b = yield* waitForSignal<number>('n');
          return [a, b];
        });
        const { client } = await setup([twoWaits]);
        const ref = await client.start(twoWaits, null);
        await client.signal(ref.runId, 'n', 1, { signalId: 'one' });
        await client.signal(ref.runId, 'n', 1, { signalId: 'one' }); // same id: delivered once
        await client.signal(ref.runId, 'n', 2);
        expect(await client.result(ref, { timeoutMs: 5000 })).toEqual([1, 2]);
      });

      it('times out with SignalTimeoutError and rejects signals to a closed run', async () => {
        const timed = workflow('timed', function* (_: null) {
          try {
            return yield* waitForSignal('never', { timeout: 20 });
          } catch (e) {
            return e instanceof SignalTimeoutError ? 'timed out' : 'other';
          }
        });
        const { client } = await setup([timed]);
        const ref = await client.start(timed, null);
        expect(await client.result(ref, { timeoutMs: 5000 })).toBe('timed out');
        await expect(client.signal(ref.runId, 'never', 1)).rejects.toBeInstanceOf(RunClosedError);
      });

      it('lets a parent signal its child through the handle', async () => {
        const parent = workflow('signalParent', function* (_: null) {
          const h = yield* startChild(waiter, null);
          yield* h.signal('go', 'from parent');
          return yield* h.result();
        });
        const { client } = await setup([parent, waiter]);
        expect(await client.result(await client.start(parent, null), { timeoutMs: 5000 })).toBe('from parent');
      });
    });

    describe('cancellation', () => {
      it('delivers CancelledError at the current yield, runs compensation activities, and cascades to children', async () => {
        const undone: string[] = [];
        const undo = defineActivity('undo', async (what: string) => void undone.push(what));
        const saga = workflow('saga', function* (_: null) {
          const h = yield* startChild(waiter, null, { id: 'kid' });
          const abandoned = yield* startChild(waiter, null, { id: 'free', parentClosePolicy: 'abandon' });
          try {
            yield* waitForSignal('never');
          } finally {
            yield* activity(undo, 'booking');
          }
          return [h.runId, abandoned.runId];
        });
        const { client, journal } = await setup([saga, waiter], [undo]);
        const ref = await client.start(saga, null);
        await until(async () => (await journal.listChildren(ref.runId)).length === 2);
        const result = await client.cancel(ref.runId, 'user asked');
        expect(result.status).toBe('cancelling');
        await until(async () => (await journal.getRun(ref.runId))!.status === 'cancelled').catch(async (e) => {
          console.log(JSON.stringify(await journal.readEvents(ref.runId)), JSON.stringify(await journal.getRun(ref.runId)));
          throw e;
        });
        expect(undone).toEqual(['booking']);
        const kids = await journal.listChildren(ref.runId);
        const byId = Object.fromEntries(kids.map((k) => [k.workflowId.split('/').pop(), k]));
        expect(byId.kid!.status).toBe('cancelled');
        expect(byId.kid!.error?.message).toBe('parent_cancelled');
        expect(byId.free!.status).toBe('running'); // abandoned: untouched
        const events = (await journal.readEvents(ref.runId)).map((e) => e.type);
        expect(events).toContain('CancelRequested');
        expect(events).toContain('RunCancelled');
      });

      it('terminate stops at once without running workflow code', async () => {
        const { client, journal } = await setup([waiter]);
        const ref = await client.start(waiter, null);
        await until(async () => (await journal.readEvents(ref.runId)).length > 1);
        const r = await client.terminate(ref.runId, 'operator');
        expect(r.status).toBe('terminated');
        expect((await journal.getRun(ref.runId))!.status).toBe('terminated');
        await expect(client.terminate(ref.runId)).rejects.toBeInstanceOf(RunClosedError);
      });

      it('refuses new children once cancellation was delivered', async () => {
        const stubborn = workflow('stubborn', function* (_: null) {
          try {
            yield* waitForSignal('never');
          } catch (e) {
            if (!(e instanceof CancelledError)) throw e;
            try {
              yield* child(waiter, null);
            } catch (e2) {
              return (e2 as Error).name;
            }
          }
          return 'no';
        });
        const { client, journal } = await setup([stubborn, waiter]);
        const ref = await client.start(stubborn, null);
        await until(async () => (await journal.readEvents(ref.runId)).length > 1);
        await client.cancel(ref.runId, 'stop');
        await until(async () => (await journal.getRun(ref.runId))!.status === 'cancelled');
        expect((await journal.getRun(ref.runId))!.result).toBe('CancelledError');
      });
    });

    describe('parent-close policy and timeouts', () => {
      it('closes open children per policy when the parent completes, journaling ParentClosePolicyApplied', async () => {
        const parent = workflow('leaver', function* (_: null) {
          yield* startChild(waiter, null, { id: 'c' });
          yield* startChild(waiter, null, { id: 't', parentClosePolicy: 'terminate' });
          yield* startChild(waiter, null, { id: 'a', parentClosePolicy: 'abandon' });
          return 'done';
        });
        const { client, journal } = await setup([parent, waiter]);
        const ref = await client.start(parent, null);
        expect(await client.result(ref, { timeoutMs: 5000 })).toBe('done');
        const kids = Object.fromEntries((await journal.listChildren(ref.runId)).map((k) => [k.workflowId.split('/').pop(), k.status]));
        expect(kids).toEqual({ c: 'cancelled', t: 'terminated', a: 'running' });
        const applied = (await journal.readEvents(ref.runId)).filter((e) => e.type === 'ParentClosePolicyApplied');
        expect(applied.map((e) => (e.payload as { policy: string }).policy).sort()).toEqual(['abandon', 'cancel', 'terminate']);
      });

      it('child timeout returns timeoutValue or throws ChildTimeoutError, and cancels the child', async () => {
        const parent = workflow('impatient', function* (_: null) {
          const v = yield* child(waiter, null, { id: 'v', timeout: 20, timeoutValue: 'default' });
          let thrown = '';
          try {
            yield* child(waiter, null, { id: 'e', timeout: 20 });
          } catch (e) {
            thrown = e instanceof ChildTimeoutError ? 'ChildTimeoutError' : String(e);
          }
          return { v, thrown };
        });
        const { client, journal } = await setup([parent, waiter]);
        const ref = await client.start(parent, null);
        expect(await client.result(ref, { timeoutMs: 5000 })).toEqual({ v: 'default', thrown: 'ChildTimeoutError' });
        const kids = await journal.listChildren(ref.runId);
        expect(kids.map((k) => k.status)).toEqual(['cancelled', 'cancelled']);
      });
    });

    describe('continue-as-new', () => {
      it('a parent awaiting a child follows its chain to the final result', async () => {
        const counter = workflow('counter', function* (n: number) {
          if (n < 3) return yield* continueAsNew(n + 1);
          return `finished at ${n}`;
        });
        const parent = workflow('chainParent', function* (_: null) {
          const h = yield* startChild(counter, 0, { id: 'chain' });
          const r = yield* h.result();
          return { r, runId: h.runId, callId: h.callId };
        });
        const { client, journal } = await setup([parent, counter]);
        const ref = await client.start(parent, null);
        const out = await client.result<{ r: string; runId: string; callId: string }>(ref, { timeoutMs: 5000 });
        expect(out.r).toBe('finished at 3');
        // every run of the chain is a child of the parent (same call id, same workflow id)
        const runs = (await journal.listChildren(ref.runId)).filter((r) => r.workflow === 'counter');
        expect(runs).toHaveLength(4);
        const last = runs.find((r) => r.status === 'completed')!;
        expect(out.runId).toBe(last.runId);
        expect(runs.every((r) => r.callId === out.callId && r.workflowId === runs[0]!.workflowId)).toBe(true);
      });
    });

    describe('parent-close policy, every way a parent closes', () => {
      // The parent starts one child per policy, then closes in one of five ways; each open child must follow its
      // policy, and the parent's journal must say so (one ParentClosePolicyApplied per child).
      const ways = ['completed', 'failed', 'cancelled', 'terminated', 'timed_out'] as const;
      for (const way of ways) {
        it(`when the parent ${way === 'completed' ? 'completes' : way === 'failed' ? 'fails' : `is ${way.replace('_', ' ')}`}`, async () => {
          const parent = workflow(`closer_${way}`, function* (how: string) {
            yield* startChild(waiter, null, { id: 'c' });
            yield* startChild(waiter, null, { id: 't', parentClosePolicy: 'terminate' });
            yield* startChild(waiter, null, { id: 'a', parentClosePolicy: 'abandon' });
            if (how === 'completed') return 'done';
            if (how === 'failed') throw new Error('parent failed');
            return yield* waitForSignal('never');
          });
          const { client, journal } = await setup([parent, waiter]);
          const ref = await client.start(parent, way, way === 'timed_out' ? { executionTimeoutMs: 150 } : {});
          await until(async () => (await journal.listChildren(ref.runId)).length === 3);
          if (way === 'cancelled') await client.cancel(ref.runId, 'stop', { graceMs: 0 });
          if (way === 'terminated') await client.terminate(ref.runId, 'stop');
          await until(async () => (await journal.getRun(ref.runId))!.status === way);
          const kids = Object.fromEntries((await journal.listChildren(ref.runId)).map((k) => [k.workflowId.split('/').pop(), k.status]));
          expect(kids).toEqual({ c: 'cancelled', t: 'terminated', a: 'running' });
          const applied = (await journal.readEvents(ref.runId)).filter((e) => e.type === 'ParentClosePolicyApplied');
          expect(applied.map((e) => (e.payload as { policy: string }).policy).sort()).toEqual(['abandon', 'cancel', 'terminate']);
        });
      }
    });

    describe('continue-as-new across a worker restart', () => {
      it('a chain that continues while its worker is replaced still gives the parent the final result', async () => {
        const ticker = workflow('ticker', function* (n: number) {
          yield* sleep(40);
          if (n < 4) return yield* continueAsNew(n + 1);
          return `tick ${n}`;
        });
        const parent = workflow('tickerParent', function* (_: null) {
          return yield* child(ticker, 0, { id: 't' });
        });
        const { journal, client, worker } = await setup([parent, ticker]);
        const ref = await client.start(parent, null);
        await until(async () => (await journal.listChildren(ref.runId)).length >= 2);
        await worker.shutdown();
        // a new worker (a restarted process) takes over: it has no cached engine, so everything is rebuilt by replay
        const next = new Worker({ workflows: [parent, ticker], journal, logger: silent, pollIntervalMs: 10 });
        workers.push(next);
        next.start();
        expect(await client.result(ref, { timeoutMs: 10_000 })).toBe('tick 4');
        expect((await journal.listChildren(ref.runId)).filter((r) => r.status === 'continued')).toHaveLength(4);
      });
    });

    describe('cancelling a live tree', () => {
      it('cancels every run of a 40-run tree and stops every actor (W3 in small)', async () => {
        const node: WorkflowDef<number, string> = workflow('treeNode', function* (depth: number): Generator<any, string, any> {
          if (depth < 3) for (let i = 0; i < 3; i++) yield* startChild(node, depth + 1, { id: `n${i}` });
          return yield* waitForSignal<string>('never');
        });
        const { journal, client, worker } = await setup([node]);
        const ref = await client.start(node, 0);
        const all = async () => {
          const out = [ref.runId];
          for (let i = 0; i < out.length; i++) out.push(...(await journal.listChildren(out[i]!)).map((r) => r.runId));
          return out;
        };
        await until(async () => (await all()).length === 40);
        await until(async () => worker.health().activeRuns === 0);
        const result = await client.cancel(ref.runId, 'tree', { graceMs: 0 });
        expect(result.closed).toHaveLength(39);
        for (const id of await all()) expect((await journal.getRun(id))!.status).toBe('cancelled');
        // the worker learns through the stop notification: no actor, no cached engine of the tree is left
        await until(async () => worker.health().cachedEngines === 0 && worker.health().activeRuns === 0, 2000);
      });
    });

    describe('inline children', () => {
      it('children that finish in their first activation are committed with their parent; the rest are handed over', async () => {
        let executions = 0;
        const work = defineActivity('inlineWork', async (n: number) => {
          executions++;
          return n * 10;
        });
        const quick = workflow('quickKid', function* (n: number) {
          return yield* activity(work, n);
        });
        const slow = workflow('slowKid', function* (n: number) {
          const v = yield* activity(work, n);
          yield* sleep(30); // a timer: this child cannot finish inside its parent's activation
          return v + 1;
        });
        const parent = workflow('inlineParent', function* (_: null) {
          let sum = 0;
          for (let i = 0; i < 20; i++) sum += yield* child(quick, i);
          const [a, b] = yield* all([child(slow, 1), child(quick, 2)]);
          return { sum, a, b };
        });
        const { client, journal } = await setup([parent, quick, slow], [work]);
        let commits = 0;
        const commit = journal.commit.bind(journal);
        journal.commit = (lease, c) => {
          commits++;
          return commit(lease, c);
        };
        const ref = await client.start(parent, null);
        expect(await client.result(ref, { timeoutMs: 10_000 })).toEqual({ sum: 1900, a: 11, b: 20 });
        // 22 children, each activity executed exactly once (the slow child's was handed over, not redone)
        expect(executions).toBe(22);
        // far fewer commits than one per child activation: the quick children went in with their parent
        expect(commits).toBeLessThan(12);
        const kids = await journal.listChildren(ref.runId);
        expect(kids).toHaveLength(22);
        for (const k of kids) {
          expect(k.status).toBe('completed');
          const types = (await journal.readEvents(k.runId)).map((e) => e.type);
          expect(types).toEqual(
            k.workflow === 'slowKid'
              ? ['RunStarted', 'ActivityScheduled', 'ActivityCompleted', 'TimerStarted', 'TimerFired', 'RunCompleted']
              : ['RunStarted', 'ActivityScheduled', 'ActivityCompleted', 'RunCompleted'],
          );
        }
        // every journal replays from scratch, silently, to the same result
        for (const r of [await journal.getRun(ref.runId), ...kids]) {
          const def = { inlineParent: parent, quickKid: quick, slowKid: slow }[r!.workflow as 'inlineParent']!;
          const engine = new RunEngine(def, { runId: r!.runId, workflowId: r!.workflowId, depth: r!.depth, queue: r!.queue });
          engine.replay(await journal.readEvents(r!.runId), Date.now());
          expect(engine.takeOutput().events).toEqual([]);
          expect(engine.closed).toBe(true);
        }
      });
    });

    describe('trust: cancel, retries, bugs, closing events, describe (issue 8)', () => {
      // The README's trip example: a parent waiting on something when it is cancelled gets CancelledError at that
      // yield, runs its compensation within the grace period and closes cancelled, whatever it waited on.
      const hotelSaga = workflow('hotelSaga', function* (_: string) {
        return yield* waitForSignal<string>('never');
      });
      const waits = ['a child', 'an all() of children and an activity', 'an allSettled() of children', 'a timer', 'a signal'] as const;
      for (const what of waits) {
        it(`graceful cancel of a run waiting on ${what}: CancelledError, compensation, closed cancelled`, async () => {
          const undone: string[] = [];
          const bookFlight = defineActivity('bookFlight', async (t: string) => `flight-${t}`);
          const cancelFlight = defineActivity('cancelFlight', async (f: string) => void undone.push(f));
          const slow = defineActivity('slowQuote', async () => new Promise<number>((r) => setTimeout(() => r(1), 300)));
          const trip = workflow('trip', function* (t: string) {
            const flight = yield* activity(bookFlight, t);
            try {
              if (what === 'a child') return yield* child(hotelSaga, t);
              if (what === 'an all() of children and an activity') return yield* all([child(hotelSaga, t, { id: 'h1' }), [activity(slow, null), child(hotelSaga, t, { id: 'h2' })]]);
              if (what === 'an allSettled() of children') return yield* allSettled([child(hotelSaga, t, { id: 'h1' }), child(hotelSaga, t, { id: 'h2' })]);
              if (what === 'a timer') return yield* sleep(60_000);
              return yield* waitForSignal('confirm');
            } catch (err) {
              if (err instanceof CancelledError) yield* activity(cancelFlight, flight);
              throw err;
            }
          });
          const { client, journal } = await setup([trip, hotelSaga], [bookFlight, cancelFlight, slow]);
          const ref = await client.start(trip, 'x');
          const childless = what === 'a timer' || what === 'a signal';
          await until(async () =>
            childless ? (await journal.readEvents(ref.runId)).length >= 4 : (await journal.listChildren(ref.runId)).length >= (what === 'a child' ? 1 : 2),
          );
          expect(await client.cancel(ref.runId, 'changed plans', { graceMs: 30_000 })).toMatchObject({ status: 'cancelling' });
          await until(async () => !['running', 'blocked'].includes((await journal.getRun(ref.runId))!.status));
          const run = (await journal.getRun(ref.runId))!;
          const types = (await journal.readEvents(ref.runId)).map((e) => e.type);
          expect({ status: run.status, undone }, types.join(',')).toEqual({ status: 'cancelled', undone: ['flight-x'] });
          expect(types).not.toContain('RunFailed');
          expect(types.indexOf('CancelRequested')).toBeLessThan(types.indexOf('RunCancelled'));
          expect(types[types.length - 1]).toBe('RunCancelled');
          for (const k of await journal.listChildren(ref.runId)) expect(k.status).toBe('cancelled'); // descendants went with it
        });
      }

      it('a retried child attempt never starts before its backoff (startAt)', async () => {
        const failing = workflow('failsTwice', function* (n: number) {
          yield* sleep(0);
          throw new Error(`attempt failed (${n})`);
        });
        const parent = workflow('retryParent', function* (_: null) {
          try {
            return yield* child(failing, 1, { id: 'k', retry: { maximumAttempts: 3, initialIntervalMs: 250, backoffCoefficient: 2 } });
          } catch (e) {
            return (e as Error).name;
          }
        });
        const { client, journal } = await setup([parent, failing]);
        const ref = await client.start(parent, null);
        expect(await client.result(ref, { timeoutMs: 10_000 })).toBe('ChildFailedError');
        const kids = (await journal.listChildren(ref.runId)).sort((a, b) => a.workflowId.localeCompare(b.workflowId));
        expect(kids.map((k) => k.workflowId.split('/').pop())).toEqual(['k', 'k~2', 'k~3']);
        const firstEvent = async (runId: string) => (await journal.readEvents(runId))[1]!.recordedAt; // its first step
        const [t1, t2, t3] = [kids[0]!.closedAt!, await firstEvent(kids[1]!.runId), await firstEvent(kids[2]!.runId)];
        expect(t2 - t1).toBeGreaterThanOrEqual(250);
        expect(t3 - kids[1]!.closedAt!).toBeGreaterThanOrEqual(500);
      });

      it('a programming error blocks the run (not failed); after a fix, resume replays it with the new code', async () => {
        let fixed = false;
        const buggy = workflow('buggy', function* (_: null) {
          const n = yield* now();
          if (!fixed) (undefined as unknown as { total(): number }).total(); // TypeError: a bug
          return typeof n === 'number' ? 'fixed' : 'odd';
        });
        const onPurpose = workflow('onPurpose', function* (_: null) {
          yield* sleep(0);
          throw new Error('card declined');
        });
        const { client, journal } = await setup([buggy, onPurpose]);
        const ref = await client.start(buggy, null, { workflowId: 'bug-1' });
        await until(async () => (await journal.getRun(ref.runId))!.status === 'blocked');
        const blocked = (await journal.getRun(ref.runId))!;
        expect(blocked.error).toMatchObject({ name: 'TypeError' });
        expect(blocked.error!.stack).toContain('TypeError');
        const d = await client.describe(ref.runId);
        expect(d.waitingFor).toMatchObject({ kind: 'operator', error: { name: 'TypeError' } });
        // the same workflow id still names this run, and a resume of a run that is not blocked is refused
        expect((await client.start(buggy, null, { workflowId: 'bug-1' })).runId).toBe(ref.runId);
        fixed = true;
        await client.resume(ref.runId, 'deployed the fix');
        expect(await client.result(ref, { timeoutMs: 5000 })).toBe('fixed');
        const types = (await journal.readEvents(ref.runId)).map((e) => e.type);
        // (the blocked activation committed nothing but RunBlocked: its SideEffect is decided again after the resume)
        expect(types).toEqual(['RunStarted', 'RunBlocked', 'RunResumed', 'SideEffect', 'RunCompleted']);
        await expect(client.resume(ref.runId)).rejects.toBeInstanceOf(RunStateError);
        // an error the code throws on purpose fails the run
        const failed = await client.start(onPurpose, null);
        await until(async () => (await journal.getRun(failed.runId))!.status === 'failed');
      });

      it('every closed run ends with its closing event: policy-closed children say the parent closed, terminated runs say so', async () => {
        const parent = workflow('leaves', function* (_: null) {
          yield* startChild(waiter, null, { id: 'c' });
          yield* startChild(waiter, null, { id: 't', parentClosePolicy: 'terminate' });
          yield* sleep(20);
          return 'done';
        });
        const { client, journal } = await setup([parent, waiter]);
        const ref = await client.start(parent, null);
        expect(await client.result(ref, { timeoutMs: 5000 })).toBe('done');
        const kids = Object.fromEntries((await journal.listChildren(ref.runId)).map((k) => [k.workflowId.split('/').pop(), k]));
        const closing = async (runId: string) => (await journal.readEvents(runId)).filter((e) => e.type.startsWith('Run') || e.type === 'CancelRequested').map((e) => [e.type, (e.payload as { reason?: string }).reason]);
        expect(kids.c!.error).toMatchObject({ name: 'CancelledError', message: 'parent_closed: completed' });
        expect(await closing(kids.c!.runId)).toEqual([
          ['RunStarted', undefined],
          ['CancelRequested', 'parent_closed: completed'],
          ['RunCancelled', 'parent_closed: completed'],
        ]);
        expect(await closing(kids.t!.runId)).toEqual([
          ['RunStarted', undefined],
          ['RunTerminated', 'parent_closed: completed'],
        ]);
        const solo = await client.start(waiter, null);
        await until(async () => (await journal.readEvents(solo.runId)).length > 1);
        await client.terminate(solo.runId, 'operator');
        const ev = await journal.readEvents(solo.runId);
        expect([ev[ev.length - 1]!.type, (ev[ev.length - 1]!.payload as { reason: string }).reason]).toEqual(['RunTerminated', 'operator']);
      });

      it('describe() shows what the engine waits on: a consumed signal is no wait, nested barriers keep their groups', async () => {
        const early = workflow('earlySignal', function* (_: null) {
          yield* sleep(10);
          const v = yield* waitForSignal<string>('go');
          yield* sleep(100_000);
          return v;
        });
        const nested = workflow('nestedBarrier', function* (_: null) {
          return yield* all([child(waiter, null, { id: 'a' }), [child(waiter, null, { id: 'b' }), all([child(waiter, null, { id: 'c' }), sleep(1)])]]);
        });
        const { client, journal } = await setup([early, nested, waiter]);
        const e = await client.start(early, null);
        await client.signal(e.runId, 'go', 'now');
        await until(async () => (await journal.readEvents(e.runId)).some((x) => x.type === 'TimerStarted' && x.payload.path === '2'));
        await until(async () => (await client.describe(e.runId)).openWaits[0]?.path === '2');
        const de = await client.describe(e.runId);
        expect(de.waitKind).toBe('timer');
        expect(de.openWaits).toHaveLength(1);
        expect(de.openWaits[0]).toMatchObject({ kind: 'timer', path: '2' });
        expect(de.openWaits[0]!.fireAt! - de.openWaits[0]!.since).toBe(100_000);

        const n = await client.start(nested, null);
        await until(async () => (await client.describe(n.runId)).openWaits.length === 3);
        const dn = await client.describe(n.runId);
        expect(dn.openWaits.map((w) => [w.kind, w.childWorkflowId!.split('/').pop(), w.groupPath, w.index, w.size, w.leafIndex])).toEqual([
          ['child', 'a', ['0'], 0, 2, 0],
          ['child', 'b', ['0', '0/1'], 0, 2, 1],
          ['child', 'c', ['0', '0/1', '0/1/1'], 0, 2, 2],
        ]);
        for (const w of dn.openWaits) expect(typeof w.since).toBe('number');
        // a signal wait names its signal
        const w = await client.start(waiter, null);
        await until(async () => (await client.describe(w.runId)).waitKind === 'signal');
        expect((await client.describe(w.runId)).openWaits[0]).toMatchObject({ kind: 'signal', signal: 'go' });
      });
    });

    describe('retries and execution timeouts', () => {
      it('retries a failing child as new runs of the same call until it succeeds', async () => {
        let calls = 0;
        const flaky = defineActivity('flaky', async () => {
          calls++;
          if (calls < 3) throw new Error(`flake ${calls}`);
          return 'ok';
        }, { retry: { maximumAttempts: 1 } });
        const worker_ = workflow('flakyChild', function* (_: null) {
          return yield* activity(flaky, null);
        });
        const parent = workflow('retrier', function* (_: null) {
          return yield* child(worker_, null, { id: 'f', retry: { maximumAttempts: 5, initialIntervalMs: 5 } });
        });
        const { client, journal } = await setup([parent, worker_], [flaky]);
        const ref = await client.start(parent, null);
        expect(await client.result(ref, { timeoutMs: 5000 })).toBe('ok');
        const kids = await journal.listChildren(ref.runId);
        // (attempts may share a creation time: inline children are created in one commit; order by workflow id)
        expect(kids.map((k) => [k.workflowId.split('/').pop(), k.status]).sort()).toEqual([
          ['f', 'failed'],
          ['f~2', 'failed'],
          ['f~3', 'completed'],
        ]);
      });

      it('an activity attempt past its timeoutMs fails with ActivityTimeoutError and is retried', async () => {
        let n = 0;
        const slow = defineActivity('slow', async () => {
          n++;
          if (n === 1) await new Promise((r) => setTimeout(r, 200));
          return n;
        }, { timeoutMs: 30, retry: { maximumAttempts: 2, initialIntervalMs: 1 } });
        const wf = workflow('usesSlow', function* (_: null) {
          return yield* activity(slow, null);
        });
        const { client } = await setup([wf], [slow]);
        expect(await client.result(await client.start(wf, null), { timeoutMs: 5000 })).toBe(2);
      });

      it('a run past its execution timeout closes as timed_out', async () => {
        const { client, journal } = await setup([waiter]);
        const ref = await client.start(waiter, null, { executionTimeoutMs: 30 });
        await until(async () => (await journal.getRun(ref.runId))!.status === 'timed_out');
        expect((await journal.getRun(ref.runId))!.error?.name).toBe('RunTimeoutError');
      });
    });
  });
}
