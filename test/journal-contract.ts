import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/journal/memory.js';
import {
  NO_WAIT,
  retryRunId,
  WORKER_RETENTION_MS,
  type CancelOptions,
  type ClosedStatus,
  type Commit,
  type Journal,
  type Lease,
  type NewRun,
  type RunStall,
  type WaitSpec,
  type WorkerHeartbeat,
} from '../src/journal/journal.js';
import pino from 'pino';
import { Client } from '../src/client/client.js';
import { DuplicateWorkflowIdError, LeaseLostError, PayloadError, RunClosedError, UnknownRunError, type SerializedError } from '../src/runtime/errors.js';
import type { NewEvent } from '../src/runtime/events.js';

/**
 * The journal contract, tested through the `Journal` interface only, so every implementation (in-memory, PostgreSQL)
 * is held to the same behaviour. Each test gets a fresh journal whose time is a ManualClock: lease expiry and timers
 * move only when a test advances it.
 *
 * Wake-up notifications may arrive asynchronously (Postgres LISTEN), so tests that watch `onWake` poll with
 * `eventually`; tests that assert a notification did NOT happen first wait for a later one that must come after it.
 */

export type MakeJournal = (clock: ManualClock) => Promise<{ journal: Journal; cleanup: () => Promise<void> }>;

const LEASE_MS = 30_000;
const QUEUE = 'default';

