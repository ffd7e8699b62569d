import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/journal/memory.js';
import { NO_WAIT, type ClosedStatus, type Commit, type Journal, type Lease, type NewRun, type WaitSpec } from '../src/journal/journal.js';
import { DuplicateWorkflowIdError, LeaseLostError, PayloadError, UnknownRunError, type SerializedError } from '../src/runtime/errors.js';
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
