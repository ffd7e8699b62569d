import pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NO_WAIT, type Commit, type NewRun } from '../../src/journal/journal.js';
import { ManualClock } from '../../src/journal/memory.js';
import { MIGRATIONS, PgJournal, createPgJournal } from '../../src/journal/postgres/index.js';
import { notifyChunks } from '../../src/journal/postgres/sql.js';
import { LeaseLostError, RunClosedError } from '../../src/runtime/errors.js';
import type { NewEvent } from '../../src/runtime/events.js';
import { describeJournalContract, eventually } from '../journal-contract.js';
import { freshPgJournal, freshSchema, testDatabaseUrl } from '../support/postgres.js';

// The same contract as the memory journal, each test on a fresh schema that is dropped afterwards.
describeJournalContract('PgJournal', (clock) => freshPgJournal({ clock }));

describe('PgJournal on PostgreSQL', () => {
  let url: string;
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    url = await testDatabaseUrl();
  });
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });

  /** A fresh schema, dropped after the test; journals opened on it with `open` are closed first. */
  async function schemaForTest() {
    const s = await freshSchema(url);
    cleanups.push(() => s.drop());
    return s.schema;
  }
  function open(schema: string, clock: ManualClock, maxConnections = 4): PgJournal {
    const journal = new PgJournal({ connectionString: url, schema, clock, maxConnections });
    cleanups.push(() => journal.close());
    return journal;
  }

  const runOf = (id: string, extra: Partial<NewRun> = {}): NewRun => ({ runId: id, workflowId: `wf-${id}`, workflow: 'w', input: { id }, queue: 'q', ...extra });
  const commitOf = (afterSeq: number, c: Partial<Commit> = {}): Commit => ({ afterSeq, events: [], children: [], wait: NO_WAIT, ...c });

  it('migrate() run by three pools at once applies each migration exactly once, and again changes nothing', async () => {
    const schema = await schemaForTest();
    const clock = new ManualClock();
    const journals = [open(schema, clock), open(schema, clock), open(schema, clock)];
    await Promise.all(journals.map((j) => j.migrate()));
    await Promise.all(journals.map((j) => j.migrate()));
    const rows = await journals[0]!.pool.query(`SELECT version FROM "${schema}".skein_migrations ORDER BY version`);
    expect(rows.rows.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
    // and the schema works
    expect((await journals[1]!.startRun(runOf('a'))).created).toBe(true);
  });

  it('createPgJournal migrates on start', async () => {
    const schema = await schemaForTest();
    const journal = await createPgJournal({ connectionString: url, schema });
    cleanups.push(() => journal.close());
    expect((await journal.startRun(runOf('a'))).run.createdAt).toBeGreaterThan(0);
  });

  it('claimDue from two concurrent callers never hands out the same run (FOR UPDATE SKIP LOCKED)', async () => {
    const schema = await schemaForTest();
    const clock = new ManualClock();
    const a = open(schema, clock, 6);
    const b = open(schema, clock, 6);
    await a.migrate();
    const total = 300;
    // one fan-out commit creates the runs: all due at once, none leased
    const root = (await a.startRun(runOf('root', { queue: 'other' }))).run;
    const lease = (await a.acquire(root.runId, 'setup', 60_000))!;
    const kids = Array.from({ length: total }, (_, i) => runOf(`r${i}`));
    await a.commit(lease, commitOf(1, { children: kids }));

    const claimed: string[] = [];
    const claimer = async (j: PgJournal, owner: string) => {
      for (;;) {
        // several claims in flight per journal, so claims really overlap
        const batches = await Promise.all([1, 2, 3].map(() => j.claimDue({ owner, queues: ['q'], limit: 7, leaseMs: 60_000 })));
        const got = batches.flat();
        claimed.push(...got.map((l) => l.runId));
        if (!got.length) return;
      }
    };
    await Promise.all([claimer(a, 'A'), claimer(b, 'B')]);
    expect(claimed).toHaveLength(total);
    expect(new Set(claimed).size).toBe(total);
  });

  it('acquireMany passes over a row a transaction holds (no deadlock-prone multi-row wait), then takes it alone once free', async () => {
    const schema = await schemaForTest();
    const journal = open(schema, new ManualClock());
    await journal.migrate();
    for (const id of ['m-a', 'm-b', 'm-c']) await journal.startRun(runOf(id));
    await journal.startRun(runOf('m-closed'));
    const closer = (await journal.acquire('m-closed', 'w0', 60_000))!;
    await journal.commit(closer, commitOf(1, { events: [{ type: 'RunCompleted', payload: { result: null } }], close: { status: 'completed', result: null } }));
    // another transaction holds m-b's row, as a commit of its parent's cascade would
    const holder = await journal.pool.connect();
    await holder.query('BEGIN');
    await holder.query(`SELECT 1 FROM "${schema}".runs WHERE run_id = 'm-b' FOR UPDATE`);
    let settled = false;
    const pending = journal.acquireMany(['m-a', 'm-b', 'm-c', 'm-closed', 'unknown'], 'w1', 60_000).then((l) => ((settled = true), l));
    await new Promise((r) => setTimeout(r, 300));
    // m-b is waited for alone (one row: no lock-order problem); m-a and m-c were leased without waiting for it
    expect(settled).toBe(false);
    expect((await journal.pool.query(`SELECT run_id FROM "${schema}".runs WHERE lease_owner = 'w1' ORDER BY run_id`)).rows.map((r) => r.run_id)).toEqual(['m-a', 'm-c']);
    await holder.query('COMMIT');
    holder.release();
    const leases = await pending;
    expect(leases.map((l) => l.runId).sort()).toEqual(['m-a', 'm-b', 'm-c']);
    expect(leases.every((l) => l.owner === 'w1' && l.inbox !== undefined)).toBe(true);
  });

  it('a fan-out commit of 1,000 children takes a constant number of statements and writes every child', async () => {
    const schema = await schemaForTest();
    const clock = new ManualClock();
    const journal = open(schema, clock);
    await journal.migrate();

    const fanOut = async (id: string, n: number, leaseChildren: boolean) => {
      const parent = (await journal.startRun(runOf(id))).run;
      const lease = (await journal.acquire(parent.runId, 'w', 60_000))!;
      await new Promise((r) => setTimeout(r, 20)); // the start's announcement (sent after its commit) is not this commit's
      const kids = Array.from({ length: n }, (_, i) => runOf(`${id}-${i}`, { callId: `c${i}`, input: { i, tags: ['x', 'y'] } }));
      const events: NewEvent[] = kids.map((k, i) => ({
        type: 'ChildScheduled',
        payload: { path: `${i}`, callId: k.callId!, workflow: 'w', inputHash: 'h', childRunId: k.runId, childWorkflowId: k.workflowId, awaited: true },
      }));
      const commit = commitOf(1, { events, children: kids, wait: { ...NO_WAIT, onAllClosed: kids.map((k) => k.runId) }, release: !leaseChildren, leaseChildren });
      const counted = await countStatements(() => journal.commit(lease, commit), { committerOnly: true });
      return { parent, lease, kids, commit, ...counted };
    };

    // the announcement of 1,000 new children exceeds one NOTIFY payload: it must arrive whole, in chunks
    const announced = new Set<string>();
    journal.onWake((ids) => ids.forEach((id) => announced.add(id)));
    await eventually(() => expect(listening(journal)).toBe(true));

    const small = await fanOut('small', 10, false);
    const big = await fanOut('big', 1000, false);
    const leased = await fanOut('leased', 1000, true);
    console.info(
      `fan-out commit: 10 children -> ${small.statements.length} statements (${small.ms} ms); ` +
        `1,000 children -> ${big.statements.length} statements (${big.ms} ms); ` +
        `1,000 leased children -> ${leased.statements.length} statements (${leased.ms} ms)\n  ${big.statements.join('\n  ')}`,
    );
    expect(big.statements.length).toBe(small.statements.length);
    expect(big.statements.length).toBeLessThanOrEqual(7); // BEGIN, lock, events, children, notify, run update, COMMIT
    expect(leased.statements.length).toBeLessThanOrEqual(big.statements.length);

    expect(big.result.lastSeq).toBe(1001);
    expect(await journal.readEvents(big.parent.runId)).toHaveLength(1001);
    const children = await journal.listChildren(big.parent.runId);
    expect(children).toHaveLength(1000);
    expect(children.every((c) => c.parentRunId === big.parent.runId && c.depth === 1 && c.lastSeq === 1 && c.leaseOwner === null)).toBe(true);
    const counts = await journal.pool.query(
      `SELECT count(*)::int AS n FROM "${schema}".events e JOIN "${schema}".runs r USING (run_id) WHERE r.parent_run_id = $1 AND e.seq = 1 AND e.type = 'RunStarted'`,
      [big.parent.runId],
    );
    expect(counts.rows[0].n).toBe(1000);
    expect((await journal.readEvents('big-999'))[0]!.payload).toEqual({ workflow: 'w', workflowId: 'wf-big-999', input: { i: 999, tags: ['x', 'y'] }, depth: 1, parentRunId: 'big', callId: 'c999' });

    await eventually(() => expect(big.kids.filter((k) => !announced.has(k.runId))).toEqual([]));
    expect(leased.result.childLeases).toHaveLength(1000);
    expect(new Set(leased.result.childLeases.map((l) => l.token)).size).toBe(1000);

    // A re-run of the same activation after a crash: every child exists and is left alone, still O(1) statements.
    clock.advance(60_001);
    const again = (await journal.acquire('leased', 'w2', 60_000))!;
    const head = (await journal.getRun('leased'))!.lastSeq;
    const redo = await countStatements(() => journal.commit(again, { ...leased.commit, afterSeq: head, events: [] }));
    expect(redo.result.childLeases).toEqual([]);
    expect(redo.statements.length).toBeLessThanOrEqual(leased.statements.length + 1); // + the check of the skipped children
  });

  it('concurrent closes are group-committed: one transaction for many runs, a stale lease refused alone, the parent woken once all closed', async () => {
    const schema = await schemaForTest();
    const clock = new ManualClock();
    const journal = open(schema, clock, 6);
    await journal.migrate();
    const parent = (await journal.startRun(runOf('gp'))).run;
    const please = (await journal.acquire(parent.runId, 'w', 60_000))!;
    const kids = Array.from({ length: 300 }, (_, i) => runOf(`gp-${i}`, { callId: `c${i}` }));
    const { childLeases } = await journal.commit(
      please,
      commitOf(1, { children: kids, wait: { ...NO_WAIT, onAllClosed: kids.map((k) => k.runId) }, release: true, leaseChildren: true }),
    );
    // One child's lease is taken over (it expired and another worker acquired it): its close must be refused alone.
    const stale = childLeases[7]!;
    await journal.release(stale);
    const thief = (await journal.acquire(stale.runId, 'thief', 60_000))!;

    const closeOf = (l: (typeof childLeases)[number]) =>
      journal.commit(l, commitOf(1, { events: [{ type: 'RunCompleted', payload: { result: l.runId } }], close: { status: 'completed', result: l.runId } }));
    const counted = await countStatements(() => Promise.allSettled(childLeases.map(closeOf)));
    const outcomes = counted.result;
    expect(outcomes.filter((o) => o.status === 'rejected').map((o) => (o as PromiseRejectedResult).reason)).toEqual([expect.any(LeaseLostError)]);
    // far fewer statements than closes: they went in a few batches
    expect(counted.statements.length).toBeLessThan(100);
    const closed = await journal.listChildren(parent.runId, { status: 'completed' });
    expect(closed).toHaveLength(299);
    expect((await journal.readEvents('gp-3')).map((e) => e.type)).toEqual(['RunStarted', 'RunCompleted']);
    // 299 of 300 closed: the parent waits for all of them, so it is not due yet
    expect((await journal.getRun(parent.runId))!.nextWakeupAt).toBeNull();
    const last = await journal.commit(thief, commitOf(1, { events: [{ type: 'RunCompleted', payload: { result: 'late' } }], close: { status: 'completed', result: 'late' } }));
    expect(last.wokeParent).toBe(parent.runId);
    expect((await journal.getRun(parent.runId))!.nextWakeupAt).toBe(clock.now());
  });

  it('a parent listening from another journal instance is woken when its child closes', async () => {
    const schema = await schemaForTest();
    const clock = new ManualClock();
    const worker = open(schema, clock);
    const listener = open(schema, clock);
    await worker.migrate();
    const seen: string[] = [];
    listener.onWake((ids) => seen.push(...ids));
    await eventually(() => expect(listening(listener)).toBe(true));

    const { child } = await parentWaitingOn(worker, 'p');
    const closed = await closeChild(worker, child);
    expect(closed.wokeParent).toBe('p');
    await eventually(() => expect(seen).toContain('p'));
  });

  it('the wake-up listener reconnects after its connection is killed', async () => {
    const schema = await schemaForTest();
    const clock = new ManualClock();
    const journal = open(schema, clock);
    await journal.migrate();
    const seen: string[] = [];
    journal.onWake((ids) => seen.push(...ids));
    await eventually(() => expect(listening(journal)).toBe(true));

    // the listener LISTENs on the wake, stop and closed channels in one query
    const listenQuery = `LISTEN "${schema}_wake"; LISTEN "${schema}_stop"; LISTEN "${schema}_closed"`;
    const killed = await journal.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1`, [listenQuery]);
    expect(killed.rowCount).toBe(1);
    await eventually(() => expect(listening(journal)).toBe(false), 2000);
    // reconnected: a new backend is listening again (backoff starts at 100 ms)
    await eventuallyAsync(async () => {
      const r = await journal.pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1`, [listenQuery]);
      expect(r.rows[0].n).toBe(1);
    });

    const { child } = await parentWaitingOn(journal, 'p');
    await closeChild(journal, child);
    await eventually(() => expect(seen).toContain('p'));
  });

  it('no lost wake-up when the last child closes while its parent commits its wait (lock order parent, child)', async () => {
    const schema = await schemaForTest();
    const clock = new ManualClock();
    const a = open(schema, clock, 6);
    const b = open(schema, clock, 6);
    await a.migrate();
    for (let round = 0; round < Number(process.env.SKEIN_RACE_ROUNDS ?? 25); round++) {
      const parent = (await a.startRun(runOf(`p${round}`))).run;
      const lease = (await a.acquire(parent.runId, 'pw', 60_000))!;
      const kids = [0, 1, 2].map((i) => runOf(`p${round}-${i}`));
      await a.commit(lease, commitOf(1, { children: kids, wait: { ...NO_WAIT, busy: true } }));
      await closeChild(b, kids[0]!.runId);
      await closeChild(b, kids[1]!.runId);
      // the race: the parent records "wake me when all three closed" while the last one closes in another session
      const wait = { ...NO_WAIT, onAllClosed: kids.map((k) => k.runId) };
      const [committed, closed] = await Promise.all([a.commit(lease, commitOf(1, { wait, release: true })), closeChild(b, kids[2]!.runId)]);
      expect(committed.lastSeq).toBe(1);
      const after = (await a.getRun(parent.runId))!;
      expect({ round, due: after.nextWakeupAt !== null && after.nextWakeupAt <= clock.now(), woke: closed.wokeParent }).toMatchObject({ round, due: true });
    }
  });

  it('a child started concurrently with a cascade cannot escape it (parent commit vs cancel, lock order parent before child)', async () => {
    const schema = await schemaForTest();
    const clock = new ManualClock();
    const a = open(schema, clock, 6);
    const b = open(schema, clock, 6);
    await a.migrate();
    const modes = [
      { target: 'root', mode: 'cancel', graceMs: 0 },
      { target: 'root', mode: 'terminate', graceMs: 0 },
      { target: 'root', mode: 'cancel', graceMs: 5000 },
      { target: 'mid', mode: 'cancel', graceMs: 0 },
      { target: 'mid', mode: 'cancel', graceMs: 5000 },
    ] as const;
    const outcomes = { committed: 0, lost: 0 };
    for (let round = 0; round < 40; round++) {
      const m = modes[round % modes.length]!;
      // root ── mid (leased by its worker, about to start three children)
      const root = `r${round}`;
      const mid = `${root}-mid`;
      await a.startRun(runOf(root));
      const rootLease = (await a.acquire(root, 'rw', 60_000))!;
      await a.commit(rootLease, commitOf(1, { children: [runOf(mid, { callId: 'c' })], wait: { ...NO_WAIT, onClose: [mid] }, release: true }));
      const lease = (await a.acquire(mid, 'mw', 60_000))!;
      const kids = [0, 1, 2].map((i) => runOf(`${mid}-${i}`, { callId: `k${i}` }));
      const [commit, cancel] = await Promise.allSettled([
        a.commit(lease, commitOf(1, { children: kids, wait: { ...NO_WAIT, onAllClosed: kids.map((k) => k.runId) } })),
        b.cancel(m.target === 'root' ? root : mid, { reason: 'race', mode: m.mode, graceMs: m.graceMs, maxChildDepth: 10 }),
      ]);
      expect(cancel.status).toBe('fulfilled');
      const created = await a.listChildren(mid);
      if (commit.status === 'fulfilled') {
        outcomes.committed++;
        expect(created.map((r) => r.runId).sort()).toEqual(kids.map((k) => k.runId));
        // every child the commit created was reached by the cascade
        expect({ round, m, statuses: created.map((r) => r.status) }).toEqual({ round, m, statuses: ['cancelled', 'cancelled', 'cancelled'] });
      } else {
        outcomes.lost++;
        expect(commit.reason).toBeInstanceOf(LeaseLostError);
        expect(created).toEqual([]);
      }
    }
    console.info(`cascade race: ${outcomes.committed} commits went first, ${outcomes.lost} lost their lease to the cancel`);
  });

  it('overlapping cancels and a closing child never deadlock (every transaction locks parent before child)', async () => {
    const schema = await schemaForTest();
    const clock = new ManualClock();
    const a = open(schema, clock, 6);
    const b = open(schema, clock, 6);
    const c = open(schema, clock, 6);
    await a.migrate();
    for (let round = 0; round < 20; round++) {
      const root = `o${round}`;
      const tree = await buildTree(a, root, 2, 3);
      const mid = tree[1]!;
      const leaf = `${mid}.2`;
      expect(tree).toContain(leaf);
      const leafLease = (await a.acquire(leaf, 'lw', 60_000))!;
      const results = await Promise.allSettled([
        b.cancel(root, { reason: 'x', mode: 'cancel', graceMs: 0, maxChildDepth: 10 }),
        c.cancel(mid, { reason: 'y', mode: 'terminate', graceMs: 0, maxChildDepth: 10 }),
        a.commit(leafLease, commitOf(1, { events: [{ type: 'RunCompleted', payload: { result: 1 } }], close: { status: 'completed', result: 1 } })),
      ]);
      // the root's cancel always succeeds; the other two may find their run closed by it (never a deadlock error)
      expect(results[0].status).toBe('fulfilled');
      if (results[1].status === 'rejected') expect(results[1].reason).toBeInstanceOf(RunClosedError);
      if (results[2].status === 'rejected') expect(results[2].reason).toBeInstanceOf(LeaseLostError);
      // nothing of the tree is left open
      const open_ = (await Promise.all(tree.map((id) => a.getRun(id)))).filter((r) => r!.status === 'running');
      expect(open_).toEqual([]);
    }
  });

  it('a child closing while its parent continues as new (and moves it) commits cleanly either way', async () => {
    const schema = await schemaForTest();
    const clock = new ManualClock();
    const a = open(schema, clock, 6);
    const b = open(schema, clock, 6);
    await a.migrate();
    const seen = { moved: 0, stayed: 0 };
    for (let round = 0; round < 30; round++) {
      const p = `cp${round}`;
      const kid = `${p}-k`;
      await a.startRun(runOf(p));
      const pLease = (await a.acquire(p, 'pw', 60_000))!;
      await a.commit(pLease, commitOf(1, { children: [runOf(kid, { callId: 'k' })], wait: { ...NO_WAIT, onClose: [kid] } }));
      const kLease = (await b.acquire(kid, 'kw', 60_000))!;
      const next: NewRun = { runId: `${p}-2`, workflowId: `wf-${p}`, workflow: 'w', input: 2, queue: 'q' };
      const [cont, closed] = await Promise.all([
        a.commit(pLease, commitOf(1, { events: [{ type: 'RunContinued', payload: { input: 2, nextRunId: next.runId } }], close: { status: 'continued', next } })),
        // a little jitter, so that both orders happen
        new Promise((r) => setTimeout(r, round % 3)).then(() =>
          b.commit(kLease, commitOf(1, { events: [{ type: 'RunCompleted', payload: { result: 1 } }], close: { status: 'completed', result: 1 } })),
        ),
      ]);
      expect(cont.lastSeq).toBe(2);
      expect(closed.lastSeq).toBe(2);
      const child = (await a.getRun(kid))!;
      expect(child.status).toBe('completed');
      if (child.parentRunId === next.runId) seen.moved++;
      else {
        expect(child.parentRunId).toBe(p);
        seen.stayed++;
      }
      // whichever went first, the new run can read the outcome through the chain
      expect((await a.childOutcomes(child.parentRunId!, [kid]))[0]).toMatchObject({ status: 'completed', result: 1 });
    }
    console.info(`continue vs child close: moved ${seen.moved}, stayed ${seen.stayed}`);
  });

  it('a cancel of a 364-run tree (3 children per run, depth 5) takes one statement per generation', async () => {
    const schema = await schemaForTest();
    const clock = new ManualClock();
    const journal = open(schema, clock);
    await journal.migrate();
    const report: string[] = [];
    for (const [mode, graceMs] of [
      ['cancel', 0],
      ['cancel', 10_000],
      ['terminate', 0],
    ] as const) {
      const root = `t-${mode}-${graceMs}`;
      const tree = await buildTree(journal, root, 5, 3);
      expect(tree).toHaveLength(364);
      const stops: string[] = [];
      const off = journal.onWake((ids, kind) => kind === 'stop' && stops.push(...ids));
      await eventually(() => expect(listening(journal)).toBe(true));
      const counted = await countStatements(() => journal.cancel(root, { reason: 'bench', mode, graceMs, maxChildDepth: 10 }));
      const graceful = graceMs > 0;
      expect(counted.result.closed).toHaveLength(363);
      expect(counted.result.truncated).toEqual([]);
      // BEGIN, lock, close/request, 5 generations + the empty 6th, notify, COMMIT
      expect(counted.statements.length).toBeLessThanOrEqual(11);
      const runs = await journal.pool.query(`SELECT status, count(*)::int AS n FROM "${schema}".runs WHERE root_run_id = $1 GROUP BY status ORDER BY status`, [root]);
      const expected = graceful
        ? [{ status: 'cancelled', n: 363 }, { status: 'running', n: 1 }]
        : mode === 'terminate'
          ? [{ status: 'cancelled', n: 363 }, { status: 'terminated', n: 1 }]
          : [{ status: 'cancelled', n: 364 }];
      expect(runs.rows).toEqual(expected);
      // ParentClosePolicyApplied: one per closed child, on each closed parent (the 121 inner runs, minus an open root)
      const notes = await journal.pool.query(
        `SELECT count(*)::int AS n FROM "${schema}".events e JOIN "${schema}".runs r USING (run_id) WHERE r.root_run_id = $1 AND e.type = 'ParentClosePolicyApplied'`,
        [root],
      );
      expect(notes.rows[0].n).toBe(graceful ? 360 : 363);
      await eventually(() => expect(stops.length).toBe(graceful ? 363 : 364));
      off();
      report.push(`${mode}${graceful ? ' (graceful)' : ''}: ${counted.statements.length} statements, ${counted.ms} ms`);
      if (mode === 'cancel' && !graceful) report.push(`  ${counted.statements.join('\n  ')}`);
    }
    // the same tree closed by its root's own final commit (parent-close policies)
    const root = 't-close';
    const tree = await buildTree(journal, root, 5, 3);
    const lease = (await journal.acquire(root, 'w', 60_000))!;
    const head = (await journal.getRun(root))!.lastSeq;
    const counted = await countStatements(() =>
      journal.commit(lease, commitOf(head, { events: [{ type: 'RunCompleted', payload: { result: null } }], close: { status: 'completed', result: null } })),
    );
    const open_ = await journal.pool.query(`SELECT count(*)::int AS n FROM "${schema}".runs WHERE root_run_id = $1 AND status = 'running'`, [root]);
    expect(open_.rows[0].n).toBe(0);
    expect(tree).toHaveLength(364);
    report.push(`close of the root with 363 open descendants: ${counted.statements.length} statements, ${counted.ms} ms`);
    console.info(`cancel of a 364-run tree:\n${report.join('\n')}`);
  });

  it('payload columns keep JSON text as written (json, not jsonb): key order and exotic keys survive', async () => {
    const schema = await schemaForTest();
    const journal = open(schema, new ManualClock());
    await journal.migrate();
    const input = { z: 1, y: { '': 'empty key', 'ünï': 'côdé', b: [true, null, 1.5e-7] }, a: '\u0000-free but "quoted" \\ text' };
    const run = (await journal.startRun(runOf('j', { input }))).run;
    expect(JSON.stringify(run.input)).toBe(JSON.stringify(input));
    expect(JSON.stringify((await journal.getRun('j'))!.input)).toBe(JSON.stringify(input));
  });

  it('notify chunks stay under the 8000-byte payload limit and carry every id', () => {
    const ids = Array.from({ length: 500 }, (_, i) => `run-${'é'.repeat(40)}-${i}`);
    const chunks = notifyChunks(ids);
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) expect(Buffer.byteLength(c)).toBeLessThan(8000);
    expect(chunks.join(',').split(',')).toEqual(ids);
    expect(notifyChunks([])).toEqual([]);
  });

  // ---- helpers ----

  async function parentWaitingOn(journal: PgJournal, id: string) {
    await journal.startRun(runOf(id));
    const lease = (await journal.acquire(id, 'w', 60_000))!;
    const child = `${id}-child`;
    await journal.commit(lease, commitOf(1, { children: [runOf(child)], wait: { ...NO_WAIT, onClose: [child] }, release: true }));
    return { child };
  }

  async function closeChild(journal: PgJournal, runId: string) {
    const lease = (await journal.acquire(runId, 'cw', 60_000))!;
    const head = (await journal.getRun(runId))!.lastSeq;
    return journal.commit(lease, commitOf(head, { events: [{ type: 'RunCompleted', payload: { result: 1 } }], close: { status: 'completed', result: 1 } }));
  }
  /**
   * A tree of open runs under a new root: `fanOut` children per run, `depth` levels below the root, made by one
   * commit per parent. Returns every run id, root first, in breadth-first order.
   */
  async function buildTree(journal: PgJournal, root: string, depth: number, fanOut: number): Promise<string[]> {
    await journal.startRun(runOf(root));
    const all = [root];
    let level = [root];
    for (let d = 0; d < depth; d++) {
      const next: string[] = [];
      for (const parent of level) {
        const lease = (await journal.acquire(parent, 'builder', 60_000))!;
        const head = (await journal.getRun(parent))!.lastSeq;
        const kids = Array.from({ length: fanOut }, (_, i) => runOf(`${parent}.${i}`, { callId: `c${i}` }));
        await journal.commit(lease, commitOf(head, { children: kids, release: true }));
        next.push(...kids.map((k) => k.runId));
      }
      all.push(...next);
      level = next;
    }
    return all;
  }

});