export function describeJournalContract(name: string, makeJournal: MakeJournal): void {
  describe(`journal contract: ${name}`, () => {
    let clock: ManualClock;
    let journal: Journal;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      clock = new ManualClock();
      ({ journal, cleanup } = await makeJournal(clock));
    });
    afterEach(async () => {
      await cleanup();
    });

    // ---- helpers: each one is a short, named step of the scenarios below ----

    const rootRun = (id: string, extra: Partial<NewRun> = {}): NewRun => ({
      runId: `run-${id}`,
      workflowId: `wf-${id}`,
      workflow: 'parent',
      input: { id },
      queue: QUEUE,
      ...extra,
    });
    const childRun = (parentKey: string, key: string, extra: Partial<NewRun> = {}): NewRun => ({
      runId: `run-${parentKey}-${key}`,
      workflowId: `wf-${parentKey}/${key}`,
      workflow: 'kid',
      input: { key },
      queue: QUEUE,
      callId: `call-${key}`,
      ...extra,
    });
    const start = async (id: string, extra: Partial<NewRun> = {}) => (await journal.startRun(rootRun(id, extra))).run;
    const mustAcquire = async (runId: string, owner = 'w1'): Promise<Lease> => {
      const lease = await journal.acquire(runId, owner, LEASE_MS);
      if (!lease) throw new Error(`test setup: could not acquire ${runId}`);
      return lease;
    };
    const sideEffect = (i: number): NewEvent => ({ type: 'SideEffect', payload: { path: `${i}`, kind: 'random', value: i } });
    const scheduled = (ch: NewRun, path: string): NewEvent => ({
      type: 'ChildScheduled',
      payload: { path, callId: ch.callId ?? path, workflow: ch.workflow, inputHash: 'h', childRunId: ch.runId, childWorkflowId: ch.workflowId, awaited: true },
    });
    const waitOn = (w: Partial<WaitSpec>): WaitSpec => ({ ...NO_WAIT, ...w });
    const commitOf = (afterSeq: number, c: Partial<Commit> = {}): Commit => ({ afterSeq, events: [], children: [], wait: NO_WAIT, ...c });
    /** Starts a root run and commits `kids` as its children; returns the parent's lease (still held) and seq. */
    const withChildren = async (id: string, kids: NewRun[], c: Partial<Commit> = {}) => {
      const parent = await start(id);
      const lease = await mustAcquire(parent.runId);
      const res = await journal.commit(lease, commitOf(1, { events: kids.map((k, i) => scheduled(k, `${i}`)), children: kids, ...c }));
      return { parent, lease, seq: res.lastSeq, result: res };
    };
    /** The parent records how it waits and gives up its lease, as a suspending activation does. */
    const suspend = async (lease: Lease, afterSeq: number, wait: Partial<WaitSpec>) =>
      journal.commit(lease, commitOf(afterSeq, { wait: waitOn(wait), release: true }));
    /** The same, journaling `events` first. */
    const suspendWith = async (lease: Lease, afterSeq: number, events: NewEvent[], wait: Partial<WaitSpec>) =>
      journal.commit(lease, commitOf(afterSeq, { events, wait: waitOn(wait), release: true }));
    /** Closes a run the way its own final activation would: under a fresh lease, with the terminal event. */
    const closeRun = async (runId: string, status: ClosedStatus, outcome: { result?: unknown; error?: SerializedError } = {}) => {
      const lease = await mustAcquire(runId, 'closer');
      const run = (await journal.getRun(runId))!;
      const event: NewEvent =
        status === 'completed'
          ? { type: 'RunCompleted', payload: { result: outcome.result ?? null } }
          : { type: 'RunFailed', payload: { error: outcome.error ?? { name: 'Error', message: status } } };
      return journal.commit(lease, commitOf(run.lastSeq, { events: [event], close: { status, ...outcome } }));
    };
    const boom: SerializedError = { name: 'Boom', message: 'it broke', details: { code: 7 } };
    const dueIds = async (queues = [QUEUE], limit = 100) =>
      (await journal.claimDue({ owner: 'probe', queues, limit, leaseMs: LEASE_MS })).map((l) => l.runId).sort();
    /** Whether the run is due now, without leasing it (claimDue would). */
    const isDue = async (runId: string) => {
      const r = (await journal.getRun(runId))!;
      return r.nextWakeupAt !== null && r.nextWakeupAt <= clock.now();
    };

    // ---- startRun ----

    describe('startRun', () => {
      it('creates a running root run whose journal starts with RunStarted at seq 1', async () => {
        const { run, created } = await journal.startRun(rootRun('a', { input: { n: 1, when: new Date(0) } }));
        expect(created).toBe(true);
        expect(run).toMatchObject({
          runId: 'run-a',
          workflowId: 'wf-a',
          workflow: 'parent',
          status: 'running',
          // the journaled value is the JSON round trip: a Date becomes its ISO string
          input: { n: 1, when: '1970-01-01T00:00:00.000Z' },
          parentRunId: null,
          callId: null,
          rootRunId: 'run-a',
          depth: 0,
          queue: QUEUE,
          leaseOwner: null,
          leaseExpiresAt: null,
          nextWakeupAt: clock.now(),
          createdAt: clock.now(),
          closedAt: null,
          result: null,
          error: null,
          continuedFrom: null,
          continuedTo: null,
          lastSeq: 1,
          parentClosePolicy: 'cancel',
          cancelRequest: null,
        });
        expect(await journal.getRun('run-a')).toEqual(run);
        expect(await journal.getRunByWorkflowId('wf-a')).toEqual(run);
        expect(await journal.readEvents('run-a')).toEqual([
          {
            seq: 1,
            recordedAt: clock.now(),
            type: 'RunStarted',
            payload: { workflow: 'parent', workflowId: 'wf-a', input: { n: 1, when: '1970-01-01T00:00:00.000Z' }, depth: 0 },
          },
        ]);
      });

      it('an undefined input is journaled as null', async () => {
        const run = await start('u', { input: undefined });
        expect(run.input).toBeNull();
        expect((await journal.readEvents(run.runId))[0]!.payload).toMatchObject({ input: null });
      });

      it('is idempotent by workflow id: the same workflow id returns the existing run', async () => {
        const first = await start('a');
        clock.advance(10);
        const again = await journal.startRun(rootRun('a', { runId: 'run-other', input: { different: true } }));
        expect(again.created).toBe(false);
        expect(again.run).toEqual(first);
        expect(await journal.getRun('run-other')).toBeUndefined();
        expect(await journal.readEvents(first.runId)).toHaveLength(1);
      });

      it('the same workflow id with a different workflow name is a DuplicateWorkflowIdError', async () => {
        await start('a');
        const err = await journal.startRun(rootRun('a', { runId: 'run-other', workflow: 'something-else' })).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(DuplicateWorkflowIdError);
        expect(err).toMatchObject({ workflowId: 'wf-a', existingRunId: 'run-a', existingWorkflow: 'parent' });
        expect(await journal.getRun('run-other')).toBeUndefined();
      });

      it('a run id that is already taken (under another workflow id) is refused, and the existing run is untouched', async () => {
        const first = await start('a');
        await expect(journal.startRun(rootRun('b', { runId: 'run-a' }))).rejects.toThrow(/run-a/);
        expect(await journal.getRun('run-a')).toEqual(first);
        expect(await journal.getRunByWorkflowId('wf-b')).toBeUndefined();
      });

      it('starts sent together are each answered on their own: created, the existing run, refused', async () => {
        await start('a');
        // (a journal may write starts that arrive together in one statement)
        const [fresh, twin, existing, clash, badInput] = await Promise.allSettled([
          journal.startRun(rootRun('n')),
          journal.startRun(rootRun('n', { input: { second: true } })), // the same workflow id and run id, at once
          journal.startRun(rootRun('a', { runId: 'run-a2' })), // an existing workflow id
          journal.startRun(rootRun('a', { runId: 'run-a3', workflow: 'something-else' })),
          journal.startRun(rootRun('big', { input: { n: 10n } })),
        ]);
        expect(fresh).toMatchObject({ status: 'fulfilled', value: { created: true, run: { runId: 'run-n' } } });
        expect(twin).toMatchObject({ status: 'fulfilled', value: { created: false, run: { runId: 'run-n' } } });
        expect(existing).toMatchObject({ status: 'fulfilled', value: { created: false, run: { runId: 'run-a' } } });
        expect(clash.status === 'rejected' && clash.reason).toBeInstanceOf(DuplicateWorkflowIdError);
        expect(badInput.status === 'rejected' && badInput.reason).toBeInstanceOf(PayloadError);
        expect((await journal.getRun('run-n'))!.input).toEqual({ id: 'n' }); // the first of the two
        expect(await journal.readEvents('run-n')).toHaveLength(1);
        expect(await journal.getRun('run-a2')).toBeUndefined();
        expect(await journal.getRun('run-a3')).toBeUndefined();
        expect(await journal.getRunByWorkflowId('wf-big')).toBeUndefined();
      });

      it('an input that is not JSON (BigInt) is a PayloadError and creates nothing', async () => {
        await expect(journal.startRun(rootRun('big', { input: { n: 10n } }))).rejects.toBeInstanceOf(PayloadError);
        expect(await journal.getRun('run-big')).toBeUndefined();
        expect(await journal.getRunByWorkflowId('wf-big')).toBeUndefined();
        // the workflow id is still free
        expect((await journal.startRun(rootRun('big'))).created).toBe(true);
      });

      it('unknown ids read as undefined, and reading the events of an unknown run is an UnknownRunError', async () => {
        expect(await journal.getRun('nope')).toBeUndefined();
        expect(await journal.getRunByWorkflowId('nope')).toBeUndefined();
        await expect(journal.readEvents('nope')).rejects.toBeInstanceOf(UnknownRunError);
      });
    });

    // ---- commit: appends, fencing, atomicity ----

    describe('commit', () => {
      it('appends events with gap-free seqs after RunStarted, stamped with the clock', async () => {
        const run = await start('a');
        const lease = await mustAcquire(run.runId);
        clock.advance(5);
        const r1 = await journal.commit(lease, commitOf(1, { events: [sideEffect(1), sideEffect(2)] }));
        expect(r1).toEqual({ lastSeq: 3, childLeases: [], wokeParent: null });
        clock.advance(5);
        const r2 = await journal.commit(lease, commitOf(3, { events: [sideEffect(3)] }));
        expect(r2.lastSeq).toBe(4);
        // a commit with no events keeps the seq
        expect((await journal.commit(lease, commitOf(4))).lastSeq).toBe(4);

        const events = await journal.readEvents(run.runId);
        expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
        expect(events.map((e) => e.recordedAt)).toEqual([clock.now() - 10, clock.now() - 5, clock.now() - 5, clock.now()]);
        expect(events[1]).toEqual({ seq: 2, recordedAt: clock.now() - 5, type: 'SideEffect', payload: { path: '1', kind: 'random', value: 1 } });
        expect((await journal.getRun(run.runId))!.lastSeq).toBe(4);
      });

      it('readEvents(afterSeq) returns only the events after that seq, in order', async () => {
        const run = await start('a');
        const lease = await mustAcquire(run.runId);
        await journal.commit(lease, commitOf(1, { events: [sideEffect(1), sideEffect(2), sideEffect(3)] }));
        expect((await journal.readEvents(run.runId, 2)).map((e) => e.seq)).toEqual([3, 4]);
        expect(await journal.readEvents(run.runId, 4)).toEqual([]);
        expect((await journal.readEvents(run.runId, 0)).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
      });

      it('is fenced by the lease token: a stale writer gets LeaseLostError after another owner took the expired lease', async () => {
        const run = await start('a');
        const stale = await mustAcquire(run.runId, 'w1');
        expect(await journal.acquire(run.runId, 'w2', LEASE_MS)).toBeUndefined(); // still held
        clock.advance(LEASE_MS + 1);
        const fresh = await mustAcquire(run.runId, 'w2');
        expect(fresh.token).not.toBe(stale.token);

        await expect(journal.commit(stale, commitOf(1, { events: [sideEffect(1)] }))).rejects.toBeInstanceOf(LeaseLostError);
        expect(await journal.readEvents(run.runId)).toHaveLength(1);
        expect((await journal.getRun(run.runId))!.leaseOwner).toBe('w2');

        expect((await journal.commit(fresh, commitOf(1, { events: [sideEffect(1)] }))).lastSeq).toBe(2);
      });

      it('an expired lease that nobody took over still commits (the token is what fences)', async () => {
        const run = await start('a');
        const lease = await mustAcquire(run.runId);
        clock.advance(LEASE_MS * 2);
        expect((await journal.commit(lease, commitOf(1, { events: [sideEffect(1)] }))).lastSeq).toBe(2);
      });

      it('rejects an afterSeq that is not the journal head with LeaseLostError and appends nothing', async () => {
        const run = await start('a');
        const lease = await mustAcquire(run.runId);
        await journal.commit(lease, commitOf(1, { events: [sideEffect(1)] }));
        for (const afterSeq of [1, 3]) {
          await expect(journal.commit(lease, commitOf(afterSeq, { events: [sideEffect(9)], children: [childRun('a', 'x')] }))).rejects.toBeInstanceOf(
            LeaseLostError,
          );
        }
        expect((await journal.readEvents(run.runId)).map((e) => e.seq)).toEqual([1, 2]);
        expect(await journal.getRun('run-a-x')).toBeUndefined();
        // the lease itself is untouched: the writer can re-read and go on
        expect((await journal.commit(lease, commitOf(2, { events: [sideEffect(3)] }))).lastSeq).toBe(3);
      });

      it('a commit on an unknown run is an UnknownRunError', async () => {
        const lease: Lease = { runId: 'ghost', owner: 'w1', token: 't', expiresAt: clock.now() + LEASE_MS };
        await expect(journal.commit(lease, commitOf(1))).rejects.toBeInstanceOf(UnknownRunError);
      });

      it('is atomic: a child whose workflow id is taken fails the whole commit with DuplicateWorkflowIdError', async () => {
        await start('taken', { workflow: 'other' });
        const parent = await start('p');
        const lease = await mustAcquire(parent.runId);
        const ok = childRun('p', 'ok');
        const clash = childRun('p', 'clash', { workflowId: 'wf-taken' });
        const err = await journal
          .commit(lease, commitOf(1, { events: [scheduled(ok, '0'), scheduled(clash, '1')], children: [ok, clash], wait: waitOn({ busy: true }) }))
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(DuplicateWorkflowIdError);
        expect(err).toMatchObject({ workflowId: 'wf-taken', existingRunId: 'run-taken', existingWorkflow: 'other' });

        expect(await journal.readEvents(parent.runId)).toHaveLength(1);
        expect(await journal.getRun(ok.runId)).toBeUndefined();
        expect(await journal.listChildren(parent.runId)).toEqual([]);
        const after = (await journal.getRun(parent.runId))!;
        expect(after.lastSeq).toBe(1);
        expect(after.leaseOwner).toBe('w1');
        // nothing half-done blocks the retry without the clash
        expect((await journal.commit(lease, commitOf(1, { events: [scheduled(ok, '0')], children: [ok] }))).lastSeq).toBe(2);
        expect((await journal.getRun(ok.runId))!.status).toBe('running');
      });

      it('two new children with the same workflow id in one commit are a DuplicateWorkflowIdError, and nothing persists', async () => {
        const parent = await start('p');
        const lease = await mustAcquire(parent.runId);
        const a = childRun('p', 'a', { workflowId: 'wf-same' });
        const b = childRun('p', 'b', { workflowId: 'wf-same' });
        await expect(journal.commit(lease, commitOf(1, { events: [sideEffect(1)], children: [a, b] }))).rejects.toBeInstanceOf(DuplicateWorkflowIdError);
        expect(await journal.readEvents(parent.runId)).toHaveLength(1);
        expect(await journal.getRunByWorkflowId('wf-same')).toBeUndefined();
      });

      it('a payload that is not JSON (BigInt) is a PayloadError and nothing of the commit persists', async () => {
        const parent = await start('p');
        const lease = await mustAcquire(parent.runId);
        const good = childRun('p', 'good');
        const bad: NewEvent = { type: 'SideEffect', payload: { path: '9', kind: 'sideEffect', value: 1n } };
        const attempts: Commit[] = [
          commitOf(1, { events: [sideEffect(1), bad], children: [good] }),
          commitOf(1, { events: [sideEffect(1)], children: [good, childRun('p', 'bad', { input: { n: 2n } })] }),
          commitOf(1, { events: [sideEffect(1)], children: [good], close: { status: 'completed', result: { n: 3n } } }),
          commitOf(1, { events: [sideEffect(1)], close: { status: 'failed', error: { ...boom, details: 4n } } }),
          commitOf(1, { events: [sideEffect(1)], block: { ...boom, details: 5n } }),
        ];
        for (const attempt of attempts) await expect(journal.commit(lease, attempt)).rejects.toBeInstanceOf(PayloadError);
        const run = (await journal.getRun(parent.runId))!;
        expect(run).toMatchObject({ status: 'running', lastSeq: 1, leaseOwner: 'w1', result: null, error: null });
        expect(await journal.readEvents(parent.runId)).toHaveLength(1);
        expect(await journal.listChildren(parent.runId)).toEqual([]);
      });

      it('journals the round-tripped JSON value (what replay will see), and keeps object key order', async () => {
        const run = await start('a');
        const lease = await mustAcquire(run.runId);
        const value = { zebra: 1, a: { when: new Date(0), skip: undefined, list: [3, 2, 1] }, mm: 'x', b: null };
        await journal.commit(lease, commitOf(1, { events: [{ type: 'SideEffect', payload: { path: '0', kind: 'sideEffect', value } }] }));
        const stored = (await journal.readEvents(run.runId, 1))[0]!.payload as { value: unknown };
        expect(stored.value).toEqual({ zebra: 1, a: { when: '1970-01-01T00:00:00.000Z', list: [3, 2, 1] }, mm: 'x', b: null });
        // Key order is part of the value: a workflow that iterates an object's keys must see the same order live and
        // on replay, and input hashes are computed over JSON text.
        expect(JSON.stringify(stored.value)).toBe('{"zebra":1,"a":{"when":"1970-01-01T00:00:00.000Z","list":[3,2,1]},"mm":"x","b":null}');
      });
    });

    // ---- children ----

    describe('children', () => {
      it('an inline child (completed within its parent\'s activation) is created closed with its journal, unleased and unannounced', async () => {
        const woken: string[] = [];
        journal.onWake((ids) => woken.push(...ids));
        const done = childRun('q', 'done', {
          completed: {
            events: [
              { type: 'ActivityScheduled', payload: { path: '0', name: 'charge', inputHash: 'h', input: 7 } },
              { type: 'ActivityCompleted', payload: { path: '0', result: 14, closedAt: clock.now(), attempts: 1 } },
              { type: 'RunCompleted', payload: { result: 14 } },
            ],
            status: 'completed',
            result: 14,
          },
        });
        const open = childRun('q', 'open');
        const { parent, result } = await withChildren('q', [done, open], { leaseChildren: true });
        expect(result.childLeases.map((l) => l.runId)).toEqual([open.runId]);
        const d = (await journal.getRun(done.runId))!;
        expect(d).toMatchObject({ status: 'completed', result: 14, lastSeq: 4, leaseOwner: null, nextWakeupAt: null, closedAt: clock.now(), parentRunId: parent.runId });
        expect((await journal.readEvents(done.runId)).map((e) => [e.seq, e.type])).toEqual([
          [1, 'RunStarted'],
          [2, 'ActivityScheduled'],
          [3, 'ActivityCompleted'],
          [4, 'RunCompleted'],
        ]);
        expect(await journal.childOutcomes(parent.runId, [done.runId])).toEqual([
          { childRunId: done.runId, currentRunId: done.runId, callId: 'call-done', status: 'completed', result: 14, error: null, closedAt: clock.now() },
        ]);
        await new Promise((r) => setTimeout(r, 50));
        expect(woken).not.toContain(done.runId);
      });

      it('a commit creates child runs with their RunStarted events, linked to the parent', async () => {
        clock.advance(1);
        const kids = [childRun('p', 'a'), childRun('p', 'b', { queue: 'other', depth: 7 })];
        const { parent, seq } = await withChildren('p', kids);
        expect(seq).toBe(3);

        const a = (await journal.getRun('run-p-a'))!;
        expect(a).toMatchObject({
          workflowId: 'wf-p/a',
          workflow: 'kid',
          status: 'running',
          input: { key: 'a' },
          parentRunId: parent.runId,
          callId: 'call-a',
          rootRunId: parent.runId,
          depth: 1, // the parent's depth + 1 unless the caller says otherwise
          queue: QUEUE,
          leaseOwner: null,
          nextWakeupAt: clock.now(),
          createdAt: clock.now(),
          lastSeq: 1,
        });
        expect(await journal.readEvents(a.runId)).toEqual([
          {
            seq: 1,
            recordedAt: clock.now(),
            type: 'RunStarted',
            payload: { workflow: 'kid', workflowId: 'wf-p/a', input: { key: 'a' }, depth: 1, parentRunId: parent.runId, callId: 'call-a' },
          },
        ]);
        expect(await journal.getRun('run-p-b')).toMatchObject({ queue: 'other', depth: 7, parentRunId: parent.runId });
        expect((await journal.readEvents(parent.runId)).map((e) => e.type)).toEqual(['RunStarted', 'ChildScheduled', 'ChildScheduled']);
      });

      it('grandchildren keep the root run id and count depth from their own parent', async () => {
        const { parent } = await withChildren('p', [childRun('p', 'c')]);
        const childLease = await mustAcquire('run-p-c', 'w2');
        await journal.commit(childLease, commitOf(1, { children: [childRun('c', 'g')] }));
        expect(await journal.getRun('run-c-g')).toMatchObject({ parentRunId: 'run-p-c', rootRunId: parent.runId, depth: 2 });
      });

      it('leaseChildren leases the new children to the committing owner, for the rest of its lease', async () => {
        const kids = [childRun('p', 'a'), childRun('p', 'b')];
        const { lease, result } = await withChildren('p', kids, { leaseChildren: true });
        expect(result.childLeases.map((l) => l.runId).sort()).toEqual(['run-p-a', 'run-p-b']);
        for (const cl of result.childLeases) {
          expect(cl.owner).toBe(lease.owner);
          expect(cl.expiresAt).toBe(lease.expiresAt);
          expect((await journal.getRun(cl.runId))!).toMatchObject({ leaseOwner: lease.owner, leaseExpiresAt: lease.expiresAt });
        }
        expect(new Set(result.childLeases.map((l) => l.token)).size).toBe(2);
        // due, but leased: nobody else can claim them
        expect(await dueIds()).toEqual([]);
        // and the leases are real: they fence commits
        const la = result.childLeases.find((l) => l.runId === 'run-p-a')!;
        expect((await journal.commit(la, commitOf(1, { events: [sideEffect(1)] }))).lastSeq).toBe(2);
      });

      it('a child that already exists is left alone when a re-run after a crash commits it again', async () => {
        const a = childRun('p', 'a');
        const { parent } = await withChildren('p', [a]);
        // the child made progress in the meantime
        const childLease = await mustAcquire(a.runId, 'w2');
        await journal.commit(childLease, commitOf(1, { events: [sideEffect(1)] }));
        const before = (await journal.getRun(a.runId))!;

        // the parent's worker died; another one takes over after the lease expired and redoes the activation
        clock.advance(LEASE_MS + 1);
        const lease = await mustAcquire(parent.runId, 'w3');
        const b = childRun('p', 'b');
        const head = (await journal.getRun(parent.runId))!.lastSeq;
        const res = await journal.commit(lease, commitOf(head, { events: [scheduled(b, '1')], children: [{ ...a, input: { changed: true } }, b], leaseChildren: true }));
        expect(res.childLeases.map((l) => l.runId)).toEqual([b.runId]);
        const after = (await journal.getRun(a.runId))!;
        expect(after).toEqual(before);
        expect((await journal.readEvents(a.runId)).map((e) => e.type)).toEqual(['RunStarted', 'SideEffect']);
        expect((await journal.listChildren(parent.runId)).map((r) => r.runId)).toEqual([a.runId, b.runId]);
      });

      it('a run id listed twice in one commit is one child', async () => {
        const a = childRun('p', 'a');
        const { parent, result } = await withChildren('p', [a, a], { leaseChildren: true });
        expect(result.childLeases).toHaveLength(1);
        expect(await journal.listChildren(parent.runId)).toHaveLength(1);
        expect(await journal.readEvents(a.runId)).toHaveLength(1);
      });

      it('listChildren lists direct children in creation order, filtered by status', async () => {
        const { parent, lease } = await withChildren('p', [childRun('p', 'a')]);
        clock.advance(1);
        await journal.commit(lease, commitOf(2, { children: [childRun('p', 'b'), childRun('p', 'c')] }));
        await closeRun('run-p-b', 'completed', { result: 1 });
        await closeRun('run-p-c', 'failed', { error: boom });
        const gLease = await mustAcquire('run-p-a', 'w2');
        await journal.commit(gLease, commitOf(1, { children: [childRun('a', 'g')] }));

        expect((await journal.listChildren(parent.runId)).map((r) => r.runId)).toEqual(['run-p-a', 'run-p-b', 'run-p-c']);
        expect((await journal.listChildren(parent.runId, { status: 'running' })).map((r) => r.runId)).toEqual(['run-p-a']);
        expect((await journal.listChildren(parent.runId, { status: ['completed', 'failed'] })).map((r) => r.runId)).toEqual(['run-p-b', 'run-p-c']);
        expect(await journal.listChildren(parent.runId, { status: [] })).toEqual([]);
        expect((await journal.listChildren('run-p-a')).map((r) => r.runId)).toEqual(['run-a-g']);
        expect(await journal.listChildren('nobody')).toEqual([]);
      });

      it('childOutcomes returns only closed children of that parent, with status, result, error and close time', async () => {
        const kids = ['ok', 'bad', 'open', 'cont'].map((k) => childRun('p', k));
        const { parent } = await withChildren('p', kids);
        const { parent: other } = await withChildren('q', [childRun('q', 'x')]);
        clock.advance(100);
        await closeRun('run-p-ok', 'completed', { result: { v: 1 } });
        clock.advance(100);
        await closeRun('run-p-bad', 'cancelled', { error: boom });
        await closeRun('run-p-cont', 'continued');
        await closeRun('run-q-x', 'completed', { result: 2 });

        const outcomes = await journal.childOutcomes(parent.runId, ['run-p-ok', 'run-p-bad', 'run-p-open', 'run-p-cont', 'run-q-x', 'missing']);
        expect(outcomes).toEqual([
          { childRunId: 'run-p-ok', currentRunId: 'run-p-ok', callId: 'call-ok', status: 'completed', result: { v: 1 }, error: null, closedAt: clock.now() - 100 },
          { childRunId: 'run-p-bad', currentRunId: 'run-p-bad', callId: 'call-bad', status: 'cancelled', result: null, error: boom, closedAt: clock.now() },
        ]);
        expect(await journal.childOutcomes(parent.runId, [])).toEqual([]);
        expect(await journal.childOutcomes(other.runId, ['run-q-x'])).toHaveLength(1);
      });
    });

    // ---- dispatch: claim, acquire, renew, release ----

    describe('leases and dispatch', () => {
      it('claimDue leases due runs on the given queues, oldest due first, up to the limit', async () => {
        await start('a');
        clock.advance(1);
        await start('b', { queue: 'other' });
        clock.advance(1);
        await start('c');
        clock.advance(1);
        await start('d', { queue: 'third' });

        const claimed = await journal.claimDue({ owner: 'w1', queues: [QUEUE, 'other'], limit: 2, leaseMs: 1000 });
        expect(claimed.map((l) => l.runId)).toEqual(['run-a', 'run-b']);
        for (const l of claimed) {
          expect(l).toMatchObject({ owner: 'w1', expiresAt: clock.now() + 1000 });
          expect(await journal.getRun(l.runId)).toMatchObject({ leaseOwner: 'w1', leaseExpiresAt: clock.now() + 1000 });
        }
        // leased runs are not claimed again; the rest are
        expect((await journal.claimDue({ owner: 'w2', queues: [QUEUE, 'other'], limit: 10, leaseMs: 1000 })).map((l) => l.runId)).toEqual(['run-c']);
        expect(await journal.claimDue({ owner: 'w2', queues: [QUEUE, 'other'], limit: 10, leaseMs: 1000 })).toEqual([]);
        expect(await journal.claimDue({ owner: 'w2', queues: [], limit: 10, leaseMs: 1000 })).toEqual([]);
        expect(await journal.claimDue({ owner: 'w2', queues: ['third'], limit: 0, leaseMs: 1000 })).toEqual([]);
        // an expired lease is free again
        clock.advance(1000);
        expect((await journal.claimDue({ owner: 'w3', queues: [QUEUE, 'other', 'third'], limit: 10, leaseMs: 1000 })).map((l) => l.runId).sort()).toEqual([
          'run-a',
          'run-b',
          'run-c',
          'run-d',
        ]);
      });

      it('claimDue skips runs whose next wake-up is in the future or unset, and closed or blocked runs', async () => {
        for (const id of ['timer', 'waiting', 'closed', 'blocked', 'due']) await start(id);
        await suspend(await mustAcquire('run-timer'), 1, { timerAt: clock.now() + 500 });
        await suspend(await mustAcquire('run-waiting'), 1, {});
        await closeRun('run-closed', 'completed');
        await journal.commit(await mustAcquire('run-blocked'), commitOf(1, { block: boom }));
        expect(await dueIds()).toEqual(['run-due']);
        clock.advance(500);
        expect(await dueIds()).toEqual(['run-timer']);
      });

      it('acquire leases an open run whether due or not, but not one whose lease is held, and not a closed run', async () => {
        const run = await start('a');
        await suspend(await mustAcquire(run.runId), 1, {}); // not due
        const lease = await journal.acquire(run.runId, 'w2', 500);
        expect(lease).toMatchObject({ runId: run.runId, owner: 'w2', expiresAt: clock.now() + 500 });
        expect(await journal.acquire(run.runId, 'w3', 500)).toBeUndefined();
        clock.advance(500);
        const taken = await journal.acquire(run.runId, 'w3', 500);
        expect(taken?.owner).toBe('w3');
        expect(taken?.token).not.toBe(lease!.token);

        await closeRun((await start('z')).runId, 'completed');
        expect(await journal.acquire('run-z', 'w1', 500)).toBeUndefined();
        expect(await journal.acquire('unknown', 'w1', 500)).toBeUndefined();
      });

      it('acquireMany leases the free open runs of a burst in one call, each with its pending inbox', async () => {
        const [a, b, c] = [await start('ma'), await start('mb'), await start('mc')];
        await suspend(await mustAcquire(a.runId), 1, {});
        await suspend(await mustAcquire(b.runId), 1, {});
        const held = await mustAcquire(c.runId, 'other'); // held by someone else: left out
        await journal.signal(a.runId, { name: 'go', payload: 1, signalId: 's1' });
        await journal.signal(a.runId, { name: 'go', payload: 2, signalId: 's2' });
        await journal.cancel(b.runId, { reason: 'stop', mode: 'cancel', graceMs: 1000, maxChildDepth: 10 });
        await closeRun((await start('mz')).runId, 'completed');
        const leases = await journal.acquireMany([a.runId, b.runId, c.runId, 'run-mz', 'unknown', a.runId], 'w2', 500);
        const byId = new Map(leases.map((l) => [l.runId, l]));
        expect([...byId.keys()].sort()).toEqual([a.runId, b.runId]);
        expect(leases).toHaveLength(2);
        expect(byId.get(a.runId)).toMatchObject({ owner: 'w2', expiresAt: clock.now() + 500, lastSeq: 1, inboxPending: true });
        expect(byId.get(a.runId)!.inbox!.signals.map((x) => [x.signalId, x.name, x.payload])).toEqual([
          ['s1', 'go', 1],
          ['s2', 'go', 2],
        ]);
        expect(byId.get(a.runId)!.inbox!.cancel).toBeNull();
        expect(byId.get(b.runId)!.inbox).toEqual({ signals: [], cancel: { reason: 'stop', deadline: clock.now() + 1000, requestedAt: clock.now() } });
        expect((await journal.getRun(c.runId))!.leaseOwner).toBe(held.owner);
        expect(await journal.acquireMany([a.runId], 'w3', 500)).toEqual([]); // now held by w2
        expect(await journal.acquireMany([], 'w3', 500)).toEqual([]);
      });

      it('renew extends a held lease and fails with LeaseLostError once it was taken over', async () => {
        const run = await start('a');
        const lease = await mustAcquire(run.runId);
        clock.advance(LEASE_MS - 1);
        const renewed = await journal.renew(lease, 5000);
        expect(renewed).toEqual({ ...lease, expiresAt: clock.now() + 5000 });
        expect((await journal.getRun(run.runId))!.leaseExpiresAt).toBe(clock.now() + 5000);
        clock.advance(4999);
        expect(await journal.acquire(run.runId, 'w2', 100)).toBeUndefined(); // the renewal kept it
        clock.advance(1);
        await mustAcquire(run.runId, 'w2');
        await expect(journal.renew(renewed, 5000)).rejects.toBeInstanceOf(LeaseLostError);
      });

      it('release gives the lease up, so the run can be claimed at once; releasing a lost lease does nothing', async () => {
        const run = await start('a');
        const lease = await mustAcquire(run.runId);
        await journal.release(lease);
        expect(await journal.getRun(run.runId)).toMatchObject({ leaseOwner: null, leaseExpiresAt: null });
        await expect(journal.renew(lease, 100)).rejects.toBeInstanceOf(LeaseLostError);
        await expect(journal.commit(lease, commitOf(1))).rejects.toBeInstanceOf(LeaseLostError);
        const next = (await journal.claimDue({ owner: 'w2', queues: [QUEUE], limit: 1, leaseMs: 100 }))[0]!;
        expect(next.owner).toBe('w2');
        await journal.release(lease); // stale: must not clear w2's lease
        expect((await journal.getRun(run.runId))!.leaseOwner).toBe('w2');
        await journal.release({ ...lease, runId: 'unknown' });
      });

      it('a commit with release suspends the run: lease cleared, due per its wait', async () => {
        const run = await start('a');
        const lease = await mustAcquire(run.runId);
        await journal.commit(lease, commitOf(1, { events: [sideEffect(1)], wait: waitOn({ timerAt: clock.now() + 10 }), release: true }));
        expect(await journal.getRun(run.runId)).toMatchObject({ leaseOwner: null, leaseExpiresAt: null, nextWakeupAt: clock.now() + 10, lastSeq: 2 });
        await expect(journal.commit(lease, commitOf(2))).rejects.toBeInstanceOf(LeaseLostError);
      });
    });

    // ---- misconfigured fleets: workers claim only what they can run; a run records what it is stuck on ----

    describe('misconfigured fleets', () => {
      const activityScheduled = (path: string, name: string): NewEvent => ({ type: 'ActivityScheduled', payload: { path, name, inputHash: 'h', input: null } });
      const stallOf = (over: Partial<RunStall> = {}): RunStall => ({
        reason: 'activity_unavailable',
        activity: 'cancelHotel',
        path: '1',
        workerId: 'w1',
        attempts: 1,
        since: clock.now(),
        nextAttemptAt: clock.now() + 1000,
        ...over,
      });

      it('claimDue with workflows leases only runs of those workflows; the others stay due for a claimer that has them', async () => {
        await start('a', { workflow: 'known' });
        clock.advance(1);
        await start('b', { workflow: 'unknown' });
        clock.advance(1);
        await start('c', { workflow: 'other' });
        const claim = (owner: string, workflows: string[]) => journal.claimDue({ owner, queues: [QUEUE], limit: 10, leaseMs: LEASE_MS, workflows });
        expect((await claim('w1', ['known', 'other'])).map((l) => l.runId)).toEqual(['run-a', 'run-c']);
        expect(await claim('w1', ['known', 'other'])).toEqual([]);
        expect(await claim('w1', [])).toEqual([]);
        const b = await journal.getRun('run-b');
        expect(b).toMatchObject({ status: 'running', leaseOwner: null, nextWakeupAt: expect.any(Number) });
        expect(b!.nextWakeupAt!).toBeLessThanOrEqual(clock.now());
        expect((await claim('w2', ['unknown'])).map((l) => l.runId)).toEqual(['run-b']);
      });

      it('acquire with workflows refuses a run of another workflow (and leaves it free)', async () => {
        const run = await start('a', { workflow: 'unknown' });
        expect(await journal.acquire(run.runId, 'w1', LEASE_MS, [QUEUE], ['known'])).toBeUndefined();
        expect(await journal.acquire(run.runId, 'w1', LEASE_MS, undefined, [])).toBeUndefined();
        expect((await journal.getRun(run.runId))!.leaseOwner).toBeNull();
        expect(await journal.acquire(run.runId, 'w2', LEASE_MS, [QUEUE], ['known', 'unknown'])).toMatchObject({ runId: run.runId, owner: 'w2' });
      });

      it('a stall is written with the releasing commit, handed out with the next lease, kept by commits that do not touch it', async () => {
        const run = await start('a');
        expect(run.stall).toBeNull();
        const lease = await mustAcquire(run.runId);
        const stall = stallOf();
        await journal.commit(lease, commitOf(1, { events: [activityScheduled('1', 'cancelHotel')], wait: waitOn({ timerAt: stall.nextAttemptAt }), release: true, stall }));
        expect(await journal.getRun(run.runId)).toMatchObject({ stall, leaseOwner: null, nextWakeupAt: stall.nextAttemptAt });
        clock.advance(1000);
        const [next] = await journal.claimDue({ owner: 'w2', queues: [QUEUE], limit: 1, leaseMs: LEASE_MS });
        expect(next).toMatchObject({ runId: run.runId, stall });
        // a commit that says nothing about the stall (a signal journaled, say) keeps it
        await journal.commit(next!, commitOf(2, { events: [sideEffect(3)], wait: waitOn({ busy: true }) }));
        expect((await journal.getRun(run.runId))!.stall).toEqual(stall);
        // the next stall (a longer backoff) replaces it
        const again = stallOf({ workerId: 'w2', attempts: 2, nextAttemptAt: clock.now() + 2000 });
        await journal.commit(next!, commitOf(3, { wait: waitOn({ timerAt: again.nextAttemptAt }), release: true, stall: again }));
        expect((await journal.getRun(run.runId))!.stall).toEqual(again);
        clock.advance(2000);
        expect((await journal.acquire(run.runId, 'w3', LEASE_MS))?.stall).toEqual(again);
      });

      it('the stall is cleared by the commit that journals the stalled activity\'s result, by stall: null, by a block and by a close', async () => {
        const completed: NewEvent = { type: 'ActivityCompleted', payload: { path: '1', result: 'ok', closedAt: clock.now(), attempts: 1 } };
        const other: NewEvent = { type: 'ActivityCompleted', payload: { path: '0', result: 'ok', closedAt: clock.now(), attempts: 1 } };
        for (const id of ['result', 'cleared', 'blocked', 'closed']) {
          await start(id);
          await journal.commit(await mustAcquire(`run-${id}`), commitOf(1, { events: [activityScheduled('0', 'bookHotel'), activityScheduled('1', 'cancelHotel')], release: true, stall: stallOf() }));
        }
        const l1 = await mustAcquire('run-result');
        await journal.commit(l1, commitOf(3, { events: [other], wait: waitOn({ busy: true }) }));
        expect((await journal.getRun('run-result'))!.stall).not.toBeNull(); // another activity's result: still stalled
        await journal.commit(l1, commitOf(4, { events: [completed], wait: waitOn({}) }));
        expect((await journal.getRun('run-result'))!.stall).toBeNull();

        await journal.commit(await mustAcquire('run-cleared'), commitOf(3, { wait: waitOn({ busy: true }), stall: null }));
        expect((await journal.getRun('run-cleared'))!.stall).toBeNull();

        await journal.commit(await mustAcquire('run-blocked'), commitOf(3, { block: boom }));
        expect((await journal.getRun('run-blocked'))!.stall).toBeNull();

        await journal.commit(await mustAcquire('run-closed'), commitOf(3, { events: [{ type: 'RunCompleted', payload: { result: 1 } }], close: { status: 'completed', result: 1 } }));
        expect((await journal.getRun('run-closed'))!.stall).toBeNull();
      });

      it('claimDue with activities leaves a run stalled on an activity the claimer lacks to those that have it, for graceMs past its next attempt', async () => {
        const run = await start('a');
        const stall = stallOf({ nextAttemptAt: clock.now() + 1000 });
        await journal.commit(await mustAcquire(run.runId), commitOf(1, { events: [activityScheduled('1', 'cancelHotel')], wait: waitOn({ timerAt: stall.nextAttemptAt }), release: true, stall }));
        const lacking = () => journal.claimDue({ owner: 'lacking', queues: [QUEUE], limit: 10, leaseMs: LEASE_MS, activities: { names: ['bookHotel'], graceMs: 5000 } });
        const having = () => journal.claimDue({ owner: 'having', queues: [QUEUE], limit: 10, leaseMs: LEASE_MS, activities: { names: ['bookHotel', 'cancelHotel'], graceMs: 5000 } });
        clock.advance(999);
        expect(await having()).toEqual([]); // not due yet for anybody
        clock.advance(1);
        expect(await lacking()).toEqual([]);
        clock.advance(4999);
        expect(await lacking()).toEqual([]);
        const [lease] = await having();
        expect(lease?.runId).toBe(run.runId);
        await journal.release(lease!);
        clock.advance(1);
        expect((await lacking()).map((l) => l.runId)).toEqual([run.runId]);
      });
    });

    // ---- close and block ----

    describe('close and block', () => {
      it('close sets status, result, error and close time, clears the lease, and fences further appends', async () => {
        const run = await start('a');
        const lease = await mustAcquire(run.runId);
        clock.advance(42);
        await journal.commit(lease, commitOf(1, { events: [{ type: 'RunFailed', payload: { error: boom } }], close: { status: 'failed', error: boom } }));
        expect(await journal.getRun(run.runId)).toMatchObject({
          status: 'failed',
          result: null,
          error: boom,
          closedAt: clock.now(),
          nextWakeupAt: null,
          leaseOwner: null,
          leaseExpiresAt: null,
          lastSeq: 2,
        });
        await expect(journal.commit(lease, commitOf(2, { events: [sideEffect(1)] }))).rejects.toBeInstanceOf(LeaseLostError);
        await expect(journal.renew(lease, 100)).rejects.toBeInstanceOf(LeaseLostError);
        expect(await journal.acquire(run.runId, 'w2', 100)).toBeUndefined();
        expect(await dueIds()).toEqual([]);
        expect(await journal.readEvents(run.runId)).toHaveLength(2);
      });

      it('close keeps the result; a missing result is null', async () => {
        await start('a');
        await start('b');
        await closeRun('run-a', 'completed', { result: { total: 3, items: ['x'] } });
        await journal.commit(await mustAcquire('run-b'), commitOf(1, { close: { status: 'completed' } }));
        expect(await journal.getRun('run-a')).toMatchObject({ status: 'completed', result: { total: 3, items: ['x'] }, error: null });
        expect(await journal.getRun('run-b')).toMatchObject({ status: 'completed', result: null, error: null });
      });

      it('block sets the run blocked with its error; it is not claimable and takes no appends', async () => {
        const run = await start('a');
        const lease = await mustAcquire(run.runId);
        await journal.commit(lease, commitOf(1, { events: [{ type: 'RunBlocked', payload: { error: boom } }], wait: waitOn({ busy: true }), block: boom }));
        expect(await journal.getRun(run.runId)).toMatchObject({ status: 'blocked', error: boom, nextWakeupAt: null, leaseOwner: null, closedAt: null, lastSeq: 2 });
        expect(await dueIds()).toEqual([]);
        expect(await journal.acquire(run.runId, 'w2', 100)).toBeUndefined();
        await expect(journal.commit(lease, commitOf(2))).rejects.toBeInstanceOf(LeaseLostError);
      });
    });

    // ---- wake rules ----

    describe('wake-ups', () => {
      it('timerAt makes a run due only when the clock reaches it', async () => {
        const run = await start('a');
        await suspend(await mustAcquire(run.runId), 1, { timerAt: clock.now() + 1000 });
        expect((await journal.getRun(run.runId))!.nextWakeupAt).toBe(clock.now() + 1000);
        clock.advance(999);
        expect(await dueIds()).toEqual([]);
        clock.advance(1);
        expect(await dueIds()).toEqual([run.runId]);
      });

      it('busy keeps the run due now, whatever else it waits on', async () => {
        const run = await start('a');
        const lease = await mustAcquire(run.runId);
        await journal.commit(lease, commitOf(1, { wait: waitOn({ busy: true, timerAt: clock.now() + 1000, onClose: ['x'] }) }));
        expect((await journal.getRun(run.runId))!.nextWakeupAt).toBe(clock.now());
        // held by its worker, so not claimable until the lease expires: then whoever takes over redoes the work
        expect(await dueIds()).toEqual([]);
        clock.advance(LEASE_MS);
        expect(await dueIds()).toEqual([run.runId]);
      });

      it('a run that waits on nothing has no next wake-up', async () => {
        const run = await start('a');
        await suspend(await mustAcquire(run.runId), 1, {});
        expect((await journal.getRun(run.runId))!.nextWakeupAt).toBeNull();
      });

      it('onClose: a child closing (any status) wakes its parent, and the commit reports it', async () => {
        const { parent, lease, seq } = await withChildren('p', [childRun('p', 'a'), childRun('p', 'b')]);
        await suspend(lease, seq, { onClose: ['run-p-a'] });
        expect(await isDue(parent.runId)).toBe(false);

        expect((await closeRun('run-p-b', 'completed')).wokeParent).toBeNull(); // not waited on
        expect(await isDue(parent.runId)).toBe(false);
        clock.advance(7);
        expect((await closeRun('run-p-a', 'completed', { result: 1 })).wokeParent).toBe(parent.runId);
        expect((await journal.getRun(parent.runId))!.nextWakeupAt).toBe(clock.now());
        expect(await dueIds()).toEqual([parent.runId]);
      });

      it('onFailure: only an unsuccessful close wakes the parent', async () => {
        const kids = ['ok', 'failed', 'cancelled'].map((k) => childRun('p', k));
        const { parent, lease, seq } = await withChildren('p', kids);
        await suspend(lease, seq, { onFailure: kids.map((k) => k.runId) });

        expect((await closeRun('run-p-ok', 'completed')).wokeParent).toBeNull();
        expect(await isDue(parent.runId)).toBe(false);
        expect((await closeRun('run-p-cancelled', 'cancelled')).wokeParent).toBe(parent.runId);
        expect(await isDue(parent.runId)).toBe(true);

        const again = await mustAcquire(parent.runId);
        await suspend(again, seq, { onFailure: ['run-p-failed'] });
        expect(await isDue(parent.runId)).toBe(false);
        expect((await closeRun('run-p-failed', 'failed', { error: boom })).wokeParent).toBe(parent.runId);
      });

      it('onAllClosed: the parent wakes only when every listed child has closed', async () => {
        const kids = ['a', 'b', 'c'].map((k) => childRun('p', k));
        const { parent, lease, seq } = await withChildren('p', kids);
        // a barrier: wake on the first failure, or when all have closed
        await suspend(lease, seq, { onFailure: kids.map((k) => k.runId), onAllClosed: kids.map((k) => k.runId) });

        expect((await closeRun('run-p-a', 'completed')).wokeParent).toBeNull();
        expect((await closeRun('run-p-b', 'completed')).wokeParent).toBeNull();
        expect(await isDue(parent.runId)).toBe(false);
        expect((await closeRun('run-p-c', 'completed')).wokeParent).toBe(parent.runId);
        expect(await isDue(parent.runId)).toBe(true);
      });

      it('onAllClosed over some of the open children: the others closing, even failing, neither count nor wake', async () => {
        // (a barrier over every open child is stored as a flag on PostgreSQL, migration 11; this one is not)
        const kids = ['a', 'b', 'other'].map((k) => childRun('p', k));
        const { parent, lease, seq } = await withChildren('p', kids);
        const listed = ['run-p-a', 'run-p-b'];
        await suspend(lease, seq, { onFailure: listed, onAllClosed: listed });
        expect((await closeRun('run-p-other', 'failed', { error: boom })).wokeParent).toBeNull();
        expect((await closeRun('run-p-a', 'completed')).wokeParent).toBeNull();
        expect(await isDue(parent.runId)).toBe(false);
        expect((await closeRun('run-p-b', 'completed')).wokeParent).toBe(parent.runId);
      });

      it('onAllClosed over every open child, some closed already: the last open one wakes the parent', async () => {
        const kids = ['a', 'b', 'c'].map((k) => childRun('p', k));
        const { parent, lease, seq } = await withChildren('p', kids);
        await closeRun('run-p-a', 'completed');
        // the engine still lists a (its outcome not yet delivered) with the open ones
        await suspend(lease, seq, { onFailure: kids.map((k) => k.runId), onAllClosed: kids.map((k) => k.runId) });
        expect(await isDue(parent.runId)).toBe(false);
        expect((await closeRun('run-p-b', 'completed')).wokeParent).toBeNull();
        expect((await closeRun('run-p-c', 'completed')).wokeParent).toBe(parent.runId);
      });

      it('onAllClosed with onFailure: the first failure wakes the parent before the others close', async () => {
        const kids = ['a', 'b'].map((k) => childRun('p', k));
        const { parent, lease, seq } = await withChildren('p', kids);
        await suspend(lease, seq, { onFailure: kids.map((k) => k.runId), onAllClosed: kids.map((k) => k.runId) });
        expect((await closeRun('run-p-b', 'timed_out')).wokeParent).toBe(parent.runId);
      });

      it('a wake never postpones a run that was already due earlier', async () => {
        const { parent, lease, seq } = await withChildren('p', [childRun('p', 'a')]);
        const timerAt = clock.now() + 10;
        await suspend(lease, seq, { timerAt, onClose: ['run-p-a'] });
        clock.advance(50);
        await closeRun('run-p-a', 'completed');
        expect((await journal.getRun(parent.runId))!.nextWakeupAt).toBe(timerAt);
      });

      it('a child closing while its parent holds the lease makes the parent due; it is claimable after release', async () => {
        const { parent, lease, seq } = await withChildren('p', [childRun('p', 'a')]);
        await journal.commit(lease, commitOf(seq, { wait: waitOn({ onClose: ['run-p-a'] }) })); // suspended, lease kept
        expect((await closeRun('run-p-a', 'completed')).wokeParent).toBe(parent.runId);
        expect(await dueIds()).toEqual([]);
        await journal.release(lease);
        expect(await dueIds()).toEqual([parent.runId]);
      });

      it('no lost wake-up: a wait recorded after the child already closed makes the parent due at once', async () => {
        const kids = ['a', 'b', 'c'].map((k) => childRun('p', k));
        const { parent, lease, seq } = await withChildren('p', kids);
        await journal.commit(lease, commitOf(seq, { wait: waitOn({ busy: true }) })); // the parent is busy with something else
        clock.advance(5);
        expect((await closeRun('run-p-a', 'completed')).wokeParent).toBeNull(); // nobody waits on it yet
        expect((await closeRun('run-p-b', 'failed', { error: boom })).wokeParent).toBeNull();

        const cases: Array<[Partial<WaitSpec>, boolean]> = [
          [{ onClose: ['run-p-a'] }, true],
          [{ onFailure: ['run-p-b'] }, true],
          [{ onFailure: ['run-p-a'] }, false], // it completed: not a failure
          [{ onAllClosed: ['run-p-a', 'run-p-b'] }, true],
          [{ onAllClosed: ['run-p-a', 'run-p-c'] }, false], // c is still open
          [{ onClose: ['run-p-c'], timerAt: clock.now() + 99 }, false],
        ];
        let head = seq;
        let current = lease;
        for (const [wait, due] of cases) {
          await suspend(current, head, wait);
          expect({ wait, due: await isDue(parent.runId) }).toEqual({ wait, due });
          current = await mustAcquire(parent.runId);
          head = (await journal.getRun(parent.runId))!.lastSeq;
        }
      });

      it('a closing root run wakes nobody', async () => {
        await start('a');
        expect((await closeRun('run-a', 'completed')).wokeParent).toBeNull();
      });
    });

    // ---- onWake ----

    describe('onWake', () => {
      it('announces new runs, new unleased children, and parents woken by a child', async () => {
        const seen: string[] = [];
        const off = journal.onWake((ids) => seen.push(...ids));
        try {
          const kids = [childRun('p', 'a'), childRun('p', 'b')];
          const { parent, lease, seq } = await withChildren('p', kids);
          await eventually(() => expect(seen).toEqual(expect.arrayContaining([parent.runId, 'run-p-a', 'run-p-b'])));
          await suspend(lease, seq, { onClose: ['run-p-a'] });
          await closeRun('run-p-a', 'completed');
          await eventually(() => expect(seen.filter((id) => id === parent.runId)).toHaveLength(2));
        } finally {
          off();
        }
      });

      it("announces a root run's close as 'closed' (how Client.result learns it at once), and a child's close not", async () => {
        const closed: string[] = [];
        const off = journal.onWake((ids, kind) => kind === 'closed' && closed.push(...ids));
        try {
          const { parent, lease, seq } = await withChildren('p', [childRun('p', 'a')]);
          await closeRun('run-p-a', 'completed');
          await journal.commit(lease, commitOf(seq, { events: [{ type: 'RunCompleted', payload: { result: 1 } }], close: { status: 'completed', result: 1 } }));
          await eventually(() => expect(closed).toEqual([parent.runId]));
          const other = await start('q');
          await journal.cancel(other.runId, { reason: 'r', mode: 'terminate', graceMs: 0, maxChildDepth: 10 });
          await eventually(() => expect(closed).toEqual([parent.runId, other.runId]));
        } finally {
          off();
        }
      });

      it('children leased to the committing worker are not announced, and unsubscribing stops delivery', async () => {
        const seen: string[] = [];
        const off = journal.onWake((ids) => seen.push(...ids));
        const { lease, seq } = await withChildren('p', [childRun('p', 'leased')], { leaseChildren: true });
        await journal.commit(lease, commitOf(seq, { children: [childRun('p', 'free')] }));
        // notifications arrive in commit order: once 'free' is seen, 'leased' would have been seen before it
        await eventually(() => expect(seen).toContain('run-p-free'));
        expect(seen).not.toContain('run-p-leased');

        off();
        const count = seen.length;
        const later: string[] = [];
        const off2 = journal.onWake((ids) => later.push(...ids));
        await start('late');
        await eventually(() => expect(later).toContain('run-late'));
        off2();
        expect(seen).toHaveLength(count);
      });
    });

    // ---- run lifecycle: signals, cancel, parent-close policy, continue-as-new ----

    /** Commits `kids` as children of a run (under a fresh lease that is then released, as a suspending activation). */
    const spawn = async (parentRunId: string, kids: NewRun[]) => {
      const lease = await mustAcquire(parentRunId, 'spawner');
      const head = (await journal.getRun(parentRunId))!.lastSeq;
      await journal.commit(lease, commitOf(head, { events: kids.map((k, i) => scheduled(k, `${head}.${i}`)), children: kids, release: true }));
    };
    /** Subscribes to onWake and sorts what arrives by kind. */
    const watch = () => {
      const seen = { wake: [] as string[], stop: [] as string[], closed: [] as string[] };
      const off = journal.onWake((ids, kind) => seen[kind ?? 'wake'].push(...ids));
      return { seen, off };
    };
    const policyNotes = async (runId: string) =>
      (await journal.readEvents(runId))
        .filter((e) => e.type === 'ParentClosePolicyApplied')
        .map((e) => e.payload as { childRunId: string; callId: string; policy: string })
        .sort((a, b) => (a.childRunId < b.childRunId ? -1 : 1));
    const statusOf = async (runId: string) => (await journal.getRun(runId))!.status;
    const cancelOpts = (o: Partial<CancelOptions> = {}): CancelOptions => ({ reason: 'stop', mode: 'cancel', graceMs: 0, maxChildDepth: 10, ...o });

    describe('signals', () => {
      it('signal puts the signal in the inbox in send order, once per signal id, and makes the run due now', async () => {
        const run = await start('a');
        await suspend(await mustAcquire(run.runId), 1, { timerAt: clock.now() + 10_000 });
        expect(await isDue(run.runId)).toBe(false);
        clock.advance(3);
        const first = await journal.signal(run.runId, { name: 'go', payload: { z: 1, a: [2] }, signalId: 'one' });
        expect(first).toEqual({ signalId: 'one' });
        expect(await journal.signal(run.runId, { name: 'go', payload: 'different', signalId: 'one' })).toEqual({ signalId: 'one' });
        clock.advance(1);
        const second = await journal.signal(run.runId, { name: 'other' });
        expect(typeof second.signalId).toBe('string');
        await journal.signal(run.runId, { name: 'go', payload: 3, signalId: 'three' });

        const inbox = await journal.inbox(run.runId);
        expect(inbox).toEqual({
          signals: [
            { signalId: 'one', name: 'go', payload: { z: 1, a: [2] }, sentAt: clock.now() - 1 },
            { signalId: second.signalId, name: 'other', payload: null, sentAt: clock.now() },
            { signalId: 'three', name: 'go', payload: 3, sentAt: clock.now() },
          ],
          cancel: null,
        });
        expect(JSON.stringify(inbox.signals[0]!.payload)).toBe('{"z":1,"a":[2]}');
        expect((await journal.getRun(run.runId))!.nextWakeupAt).toBe(clock.now() - 1);
        expect(await dueIds()).toEqual([run.runId]);
      });

      it("a signal's traceparent (OpenTelemetry) travels with it to the inbox and the lease; one sent without has none", async () => {
        const run = await start('tp');
        await suspend(await mustAcquire(run.runId), 1, { timerAt: clock.now() + 10_000 });
        const tp = (n: number) => `00-${'ab'.repeat(16)}-${String(n).padStart(16, '0')}-01`;
        await journal.signal(run.runId, { name: 'go', signalId: 'one', traceparent: tp(1) });
        // sent together (a journal may batch them into one statement)
        await Promise.all([
          journal.signal(run.runId, { name: 'go', signalId: 'two', traceparent: tp(2) }),
          journal.signal(run.runId, { name: 'go', signalId: 'three' }),
        ]);
        const view = (sgs: { signalId: string; traceparent?: string }[]) => sgs.map((x) => [x.signalId, x.traceparent]).sort();
        const expected = [['one', tp(1)], ['three', undefined], ['two', tp(2)]];
        const inbox = await journal.inbox(run.runId);
        expect(view(inbox.signals)).toEqual(expected);
        expect(inbox.signals.find((x) => x.signalId === 'three')).not.toHaveProperty('traceparent');
        const [lease] = await journal.acquireMany([run.runId], 'w2', 500);
        expect(view(lease!.inbox!.signals)).toEqual(expected);
      });

      it('signal to an unknown run is an UnknownRunError, to a closed run a RunClosedError; a bad payload is a PayloadError', async () => {
        await expect(journal.signal('nope', { name: 'go' })).rejects.toBeInstanceOf(UnknownRunError);
        await expect(journal.inbox('nope')).rejects.toBeInstanceOf(UnknownRunError);
        const run = await start('a');
        await expect(journal.signal(run.runId, { name: 'go', payload: { n: 1n } })).rejects.toBeInstanceOf(PayloadError);
        await expect(journal.signal(run.runId, { name: '' })).rejects.toThrow(/name/);
        await closeRun(run.runId, 'completed');
        const err = await journal.signal(run.runId, { name: 'go', signalId: 'late' }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(RunClosedError);
        expect(err).toMatchObject({ runId: run.runId, status: 'completed' });
        expect((await journal.inbox(run.runId)).signals).toEqual([]);
      });

      it('a signal to a blocked run is kept in its inbox (the run is open)', async () => {
        const run = await start('b');
        await journal.commit(await mustAcquire(run.runId), commitOf(1, { block: boom }));
        await journal.signal(run.runId, { name: 'go', signalId: 's' });
        expect((await journal.inbox(run.runId)).signals.map((x) => x.signalId)).toEqual(['s']);
        expect(await dueIds()).toEqual([]);
      });

      it('a commit journaling SignalReceived takes the signal out of the inbox; re-sending its id stays a no-op', async () => {
        const run = await start('a');
        await journal.signal(run.runId, { name: 'go', payload: 1, signalId: 's1' });
        await journal.signal(run.runId, { name: 'go', payload: 2, signalId: 's2' });
        const lease = await mustAcquire(run.runId);
        const received: NewEvent = { type: 'SignalReceived', payload: { signalId: 's1', name: 'go', payload: 1, closedAt: clock.now() } };
        await journal.commit(lease, commitOf(1, { events: [received], wait: waitOn({ timerAt: clock.now() + 500 }) }));
        expect((await journal.inbox(run.runId)).signals.map((x) => x.signalId)).toEqual(['s2']);
        const received2: NewEvent = { type: 'SignalReceived', payload: { signalId: 's2', name: 'go', payload: 2, closedAt: clock.now() } };
        await suspendWith(lease, 2, [received2], { timerAt: clock.now() + 500 });
        expect((await journal.inbox(run.runId)).signals).toEqual([]);
        expect((await journal.getRun(run.runId))!.nextWakeupAt).toBe(clock.now() + 500);

        // a delivered id is still known: sending it again adds nothing and wakes nobody
        await journal.signal(run.runId, { name: 'go', payload: 1, signalId: 's1' });
        expect((await journal.inbox(run.runId)).signals).toEqual([]);
        expect((await journal.getRun(run.runId))!.nextWakeupAt).toBe(clock.now() + 500);
      });

      for (const childless of [false, true]) it(`closes that journal a signal, committed together, take their signals out of the inboxes and leave the others${childless ? ' (roots that started no child: one statement on PostgreSQL)' : ''}`, async () => {
        // (runs that end on the signal they waited for: on PostgreSQL these closes are group-committed)
        const runs = await Promise.all(['a', 'b', 'c'].map((id) => start(id)));
        for (const r of runs) {
          await journal.signal(r.runId, { name: 'go', payload: 1, signalId: `${r.runId}-1` });
          await journal.signal(r.runId, { name: 'go', payload: 2, signalId: `${r.runId}-2` });
        }
        const leases = await Promise.all(runs.map((r) => mustAcquire(r.runId)));
        await Promise.all(
          leases.map((l) =>
            journal.commit(
              l,
              commitOf(1, {
                events: [
                  { type: 'SignalReceived', payload: { signalId: `${l.runId}-1`, name: 'go', payload: 1, closedAt: clock.now() } },
                  { type: 'RunCompleted', payload: { result: 1 } },
                ],
                close: { status: 'completed', result: 1 },
                ...(childless ? { childless } : {}),
              }),
            ),
          ),
        );
        for (const r of runs) {
          expect(await statusOf(r.runId)).toBe('completed');
          expect((await journal.readEvents(r.runId)).map((e) => e.type)).toEqual(['RunStarted', 'SignalReceived', 'RunCompleted']);
          expect((await journal.inbox(r.runId)).signals.map((x) => x.signalId)).toEqual([`${r.runId}-2`]);
        }
      });

      for (const childless of [false, true]) it(`a close whose fence fails inside a batch of closes is refused alone; the others commit${childless ? ' (roots that started no child)' : ''}`, async () => {
        const runs = await Promise.all(['a', 'b', 'c'].map((id) => start(id)));
        const leases = await Promise.all(runs.map((r) => mustAcquire(r.runId)));
        const stale = { ...leases[1]!, token: 'not-the-token' };
        const closeWith = (l: Lease) =>
          journal.commit(l, commitOf(1, { events: [{ type: 'RunCompleted', payload: { result: 1 } }], close: { status: 'completed', result: 1 }, ...(childless ? { childless } : {}) }));
        const out = await Promise.allSettled([closeWith(leases[0]!), closeWith(stale), closeWith(leases[2]!)]);
        expect(out.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
        expect((out[1] as PromiseRejectedResult).reason).toBeInstanceOf(LeaseLostError);
        expect(await statusOf(runs[0]!.runId)).toBe('completed');
        expect(await statusOf(runs[1]!.runId)).toBe('running');
        expect((await journal.readEvents(runs[1]!.runId)).map((e) => e.type)).toEqual(['RunStarted']);
        expect(await statusOf(runs[2]!.runId)).toBe('completed');
      });

      it('a signal that arrived while the run was busy makes its suspend due now, and announced', async () => {
        const run = await start('a');
        const lease = await mustAcquire(run.runId);
        await journal.signal(run.runId, { name: 'go', signalId: 's1' });
        // subscribe after the signal: what is seen next is the commit's own announcement
        const { seen, off } = watch();
        try {
          await suspend(lease, 1, { timerAt: clock.now() + 1000 });
          expect((await journal.getRun(run.runId))!.nextWakeupAt).toBe(clock.now());
          expect(await dueIds()).toEqual([run.runId]);
          await eventually(() => expect(seen.wake).toContain(run.runId));
        } finally {
          off();
        }
      });

      it('a commit signals other runs exactly once by signal id, after creating its children; a closed or missing target drops it', async () => {
        const closed = await start('closed');
        await closeRun(closed.runId, 'completed');
        const parent = await start('p');
        const lease = await mustAcquire(parent.runId);
        const kid = childRun('p', 'k');
        const signals = [
          { runId: kid.runId, signalId: 'sig-1', name: 'go', payload: { x: 1 } },
          { runId: closed.runId, signalId: 'sig-2', name: 'go', payload: null },
          { runId: 'missing', signalId: 'sig-3', name: 'go', payload: null },
        ];
        const res = await journal.commit(lease, commitOf(1, { events: [scheduled(kid, '0')], children: [kid], signals, leaseChildren: true }));
        expect(res.lastSeq).toBe(2);
        expect(await journal.inbox(kid.runId)).toEqual({ signals: [{ signalId: 'sig-1', name: 'go', payload: { x: 1 }, sentAt: clock.now() }], cancel: null });
        expect((await journal.inbox(closed.runId)).signals).toEqual([]);
        // the same signal id again (a re-run of the activation): still one
        clock.advance(5);
        await journal.commit(lease, commitOf(2, { signals: [signals[0]!, { ...signals[0]!, signalId: 'sig-4', payload: 4 }] }));
        expect((await journal.inbox(kid.runId)).signals.map((x) => [x.signalId, x.payload])).toEqual([
          ['sig-1', { x: 1 }],
          ['sig-4', 4],
        ]);
        expect(await journal.getRun('missing')).toBeUndefined();
      });
    });

    describe('cancel', () => {
      it('a graceful cancel records the request, makes the run due now and voids its lease; the first request wins', async () => {
        const { parent, lease: pLease, seq } = await withChildren('p', [childRun('p', 'r')]);
        await suspend(pLease, seq, { onClose: ['run-p-r'] });
        const lease = await mustAcquire('run-p-r', 'wr');
        await journal.commit(lease, commitOf(1, { wait: waitOn({ timerAt: clock.now() + 60_000 }) }));
        const { seen, off } = watch();
        try {
          clock.advance(10);
          const res = await journal.cancel('run-p-r', cancelOpts({ reason: 'user asked', graceMs: 5000 }));
          expect(res).toEqual({ runId: 'run-p-r', status: 'cancelling', closed: [], truncated: [] });
          const request = { reason: 'user asked', deadline: clock.now() + 5000, requestedAt: clock.now() };
          expect(await journal.getRun('run-p-r')).toMatchObject({ status: 'running', leaseOwner: null, nextWakeupAt: clock.now(), cancelRequest: request, closedAt: null });
          expect(await journal.inbox('run-p-r')).toEqual({ signals: [], cancel: request });
          await eventually(() => expect(seen.wake).toContain('run-p-r'));
          expect(seen.stop).toEqual([]);
          // the parent is not woken: its child has not closed
          expect(await isDue(parent.runId)).toBe(false);
          // an activation computed before the request cannot commit (it might start a child that escapes the cascade)
          await expect(journal.commit(lease, commitOf(1, { children: [childRun('r', 'late')] }))).rejects.toBeInstanceOf(LeaseLostError);
          expect(await journal.getRun('run-r-late')).toBeUndefined();

          clock.advance(10);
          expect((await journal.cancel('run-p-r', cancelOpts({ reason: 'again', graceMs: 1 }))).status).toBe('cancelling');
          expect((await journal.getRun('run-p-r'))!.cancelRequest).toEqual(request);

          // whoever takes the run next journals the request; until then, the request keeps the run due
          expect(await isDue('run-p-r')).toBe(true);
          const next = (await journal.getRun('run-p-r'))!;
          const taker = await mustAcquire('run-p-r', 'w2');
          await suspend(taker, next.lastSeq, {});
          expect(await isDue('run-p-r')).toBe(true);
          const again = await mustAcquire('run-p-r', 'w2');
          const taken: NewEvent = { type: 'CancelRequested', payload: { reason: request.reason, deadline: request.deadline, closedAt: request.requestedAt } };
          await suspendWith(again, next.lastSeq, [taken], {});
          expect((await journal.getRun('run-p-r'))!.nextWakeupAt).toBeNull();
          expect((await journal.inbox('run-p-r')).cancel).toEqual(request);
          // a later close clears the request
          await closeRun('run-p-r', 'cancelled', { error: { name: 'CancelledError', message: 'user asked' } });
          expect((await journal.getRun('run-p-r'))!.cancelRequest).toBeNull();
        } finally {
          off();
        }
      });

      it('a cancel with no grace period closes the run at once: lease cleared, a stale writer gets LeaseLostError, the parent is woken', async () => {
        const { parent, lease: pLease, seq } = await withChildren('p', [childRun('p', 'r')]);
        await suspend(pLease, seq, { onClose: ['run-p-r'] });
        const lease = await mustAcquire('run-p-r', 'wr');
        const { seen, off } = watch();
        try {
          clock.advance(7);
          const res = await journal.cancel('run-p-r', cancelOpts({ reason: 'no more' }));
          expect(res).toEqual({ runId: 'run-p-r', status: 'cancelled', closed: [], truncated: [] });
          expect(await journal.getRun('run-p-r')).toMatchObject({
            status: 'cancelled',
            error: { name: 'CancelledError', message: 'no more' },
            closedAt: clock.now(),
            leaseOwner: null,
            leaseExpiresAt: null,
            nextWakeupAt: null,
            cancelRequest: null,
          });
          await expect(journal.commit(lease, commitOf(1, { events: [sideEffect(1)] }))).rejects.toBeInstanceOf(LeaseLostError);
          await expect(journal.renew(lease, 100)).rejects.toBeInstanceOf(LeaseLostError);
          // the journal ends with the request and the closing event, written by the cancel (the stale writer wrote nothing)
          expect((await journal.readEvents('run-p-r')).map((e) => [e.type, e.payload])).toEqual([
            ['RunStarted', expect.anything()],
            ['CancelRequested', { reason: 'no more', deadline: clock.now(), closedAt: clock.now() }],
            ['RunCancelled', { reason: 'no more', forced: true }],
          ]);
          expect((await journal.getRun('run-p-r'))!.lastSeq).toBe(3);
          expect(await journal.acquire('run-p-r', 'w2', 100)).toBeUndefined();
          // awaiters are woken at once, and learn the outcome
          expect((await journal.getRun(parent.runId))!.nextWakeupAt).toBe(clock.now());
          expect(await journal.childOutcomes(parent.runId, ['run-p-r'])).toEqual([
            { childRunId: 'run-p-r', currentRunId: 'run-p-r', callId: 'call-r', status: 'cancelled', result: null, error: { name: 'CancelledError', message: 'no more' }, closedAt: clock.now() },
          ]);
          await eventually(() => expect(seen.stop).toEqual(['run-p-r']));
          await eventually(() => expect(seen.wake).toContain(parent.runId));

          const err = await journal.cancel('run-p-r', cancelOpts()).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(RunClosedError);
          expect(err).toMatchObject({ runId: 'run-p-r', status: 'cancelled' });
          await expect(journal.cancel('nope', cancelOpts())).rejects.toBeInstanceOf(UnknownRunError);
        } finally {
          off();
        }
      });

      it('terminate closes the run as terminated; a graceful cancel of a blocked run closes it too', async () => {
        await start('t');
        const lease = await mustAcquire('run-t');
        const res = await journal.cancel('run-t', cancelOpts({ mode: 'terminate', reason: 'operator', graceMs: 5000 }));
        expect(res.status).toBe('terminated');
        expect(await journal.getRun('run-t')).toMatchObject({ status: 'terminated', error: { name: 'TerminatedError', message: 'operator' }, leaseOwner: null });
        await expect(journal.commit(lease, commitOf(1))).rejects.toBeInstanceOf(LeaseLostError);
        await expect(journal.cancel('run-t', cancelOpts({ mode: 'terminate' }))).rejects.toBeInstanceOf(RunClosedError);

        await start('b');
        await journal.commit(await mustAcquire('run-b'), commitOf(1, { block: boom }));
        expect((await journal.cancel('run-b', cancelOpts({ graceMs: 5000 }))).status).toBe('cancelled');
        expect(await statusOf('run-b')).toBe('cancelled');
      });

      it('the cascade closes exactly the open descendants reachable through non-abandoned links, generation by generation', async () => {
        // p ── r ─┬─ a ─┬─ a1          x ── x1   (another tree)
        //   └ s   │     └─ a2 (abandon)
        //         ├─ b (terminate) ── b1
        //         ├─ c (abandon) ── c1
        //         └─ d (completed)
        const { parent: p, lease: pLease, seq } = await withChildren('p', [childRun('p', 'r'), childRun('p', 's')]);
        await suspend(pLease, seq, { onClose: ['run-p-r'] });
        await spawn('run-p-r', [childRun('r', 'a'), childRun('r', 'b', { parentClosePolicy: 'terminate' }), childRun('r', 'c', { parentClosePolicy: 'abandon' }), childRun('r', 'd')]);
        await spawn('run-r-a', [childRun('a', '1'), childRun('a', '2', { parentClosePolicy: 'abandon' })]);
        await spawn('run-r-b', [childRun('b', '1')]);
        await spawn('run-r-c', [childRun('c', '1')]);
        await closeRun('run-r-d', 'completed', { result: 'd' });
        const { parent: x } = await withChildren('x', [childRun('x', '1')]);
        const aLease = await mustAcquire('run-r-a', 'wa');
        const before = Object.fromEntries(await Promise.all(['run-r-d', 'run-p-s', 'run-x', 'run-x-1', 'run-r-c', 'run-c-1', 'run-a-2'].map(async (id) => [id, await journal.getRun(id)])));
        const { seen, off } = watch();
        try {
          clock.advance(9);
          const res = await journal.cancel('run-p-r', cancelOpts({ reason: 'stop' }));
          expect(res.status).toBe('cancelled');
          expect(res.truncated).toEqual([]);
          // generation by generation: the children first, then the grandchildren
          expect(res.closed.slice(0, 2).sort()).toEqual(['run-r-a', 'run-r-b']);
          expect(res.closed.slice(2).sort()).toEqual(['run-a-1', 'run-b-1']);

          expect(await journal.getRun('run-r-a')).toMatchObject({ status: 'cancelled', error: { name: 'CancelledError', message: 'parent_cancelled' }, closedAt: clock.now(), leaseOwner: null });
          expect(await journal.getRun('run-r-b')).toMatchObject({ status: 'terminated', error: { name: 'TerminatedError', message: 'parent_cancelled' } });
          expect(await journal.getRun('run-a-1')).toMatchObject({ status: 'cancelled', error: { name: 'CancelledError', message: 'parent_cancelled' } });
          expect(await statusOf('run-b-1')).toBe('cancelled');
          // untouched: completed, abandoned (and below them), and everything outside the subtree
          for (const [id, run] of Object.entries(before)) expect({ id, run: await journal.getRun(id) }).toEqual({ id, run });
          expect(x.status).toBe('running');
          // the lease holder of a cascaded run can append nothing more
          await expect(journal.commit(aLease, commitOf((await journal.getRun('run-r-a'))!.lastSeq, { events: [sideEffect(1)] }))).rejects.toBeInstanceOf(LeaseLostError);

          // ParentClosePolicyApplied on the closed parents only, for each child open when it was applied
          expect(await policyNotes('run-p-r')).toEqual([
            { childRunId: 'run-r-a', callId: 'call-a', policy: 'cancel' },
            { childRunId: 'run-r-b', callId: 'call-b', policy: 'terminate' },
            { childRunId: 'run-r-c', callId: 'call-c', policy: 'abandon' },
          ]);
          expect(await policyNotes('run-r-a')).toEqual([
            { childRunId: 'run-a-1', callId: 'call-1', policy: 'cancel' },
            { childRunId: 'run-a-2', callId: 'call-2', policy: 'abandon' },
          ]);
          expect(await policyNotes('run-r-b')).toEqual([{ childRunId: 'run-b-1', callId: 'call-1', policy: 'cancel' }]);
          expect(await policyNotes('run-r-c')).toEqual([]);
          expect(await policyNotes(p.runId)).toEqual([]);
          // appended after the run's own events, gap-free, at the cascade's time
          const rEvents = await journal.readEvents('run-p-r');
          expect(rEvents.map((e) => e.seq)).toEqual(rEvents.map((_, i) => i + 1));
          expect(rEvents.slice(-3).every((e) => e.type === 'ParentClosePolicyApplied' && e.recordedAt === clock.now())).toBe(true);
          expect((await journal.getRun('run-p-r'))!.lastSeq).toBe(rEvents.length);

          // the cancelled run's parent is woken; every closed run is announced as stopped
          expect(await isDue(p.runId)).toBe(true);
          await eventually(() => expect([...seen.stop].sort()).toEqual(['run-a-1', 'run-b-1', 'run-p-r', 'run-r-a', 'run-r-b']));
          await eventually(() => expect(seen.wake).toContain(p.runId));
        } finally {
          off();
        }
      });

      it('terminate cascades with parent_terminated', async () => {
        await withChildren('r', [childRun('r', 'a'), childRun('r', 'b', { parentClosePolicy: 'terminate' })]);
        await spawn('run-r-a', [childRun('a', '1')]);
        const res = await journal.cancel('run-r', cancelOpts({ mode: 'terminate', reason: 'operator' }));
        expect(res.status).toBe('terminated');
        expect(res.closed.sort()).toEqual(['run-a-1', 'run-r-a', 'run-r-b']);
        expect(await journal.getRun('run-r-a')).toMatchObject({ status: 'cancelled', error: { name: 'CancelledError', message: 'parent_terminated' } });
        expect(await journal.getRun('run-r-b')).toMatchObject({ status: 'terminated', error: { name: 'TerminatedError', message: 'parent_terminated' } });
        expect(await journal.getRun('run-a-1')).toMatchObject({ status: 'cancelled', error: { message: 'parent_terminated' } });
      });

      it('descendants deeper than maxChildDepth are left alone and reported as truncated (abandoned ones are not)', async () => {
        // t (0) ── k1 (1) ── k2 (2) ─┬─ k3 (3) ── k4 (4)
        //                            └─ k3a (3, abandon)
        await withChildren('t', [childRun('t', 'k1')]);
        await spawn('run-t-k1', [childRun('k1', 'k2')]);
        await spawn('run-k1-k2', [childRun('k2', 'k3'), childRun('k2', 'k3a', { parentClosePolicy: 'abandon' })]);
        await spawn('run-k2-k3', [childRun('k3', 'k4')]);
        const res = await journal.cancel('run-t', cancelOpts({ maxChildDepth: 2 }));
        expect(res).toEqual({ runId: 'run-t', status: 'cancelled', closed: ['run-t-k1', 'run-k1-k2'], truncated: ['run-k2-k3'] });
        expect(await statusOf('run-k2-k3')).toBe('running');
        expect(await statusOf('run-k3-k4')).toBe('running');
        expect(await statusOf('run-k2-k3a')).toBe('running');
        expect(await policyNotes('run-k1-k2')).toEqual([{ childRunId: 'run-k2-k3a', callId: 'call-k3a', policy: 'abandon' }]);
      });

      it('a graceful cancel closes the descendants at once; the run itself stays open and gets no ParentClosePolicyApplied', async () => {
        await withChildren('g', [childRun('g', 'a'), childRun('g', 'b', { parentClosePolicy: 'abandon' })]);
        await spawn('run-g-a', [childRun('a', '1')]);
        const { seen, off } = watch();
        try {
          const res = await journal.cancel('run-g', cancelOpts({ graceMs: 1000 }));
          expect(res.status).toBe('cancelling');
          expect(res.closed).toEqual(['run-g-a', 'run-a-1']);
          expect(await statusOf('run-g')).toBe('running');
          expect(await statusOf('run-g-b')).toBe('running');
          expect(await policyNotes('run-g')).toEqual([]);
          expect(await policyNotes('run-g-a')).toEqual([{ childRunId: 'run-a-1', callId: 'call-1', policy: 'cancel' }]);
          await eventually(() => expect([...seen.stop].sort()).toEqual(['run-a-1', 'run-g-a']));
          await eventually(() => expect(seen.wake).toContain('run-g'));
          expect(seen.stop).not.toContain('run-g');
        } finally {
          off();
        }
      });
    });

    describe('parent-close policy on close', () => {
      it('closing a run closes its open children per policy and journals ParentClosePolicyApplied after its own events', async () => {
        const kids = [childRun('r', 'c'), childRun('r', 't', { parentClosePolicy: 'terminate' }), childRun('r', 'a', { parentClosePolicy: 'abandon' }), childRun('r', 'd')];
        const { parent, lease, seq } = await withChildren('r', kids);
        await spawn('run-r-c', [childRun('c', 'g')]);
        await closeRun('run-r-d', 'completed');
        const { seen, off } = watch();
        try {
          clock.advance(3);
          const res = await journal.commit(lease, commitOf(seq, { events: [{ type: 'RunCompleted', payload: { result: 'done' } }], close: { status: 'completed', result: 'done' } }));
          expect(res.lastSeq).toBe(seq + 1);
          expect(await journal.getRun('run-r-c')).toMatchObject({ status: 'cancelled', error: { name: 'CancelledError', message: 'parent_closed: completed' }, closedAt: clock.now() });
          expect(await journal.getRun('run-r-t')).toMatchObject({ status: 'terminated', error: { name: 'TerminatedError', message: 'parent_closed: completed' } });
          // each child's own journal says why it closed: the request and its closing event, naming the parent's close
          const tail = async (runId: string) =>
            (await journal.readEvents(runId)).filter((e) => !['RunStarted', 'ChildScheduled'].includes(e.type)).map((e) => [e.type, e.payload]);
          expect(await tail('run-r-c')).toEqual([
            ['CancelRequested', { reason: 'parent_closed: completed', deadline: clock.now(), closedAt: clock.now() }],
            ['RunCancelled', { reason: 'parent_closed: completed', forced: true }],
            ['ParentClosePolicyApplied', { childRunId: 'run-c-g', callId: 'call-g', policy: 'cancel' }],
          ]);
          expect(await tail('run-r-t')).toEqual([['RunTerminated', { reason: 'parent_closed: completed' }]]);
          expect((await tail('run-c-g')).map(([t]) => t)).toEqual(['CancelRequested', 'RunCancelled']);
          expect((await journal.getRun('run-r-t'))!.lastSeq).toBe(2);
          expect(await statusOf('run-r-a')).toBe('running');
          expect(await statusOf('run-r-d')).toBe('completed');
          expect(await statusOf('run-c-g')).toBe('cancelled');
          const events = await journal.readEvents(parent.runId);
          expect(events.slice(seq).map((e) => e.type)).toEqual(['RunCompleted', 'ParentClosePolicyApplied', 'ParentClosePolicyApplied', 'ParentClosePolicyApplied']);
          expect(await policyNotes(parent.runId)).toEqual([
            { childRunId: 'run-r-a', callId: 'call-a', policy: 'abandon' },
            { childRunId: 'run-r-c', callId: 'call-c', policy: 'cancel' },
            { childRunId: 'run-r-t', callId: 'call-t', policy: 'terminate' },
          ]);
          expect((await journal.getRun(parent.runId))!).toMatchObject({ status: 'completed', result: 'done', lastSeq: events.length });
          expect(await policyNotes('run-r-c')).toEqual([{ childRunId: 'run-c-g', callId: 'call-g', policy: 'cancel' }]);
          await eventually(() => expect([...seen.stop].sort()).toEqual(['run-c-g', 'run-r-c', 'run-r-t']));
        } finally {
          off();
        }
      });

      it('a close applies the policies down to the commit maxChildDepth only', async () => {
        const { lease, seq } = await withChildren('r', [childRun('r', 'c')]);
        await spawn('run-r-c', [childRun('c', 'g')]);
        await journal.commit(lease, commitOf(seq, { close: { status: 'failed', error: boom }, maxChildDepth: 1 }));
        expect(await statusOf('run-r-c')).toBe('cancelled');
        expect(await statusOf('run-c-g')).toBe('running');
      });

      it('a cancelled close (the code finished after CancelledError) also applies the policies', async () => {
        const { lease, seq } = await withChildren('r', [childRun('r', 'c')]);
        const error = { name: 'CancelledError', message: 'stop' };
        await journal.commit(lease, commitOf(seq, { events: [{ type: 'RunCancelled', payload: { reason: 'stop', forced: false } }], close: { status: 'cancelled', error } }));
        expect(await journal.getRun('run-r')).toMatchObject({ status: 'cancelled', error, cancelRequest: null });
        expect(await statusOf('run-r-c')).toBe('cancelled');
      });

      it('closeChildren closes the children a run stopped waiting for, per the policy given, with their descendants', async () => {
        const kids = [childRun('r', 'c'), childRun('r', 't'), childRun('r', 'a'), childRun('r', 'k')];
        const { parent, lease, seq } = await withChildren('r', kids);
        await spawn('run-r-c', [childRun('c', 'g')]);
        const { seen, off } = watch();
        try {
          const closeChildren = [
            { runId: 'run-r-c', policy: 'cancel' as const },
            { runId: 'run-r-t', policy: 'terminate' as const },
            { runId: 'run-r-a', policy: 'abandon' as const },
            { runId: 'run-x', policy: 'cancel' as const }, // not a child: ignored
          ];
          await start('x');
          await journal.commit(lease, commitOf(seq, { closeChildren, wait: waitOn({ onClose: ['run-r-k'] }) }));
          const timeout = { name: 'ChildTimeoutError', message: 'the parent stopped waiting (timeout)' };
          expect(await journal.getRun('run-r-c')).toMatchObject({ status: 'cancelled', error: timeout });
          expect(await journal.getRun('run-r-t')).toMatchObject({ status: 'terminated', error: timeout });
          expect(await statusOf('run-r-a')).toBe('running');
          expect(await statusOf('run-r-k')).toBe('running');
          expect(await statusOf('run-x')).toBe('running');
          expect(await statusOf('run-c-g')).toBe('cancelled');
          // the parent is open: its journal is its own (it journals the outcomes itself)
          expect(await policyNotes(parent.runId)).toEqual([]);
          expect(await policyNotes('run-r-c')).toEqual([{ childRunId: 'run-c-g', callId: 'call-g', policy: 'cancel' }]);
          expect((await journal.getRun(parent.runId))!).toMatchObject({ status: 'running', leaseOwner: 'w1', lastSeq: seq });
          await eventually(() => expect([...seen.stop].sort()).toEqual(['run-c-g', 'run-r-c', 'run-r-t']));
        } finally {
          off();
        }
      });
    });

    describe('continue-as-new', () => {
      const continueAs = async (runId: string, nextRunId: string, input: unknown, lease?: Lease) => {
        const run = (await journal.getRun(runId))!;
        const l = lease ?? (await mustAcquire(runId, 'cont'));
        const next: NewRun = { runId: nextRunId, workflowId: run.workflowId, workflow: run.workflow, input, queue: run.queue, depth: run.depth };
        return journal.commit(
          l,
          commitOf(run.lastSeq, { events: [{ type: 'RunContinued', payload: { input, nextRunId } }], close: { status: 'continued', next } }),
        );
      };

      it('a run that continued closes its inherited open children by policy, even when its writer says it started none', async () => {
        // (Commit.childless is the writer's word that the run never started a child: true of run-q2's own code, yet it
        // inherited run-q's open child, which must still follow its parent-close policy)
        const { lease } = await withChildren('q', [childRun('q', 'kid', { parentClosePolicy: 'terminate' })]);
        await continueAs('run-q', 'run-q2', null, lease);
        const other = await start('other');
        const [l2, lo] = await Promise.all([mustAcquire('run-q2'), mustAcquire(other.runId)]);
        // closed together with another root that started no child (one batch on PostgreSQL)
        const done = { events: [{ type: 'RunCompleted', payload: { result: null } } as NewEvent], close: { status: 'completed' as const }, childless: true };
        await Promise.all([journal.commit(l2, commitOf(1, done)), journal.commit(lo, commitOf(1, done))]);
        expect(await statusOf('run-q-kid')).toBe('terminated');
        expect(await statusOf('run-q2')).toBe('completed');
        expect(await statusOf(other.runId)).toBe('completed');
      });

      it('closes the run as continued and starts the next run of the same workflow id, which takes over open children and the inbox', async () => {
        const { parent, lease: pLease, seq } = await withChildren('p', [childRun('p', 'c', { parentClosePolicy: 'terminate' })]);
        await suspend(pLease, seq, { onClose: ['run-p-c'] });
        await spawn('run-p-c', [childRun('c', 'open'), childRun('c', 'done')]);
        await closeRun('run-c-done', 'completed');
        await journal.signal('run-p-c', { name: 'go', payload: 1, signalId: 's1' });
        await journal.signal('run-p-c', { name: 'go', payload: 2, signalId: 's2' });
        const lease = await mustAcquire('run-p-c');
        const head = (await journal.getRun('run-p-c'))!.lastSeq;
        const received: NewEvent = { type: 'SignalReceived', payload: { signalId: 's1', name: 'go', payload: 1, closedAt: clock.now() } };
        await journal.commit(lease, commitOf(head, { events: [received], wait: waitOn({ busy: true }) }));
        await journal.signal('run-p-c', { name: 'go', payload: 3, signalId: 's3' });
        const { seen, off } = watch();
        try {
          clock.advance(4);
          await continueAs('run-p-c', 'run-p-c2', { n: 2 }, lease);
          const prev = (await journal.getRun('run-p-c'))!;
          expect(prev).toMatchObject({ status: 'continued', continuedTo: 'run-p-c2', closedAt: clock.now(), leaseOwner: null, nextWakeupAt: null });
          const next = (await journal.getRun('run-p-c2'))!;
          expect(next).toMatchObject({
            runId: 'run-p-c2',
            workflowId: 'wf-p/c',
            workflow: 'kid',
            status: 'running',
            input: { n: 2 },
            parentRunId: parent.runId,
            callId: 'call-c',
            rootRunId: parent.runId,
            depth: 1,
            parentClosePolicy: 'terminate',
            continuedFrom: 'run-p-c',
            continuedTo: null,
            nextWakeupAt: clock.now(),
            createdAt: clock.now(),
            leaseOwner: null,
            lastSeq: 1,
            cancelRequest: null,
          });
          expect(await journal.readEvents('run-p-c2')).toEqual([
            {
              seq: 1,
              recordedAt: clock.now(),
              type: 'RunStarted',
              payload: { workflow: 'kid', workflowId: 'wf-p/c', input: { n: 2 }, depth: 1, parentRunId: parent.runId, callId: 'call-c' },
            },
          ]);
          // no parent-close policy on continue: the open child moved, the closed one stays
          expect(await statusOf('run-c-open')).toBe('running');
          expect((await journal.listChildren('run-p-c2')).map((r) => r.runId)).toEqual(['run-c-open']);
          expect((await journal.listChildren('run-p-c')).map((r) => r.runId)).toEqual(['run-c-done']);
          expect(await policyNotes('run-p-c')).toEqual([]);
          // undelivered signals moved, in order; their ids stay known; the old run takes no more signals
          expect((await journal.inbox('run-p-c2')).signals.map((x) => x.signalId)).toEqual(['s2', 's3']);
          expect((await journal.inbox('run-p-c')).signals).toEqual([]);
          await journal.signal('run-p-c2', { name: 'go', payload: 'again', signalId: 's2' });
          expect((await journal.inbox('run-p-c2')).signals.map((x) => x.signalId)).toEqual(['s2', 's3']);
          await expect(journal.signal('run-p-c', { name: 'go' })).rejects.toBeInstanceOf(RunClosedError);
          // the workflow id now names the newest run
          expect((await journal.getRunByWorkflowId('wf-p/c'))!.runId).toBe('run-p-c2');
          // the new run is announced; the parent is not woken by the continue
          await eventually(() => expect(seen.wake).toContain('run-p-c2'));
          expect(await isDue(parent.runId)).toBe(false);
          // the parent sees the move (to journal ChildStarted), not an outcome
          expect(await journal.childOutcomes(parent.runId, ['run-p-c'])).toEqual([
            { childRunId: 'run-p-c', currentRunId: 'run-p-c2', callId: 'call-c', status: 'running', result: null, error: null, closedAt: 0 },
          ]);
          expect(await journal.childOutcomes(parent.runId, ['run-p-c2'])).toEqual([]);
        } finally {
          off();
        }

        // the parent's wait was rewritten: the successor's close wakes it, and the chain's outcome is the successor's
        clock.advance(6);
        expect((await closeRun('run-p-c2', 'completed', { result: 'done' })).wokeParent).toBe(parent.runId);
        expect(await isDue(parent.runId)).toBe(true);
        const outcome = { currentRunId: 'run-p-c2', callId: 'call-c', status: 'completed', result: 'done', error: null, closedAt: clock.now() };
        expect(await journal.childOutcomes(parent.runId, ['run-p-c', 'run-p-c2'])).toEqual([
          { childRunId: 'run-p-c', ...outcome },
          { childRunId: 'run-p-c2', ...outcome },
        ]);
        // the successor's close applied the policies to the moved child
        expect(await statusOf('run-c-open')).toBe('cancelled');
        expect(await policyNotes('run-p-c2')).toEqual([{ childRunId: 'run-c-open', callId: 'call-open', policy: 'cancel' }]);
      });

      it('childOutcomes follows a chain of several continues to its newest run; a cancel of the newest run cascades to moved children', async () => {
        const { parent, lease: pLease, seq } = await withChildren('p', [childRun('p', 'c')]);
        await suspend(pLease, seq, { onAllClosed: ['run-p-c'], onFailure: ['run-p-c'] });
        await spawn('run-p-c', [childRun('c', 'k')]);
        await continueAs('run-p-c', 'run-c2', 2);
        await continueAs('run-c2', 'run-c3', 3);
        expect((await journal.getRun('run-c-k'))!.parentRunId).toBe('run-c3');
        expect((await journal.getRunByWorkflowId('wf-p/c'))!.runId).toBe('run-c3');
        expect(await journal.getRun('run-c3')).toMatchObject({ continuedFrom: 'run-c2', parentRunId: parent.runId, callId: 'call-c', depth: 1 });
        expect((await journal.childOutcomes(parent.runId, ['run-p-c']))[0]).toMatchObject({ currentRunId: 'run-c3', status: 'running' });

        const res = await journal.cancel('run-c3', cancelOpts({ reason: 'enough' }));
        expect(res.closed).toEqual(['run-c-k']);
        expect(await isDue(parent.runId)).toBe(true);
        expect(await journal.childOutcomes(parent.runId, ['run-p-c'])).toEqual([
          { childRunId: 'run-p-c', currentRunId: 'run-c3', callId: 'call-c', status: 'cancelled', result: null, error: { name: 'CancelledError', message: 'enough' }, closedAt: clock.now() },
        ]);
      });

      it('a root chain keeps its workflow id: starting it again returns the newest run', async () => {
        const first = await start('a');
        await continueAs(first.runId, 'run-a2', { n: 2 });
        const again = await journal.startRun(rootRun('a', { runId: 'run-a-other' }));
        expect(again.created).toBe(false);
        expect(again.run.runId).toBe('run-a2');
        expect(await journal.getRun('run-a-other')).toBeUndefined();
        expect((await journal.getRun('run-a2'))!).toMatchObject({ parentRunId: null, callId: null, rootRunId: 'run-a', depth: 0, continuedFrom: 'run-a' });
        // a child may not take the chain's workflow id either
        const p = await start('p');
        const clash = childRun('p', 'x', { workflowId: 'wf-a' });
        await expect(journal.commit(await mustAcquire(p.runId), commitOf(1, { children: [clash] }))).rejects.toBeInstanceOf(DuplicateWorkflowIdError);
      });
    });

    // ---- operating: listings, descendants, retries, bulk actions, workers (docs/operating.md) ----

    describe('operating', () => {
      const ids = (page: { runs: { runId: string }[] }) => page.runs.map((r) => r.runId);
      /** Every page of a listing, following nextCursor; fails on a repeated run. */
      const allPages = async (list: (cursor: string | null) => Promise<{ runs: { runId: string }[]; nextCursor: string | null }>) => {
        const out: string[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page = await list(cursor);
          out.push(...ids(page));
          cursor = page.nextCursor;
          if (++pages > 100) throw new Error('runaway pagination');
        } while (cursor);
        expect(new Set(out).size).toBe(out.length);
        return { ids: out, pages };
      };
      const failRun = (runId: string) => closeRun(runId, 'failed', { error: boom });

      /**
       * A small fleet of runs, one clock tick apart (createdAt 0..5 after t0): roots a (parent, default queue), b
       * (other, queue q2), c (parent, workflow id with LIKE metacharacters), and a's children a-x, a-y (same tick);
       * a-x failed at t0+10, b completed at t0+11.
       */
      const fleet = async () => {
        const t0 = clock.now();
        await start('a');
        clock.advance(1);
        await start('b', { workflow: 'other', queue: 'q2' });
        clock.advance(1);
        await start('c', { workflowId: 'wf-c%_\\x' });
        clock.advance(1);
        const lease = await mustAcquire('run-a');
        const kids = [childRun('a', 'x'), childRun('a', 'y')];
        await journal.commit(lease, commitOf(1, { events: kids.map((k, i) => scheduled(k, `${i}`)), children: kids, wait: waitOn({ onAllClosed: kids.map((k) => k.runId) }), release: true }));
        clock.set(t0 + 10);
        await failRun('run-a-x');
        clock.set(t0 + 11);
        await closeRun('run-b', 'completed', { result: 1 });
        clock.set(t0 + 20);
        return t0;
      };

      it('listRuns: newest first, and each filter alone and combined', async () => {
        const t0 = await fleet();
        const list = async (q: Parameters<Journal['listRuns']>[0]) => ids(await journal.listRuns(q));
        // created at t0, t0+1, t0+2, and the two children at t0+3 (ties by run id, descending)
        expect(await list({})).toEqual(['run-a-y', 'run-a-x', 'run-c', 'run-b', 'run-a']);
        expect(await list({ status: 'failed' })).toEqual(['run-a-x']);
        expect(await list({ status: ['completed', 'failed'] })).toEqual(['run-a-x', 'run-b']);
        expect(await list({ status: 'running' })).toEqual(['run-a-y', 'run-c', 'run-a']);
        expect(await list({ workflow: 'kid' })).toEqual(['run-a-y', 'run-a-x']);
        expect(await list({ queue: 'q2' })).toEqual(['run-b']);
        expect(await list({ parentRunId: 'run-a' })).toEqual(['run-a-y', 'run-a-x']);
        expect(await list({ rootRunId: 'run-a' })).toEqual(['run-a-y', 'run-a-x', 'run-a']);
        expect(await list({ workflowId: 'wf-a' })).toEqual(['run-a']);
        expect(await list({ workflowIdPrefix: 'wf-a' })).toEqual(['run-a-y', 'run-a-x', 'run-a']);
        expect(await list({ workflowIdPrefix: 'wf-a/' })).toEqual(['run-a-y', 'run-a-x']);
        // LIKE's metacharacters in a prefix are plain characters
        expect(await list({ workflowIdPrefix: 'wf-c%_\\' })).toEqual(['run-c']);
        expect(await list({ workflowIdPrefix: 'wf-%' })).toEqual([]);
        expect(await list({ workflowIdPrefix: 'wf-_' })).toEqual([]);
        // time bounds are [after, before)
        expect(await list({ startedAfter: t0 + 1 })).toEqual(['run-a-y', 'run-a-x', 'run-c', 'run-b']);
        expect(await list({ startedBefore: t0 + 1 })).toEqual(['run-a']);
        expect(await list({ startedAfter: t0 + 1, startedBefore: t0 + 3 })).toEqual(['run-c', 'run-b']);
        expect(await list({ closedAfter: t0 + 11 })).toEqual(['run-b']);
        expect(await list({ closedBefore: t0 + 11 })).toEqual(['run-a-x']);
        expect(await list({ closedAfter: t0 })).toEqual(['run-a-x', 'run-b']);
        // combined: AND
        expect(await list({ workflow: 'parent', status: 'running', startedAfter: t0 + 1 })).toEqual(['run-c']);
        expect(await list({ rootRunId: 'run-a', status: ['running', 'blocked'] })).toEqual(['run-a-y', 'run-a']);
        expect(await list({ queue: 'q2', status: 'running' })).toEqual([]);
        expect((await journal.listRuns({ status: 'failed' })).runs[0]).toMatchObject({ runId: 'run-a-x', status: 'failed', error: boom, parentRunId: 'run-a' });
      });

      it('workflowIdPrefix matches exactly the workflow ids that start with it, whatever their characters', async () => {
        const wids = ['a', 'ab', 'ab\u{10FFFF}', 'ab\u{10FFFF}z', 'ac', 'aü', 'aü1', 'aý', 'a\uD7FF', 'a\uE000', 'b', '日本', '日本語', '日朝'];
        for (const [i, workflowId] of wids.entries()) {
          await journal.startRun(rootRun(`p${i}`, { workflowId }));
          clock.advance(1);
        }
        for (const prefix of ['a', 'ab', 'ab\u{10FFFF}', 'aü', 'a\uD7FF', '日本', '日', 'z', '']) {
          const got = (await journal.listRuns({ workflowIdPrefix: prefix, limit: 100 })).runs.map((r) => r.workflowId).sort();
          expect(got, JSON.stringify(prefix)).toEqual(wids.filter((w) => w.startsWith(prefix)).sort());
        }
      });

      it('listRuns pages with a keyset cursor: runs sharing one created_at are neither repeated nor skipped', async () => {
        // 23 children created in one commit (one created_at), between two roots created before and after
        await start('first');
        clock.advance(1);
        const kids = Array.from({ length: 23 }, (_, i) => childRun('p', `k${String(i).padStart(2, '0')}`));
        await withChildren('p', kids);
        clock.advance(1);
        await start('last');
        const all = ids(await journal.listRuns({ limit: 1000 }));
        expect(all).toHaveLength(26);
        expect(all[0]).toBe('run-last');
        expect(all.at(-1)).toBe('run-first');
        for (const limit of [1, 5, 7, 23, 25, 26, 27]) {
          const paged = await allPages((cursor) => journal.listRuns({ limit, cursor }));
          expect(paged.ids).toEqual(all);
          expect(paged.pages).toBe(Math.max(1, Math.ceil(26 / limit)));
        }
        // a filtered listing pages the same way (several statuses are merged per page)
        const kidIds = all.filter((id) => id.startsWith('run-p-'));
        expect((await allPages((cursor) => journal.listRuns({ parentRunId: 'run-p', limit: 4, cursor }))).ids).toEqual(kidIds);
        expect((await allPages((cursor) => journal.listRuns({ status: ['running', 'failed'], limit: 4, cursor }))).ids).toEqual(all);
        // a run created while paging sorts before the cursor: later pages do not show it, none shifts
        const first = await journal.listRuns({ limit: 10 });
        clock.advance(1);
        await start('meanwhile');
        const rest = await allPages((cursor) => journal.listRuns({ limit: 10, cursor: cursor ?? first.nextCursor }));
        expect([...ids(first), ...rest.ids]).toEqual(all);
        // a cursor that no listing returned, or a bad limit, is refused
        await expect(journal.listRuns({ cursor: 'not-a-cursor' })).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'cursor' });
        await expect(journal.listRuns({ limit: 0 })).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'limit' });
        await expect(journal.listRuns({ limit: 1001 })).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'limit' });
        await expect(journal.listRuns({ status: 'nope' as 'running' })).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'status' });
      });

      it('countRuns: counts by status of the runs the filter matches', async () => {
        const t0 = await fleet();
        const zero = { running: 0, blocked: 0, completed: 0, failed: 0, cancelled: 0, terminated: 0, timed_out: 0, continued: 0 };
        expect(await journal.countRuns()).toEqual({ total: 5, byStatus: { ...zero, running: 3, failed: 1, completed: 1 } });
        expect(await journal.countRuns({ rootRunId: 'run-a' })).toEqual({ total: 3, byStatus: { ...zero, running: 2, failed: 1 } });
        expect(await journal.countRuns({ status: ['failed', 'completed'] })).toEqual({ total: 2, byStatus: { ...zero, failed: 1, completed: 1 } });
        expect(await journal.countRuns({ workflow: 'parent', startedAfter: t0 + 1 })).toEqual({ total: 1, byStatus: { ...zero, running: 1 } });
        expect(await journal.countRuns({ queue: 'nowhere' })).toEqual({ total: 0, byStatus: zero });
      });

      it('listDescendants: breadth first, paged, bounded by maxDepth, below a root or any run', async () => {
        // p -> c0..c4 (one commit); c1 -> g0..g2 (one commit, later); g1 -> h0
        const kids = Array.from({ length: 5 }, (_, i) => childRun('p', `c${i}`));
        const { lease, seq } = await withChildren('p', kids);
        await suspend(lease, seq, { onAllClosed: kids.map((k) => k.runId) });
        clock.advance(5);
        const grand = Array.from({ length: 3 }, (_, i) => childRun('c1', `g${i}`));
        await journal.commit(await mustAcquire('run-p-c1'), commitOf(1, { events: grand.map((g, i) => scheduled(g, `${i}`)), children: grand, release: true }));
        clock.advance(5);
        await journal.commit(await mustAcquire('run-c1-g1'), commitOf(1, { events: [scheduled(childRun('g1', 'h0'), '0')], children: [childRun('g1', 'h0')], release: true }));
        const bfs = [...kids.map((k) => k.runId), ...grand.map((g) => g.runId), 'run-g1-h0'];

        expect(ids(await journal.listDescendants('run-p', { limit: 1000 }))).toEqual(bfs);
        for (const limit of [1, 2, 4, 9, 10]) {
          const paged = await allPages((cursor) => journal.listDescendants('run-p', { limit, cursor }));
          expect(paged.ids).toEqual(bfs);
          expect(paged.pages).toBe(Math.ceil(9 / limit));
        }
        expect(ids(await journal.listDescendants('run-p', { maxDepth: 1 }))).toEqual(kids.map((k) => k.runId));
        expect(ids(await journal.listDescendants('run-p', { maxDepth: 2 }))).toEqual(bfs.slice(0, 8));
        // below a run that is not a root: its subtree only, paged the same way
        expect((await allPages((cursor) => journal.listDescendants('run-p-c1', { limit: 2, cursor }))).ids).toEqual([...grand.map((g) => g.runId), 'run-g1-h0']);
        expect(ids(await journal.listDescendants('run-p-c1', { maxDepth: 1 }))).toEqual(grand.map((g) => g.runId));
        expect(ids(await journal.listDescendants('run-p-c0'))).toEqual([]);
        const page = await journal.listDescendants('run-p', { limit: 6 });
        expect(page.runs[5]).toMatchObject({ runId: 'run-c1-g0', parentRunId: 'run-p-c1', depth: 2, rootRunId: 'run-p' });
        await expect(journal.listDescendants('run-nope')).rejects.toBeInstanceOf(UnknownRunError);
        await expect(journal.listDescendants('run-p', { maxDepth: 0 })).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'maxDepth' });
      });

      it('retry: a new run of the same workflow id and input; getRunByWorkflowId names it, both stay in the history', async () => {
        const first = await start('r', { input: { order: 7 }, queue: 'q2', deadline: clock.now() + 60_000 });
        clock.advance(1000);
        await failRun(first.runId);
        clock.advance(500);
        const { run, created } = await journal.retry(first.runId, { reason: 'fixed the card service', by: 'ada@ops' });
        expect(created).toBe(true);
        expect(run).toMatchObject({
          runId: retryRunId(first.runId),
          workflowId: 'wf-r',
          workflow: 'parent',
          input: { order: 7 },
          queue: 'q2',
          status: 'running',
          parentRunId: null,
          rootRunId: run.runId,
          depth: 0,
          createdAt: clock.now(),
          nextWakeupAt: clock.now(),
          retryOf: first.runId,
          retriedTo: null,
          lastSeq: 1,
        });
        expect(run.runId).toMatch(/^r_[A-Za-z0-9_-]{22}$/);
        // the reason and who asked are journaled; the execution timeout keeps its length from the new start
        expect(await journal.readEvents(run.runId)).toEqual([
          {
            seq: 1,
            recordedAt: clock.now(),
            type: 'RunStarted',
            payload: {
              workflow: 'parent',
              workflowId: 'wf-r',
              input: { order: 7 },
              depth: 0,
              deadline: clock.now() + 60_000,
              retry: { previousRunId: first.runId, reason: 'fixed the card service', by: 'ada@ops' },
            },
          },
        ]);
        // the retried run keeps its journal, and points at its retry
        expect(await journal.getRun(first.runId)).toMatchObject({ status: 'failed', retriedTo: run.runId, retryOf: null });
        expect((await journal.readEvents(first.runId)).at(-1)!.type).toBe('RunFailed');
        expect((await journal.getRunByWorkflowId('wf-r'))!.runId).toBe(run.runId);
        expect(ids(await journal.listRuns({ workflowId: 'wf-r' }))).toEqual([run.runId, first.runId]);
        // starting the workflow id again returns the newest run
        const again = await journal.startRun(rootRun('r'));
        expect(again).toMatchObject({ created: false, run: { runId: run.runId } });
        // the retry is due at once (a worker claims it)
        expect(await isDue(run.runId)).toBe(true);
        // retrying the same run again returns its retry
        expect(await journal.retry(first.runId, { reason: 'again' })).toMatchObject({ created: false, run: { runId: run.runId } });
        // the retry can fail and be retried in turn
        await failRun(run.runId);
        const third = await journal.retry(run.runId, { reason: 'once more' });
        expect(third).toMatchObject({ created: true, run: { runId: retryRunId(run.runId), retryOf: run.runId } });
        expect((await journal.getRunByWorkflowId('wf-r'))!.runId).toBe(third.run.runId);
        expect((await journal.readEvents(third.run.runId))[0]!.payload).toMatchObject({ retry: { previousRunId: run.runId, reason: 'once more' } });
        expect((await journal.readEvents(third.run.runId))[0]!.payload).not.toHaveProperty('retry.by');
      });

      it('retry refuses open, completed and continued runs, and children; cancelled, terminated and timed-out roots retry', async () => {
        const open = await start('o');
        await expect(journal.retry(open.runId, { reason: 'x' })).rejects.toMatchObject({ name: 'RunStateError', status: 'running', action: 'retry' });
        const done = await start('d');
        await closeRun(done.runId, 'completed');
        await expect(journal.retry(done.runId, { reason: 'x' })).rejects.toMatchObject({ name: 'RunStateError', status: 'completed' });
        await withChildren('p', [childRun('p', 'k')]);
        await failRun('run-p-k');
        await expect(journal.retry('run-p-k', { reason: 'x' })).rejects.toMatchObject({ name: 'RunStateError', status: 'failed' });
        await expect(journal.retry('run-nope', { reason: 'x' })).rejects.toBeInstanceOf(UnknownRunError);
        for (const [key, mode] of [['cx', 'cancel'], ['tx', 'terminate']] as const) {
          const r = await start(key);
          await journal.cancel(r.runId, { reason: 'stop', mode, graceMs: 0, maxChildDepth: 10 });
          expect((await journal.retry(r.runId, { reason: 'x' })).created).toBe(true);
        }
        const t = await start('t');
        await closeRun(t.runId, 'timed_out', { error: { name: 'RunTimeoutError', message: 'late' } });
        expect((await journal.retry(t.runId, { reason: 'x' })).created).toBe(true);
        // a run that continued as new is not the instance's last word: its newest run is what may be retried
        const c = await start('cn');
        const next: NewRun = { runId: 'run-cn2', workflowId: 'wf-cn', workflow: 'parent', input: 2, queue: QUEUE, depth: 0 };
        await journal.commit(await mustAcquire(c.runId), commitOf(1, { events: [{ type: 'RunContinued', payload: { input: 2, nextRunId: 'run-cn2' } }], close: { status: 'continued', next } }));
        await expect(journal.retry(c.runId, { reason: 'x' })).rejects.toMatchObject({ name: 'RunStateError', status: 'continued' });
        await failRun('run-cn2');
        const cn = await journal.retry('run-cn2', { reason: 'x' });
        expect(cn.run).toMatchObject({ workflowId: 'wf-cn', input: 2, retryOf: 'run-cn2' });
        expect((await journal.getRunByWorkflowId('wf-cn'))!.runId).toBe(cn.run.runId);
        expect(await journal.getRun(open.runId)).toMatchObject({ status: 'running', retriedTo: null });
      });

      it('a bulk dry run lists the open runs the filter matches and changes nothing; the real one cancels them', async () => {
        await fleet();
        const client = new Client(journal, { logger: pino({ level: 'silent' }) });
        const before = await Promise.all(['run-a', 'run-a-y', 'run-c'].map(async (id) => [await journal.getRun(id), await journal.readEvents(id)]));
        const dry = await client.cancelMany({ workflow: 'parent' }, 'cleanup', { dryRun: true });
        expect(dry).toMatchObject({ dryRun: true, matched: 2, done: [], skipped: [], more: false });
        expect(dry.runs.map((r) => r.runId)).toEqual(['run-c', 'run-a']);
        const dryAll = await client.terminateMany({}, 'cleanup', { dryRun: true, limit: 2 });
        expect(dryAll).toMatchObject({ matched: 2, more: true });
        const after = await Promise.all(['run-a', 'run-a-y', 'run-c'].map(async (id) => [await journal.getRun(id), await journal.readEvents(id)]));
        expect(after).toEqual(before);

        // the real one: each cancelled (graceMs 0: closed at once) with its reason journaled; the cascade closes a-y
        const done = await client.cancelMany({ rootRunId: 'run-a' }, 'cleanup', { graceMs: 0 });
        expect(done).toMatchObject({ dryRun: false, matched: 2, more: false });
        expect([...done.done, ...done.skipped.map((s) => s.runId)].sort()).toEqual(['run-a', 'run-a-y']);
        expect(await journal.getRun('run-a')).toMatchObject({ status: 'cancelled', error: { message: 'cleanup' } });
        expect(await journal.getRun('run-a-y')).toMatchObject({ status: 'cancelled' });
        expect(await journal.getRun('run-c')).toMatchObject({ status: 'running' });
        expect((await journal.readEvents('run-a')).filter((e) => e.type === 'RunCancelled').map((e) => e.payload)).toEqual([{ reason: 'cleanup', forced: true }]);
        await expect(client.cancelMany({}, '')).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'reason' });
      });

      it('leases say who held the run before (a take-over) and who the run is', async () => {
        const kids = [childRun('p', 'k')];
        await withChildren('p', kids);
        const first = await journal.acquire('run-p-k', 'w1', LEASE_MS);
        expect(first).toMatchObject({ previousOwner: null, run: { workflowId: 'wf-p/k', workflow: 'kid', parentRunId: 'run-p', rootRunId: 'run-p' } });
        clock.advance(LEASE_MS + 1);
        const [taken] = await journal.claimDue({ owner: 'w2', queues: [QUEUE], limit: 10, leaseMs: LEASE_MS });
        expect(taken).toMatchObject({ runId: 'run-p-k', owner: 'w2', previousOwner: 'w1', run: { workflow: 'kid', parentRunId: 'run-p', rootRunId: 'run-p' } });
        await journal.release(taken!);
        expect(await journal.acquire('run-p-k', 'w3', LEASE_MS)).toMatchObject({ previousOwner: null });
      });

      it('listWorkers: alive while heartbeating, gone after 3 silent intervals or once stopped', async () => {
        const beat = (workerId: string, extra: Partial<WorkerHeartbeat> = {}) =>
          journal.workerHeartbeat({
            workerId,
            host: 'h1',
            pid: 42,
            queues: [QUEUE],
            workflows: ['parent'],
            activities: ['charge'],
            concurrency: 10,
            activeRuns: 0,
            startedAt: 1000,
            heartbeatIntervalMs: 1000,
            ...extra,
          });
        const status = async () => Object.fromEntries((await journal.listWorkers()).map((w) => [w.workerId, w.status]));
        await beat('w1');
        await beat('w2', { activeRuns: 3 });
        expect(await journal.listWorkers()).toEqual([
          expect.objectContaining({ workerId: 'w1', status: 'alive', lastSeenAt: clock.now(), stoppedAt: null, activeRuns: 0 }),
          expect.objectContaining({ workerId: 'w2', status: 'alive', host: 'h1', pid: 42, queues: [QUEUE], workflows: ['parent'], activities: ['charge'], concurrency: 10, activeRuns: 3, startedAt: 1000, heartbeatIntervalMs: 1000 }),
        ]);
        clock.advance(2000);
        await beat('w1', { activeRuns: 1 });
        clock.advance(1000);
        expect(await status()).toEqual({ w1: 'alive', w2: 'alive' }); // w2: 3000 ms = 3 intervals, not more
        clock.advance(1);
        expect(await status()).toEqual({ w1: 'alive', w2: 'gone' });
        await journal.workerStopped('w1');
        const listed = await journal.listWorkers();
        expect(listed.find((w) => w.workerId === 'w1')).toMatchObject({ status: 'gone', stoppedAt: clock.now(), activeRuns: 1 });
        // a late heartbeat of the stopped process does not bring it back; a new process with the same id does
        await beat('w1');
        expect(await status()).toEqual({ w1: 'gone', w2: 'gone' });
        await beat('w1', { startedAt: 5000 });
        expect(await status()).toEqual({ w1: 'alive', w2: 'gone' });
        expect((await journal.listWorkers())[0]!.workerId).toBe('w1'); // alive first
        await journal.workerStopped('no-such-worker');
        // gone workers are forgotten after a week (the next heartbeat of any worker deletes them)
        clock.advance(WORKER_RETENTION_MS + 10);
        await beat('w3');
        expect(await status()).toEqual({ w3: 'alive' });
      });

      it('ping answers', async () => {
        await expect(journal.ping()).resolves.toBeUndefined();
      });
    });

    // ---- copies ----

    describe('values are copies', () => {
      it('mutating what was passed in or read out never changes the journal', async () => {
        const input = { list: [1, 2], nested: { v: 'x' } };
        const run = (await journal.startRun(rootRun('a', { input }))).run;
        input.list.push(3);
        input.nested.v = 'changed';
        (run.input as { list: number[] }).list.push(4);

        const read = (await journal.getRun('run-a'))!;
        expect(read.input).toEqual({ list: [1, 2], nested: { v: 'x' } });
        (read.input as { nested: { v: string } }).nested.v = 'mutated';
        read.status = 'failed';
        const events = await journal.readEvents('run-a');
        (events[0]!.payload as { input: { list: number[] } }).input.list.length = 0;
        events.push({ ...events[0]!, seq: 2 });

        expect((await journal.getRun('run-a'))!).toMatchObject({ status: 'running', input: { list: [1, 2], nested: { v: 'x' } } });
        expect(await journal.readEvents('run-a')).toHaveLength(1);
        expect((await journal.readEvents('run-a'))[0]!.payload).toMatchObject({ input: { list: [1, 2], nested: { v: 'x' } } });

        const event = { type: 'SideEffect', payload: { path: '0', kind: 'sideEffect', value: { deep: [1] } } } satisfies NewEvent;
        const kid = childRun('a', 'k', { input: { deep: [1] } });
        const lease = await mustAcquire('run-a');
        await journal.commit(lease, commitOf(1, { events: [event], children: [kid] }));
        event.payload.value.deep.push(2);
        (kid.input as { deep: number[] }).deep.push(2);
        expect((await journal.readEvents('run-a', 1))[0]!.payload).toMatchObject({ value: { deep: [1] } });
        expect((await journal.getRun(kid.runId))!.input).toEqual({ deep: [1] });

        await closeRun(kid.runId, 'completed', { result: { deep: [1] } });
        const [outcome] = await journal.childOutcomes('run-a', [kid.runId]);
        (outcome!.result as { deep: number[] }).deep.push(9);
        expect((await journal.childOutcomes('run-a', [kid.runId]))[0]!.result).toEqual({ deep: [1] });
        const [listed] = await journal.listChildren('run-a');
        (listed!.input as { deep: number[] }).deep.push(9);
        expect((await journal.getRun(kid.runId))!.input).toEqual({ deep: [1] });
      });
    });
  });
}

/** Retries an assertion until it passes (for notifications that arrive asynchronously). */
export async function eventually(check: () => void, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