/** Whether the journal's LISTEN connection is up (a test-only peek at a private field). */
function listening(journal: PgJournal): boolean {
  return (journal as unknown as { listenClient: unknown }).listenClient !== null;
}

async function eventuallyAsync(check: () => Promise<void>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/**
 * Runs `fn` while counting every statement any pg client in this process sends (nothing else runs meanwhile in these
 * tests), and times it.
 */
async function countStatements<T>(fn: () => Promise<T>, options: { committerOnly?: boolean } = {}): Promise<{ result: T; statements: string[]; ms: number }> {
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = proto.query;
  // With committerOnly, only the statements of the connection that ran the commit's transaction count (another
  // connection may send something meanwhile, e.g. a start's announcement, which is sent after the start's commit).
  const seen: Array<{ client: unknown; text: string }> = [];
  proto.query = function (this: unknown, ...args: unknown[]) {
    const first = args[0];
    const text = typeof first === 'string' ? first : (first as { text?: string })?.text ?? '?';
    seen.push({ client: this, text: text.replace(/\s+/g, ' ').trim().slice(0, 70) });
    return original.apply(this, args);
  };
  const t0 = performance.now();
  try {
    const result = await fn();
    const committer = options.committerOnly ? seen.find((x) => x.text === 'BEGIN')?.client : undefined;
    const statements = seen.filter((x) => committer === undefined || x.client === committer).map((x) => x.text);
    return { result, statements, ms: Math.round(performance.now() - t0) };
  } finally {
    proto.query = original;
  }
}
