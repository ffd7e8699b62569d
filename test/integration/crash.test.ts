import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import { createPgJournal, type PgJournal } from '../../src/journal/postgres/index.js';
import { freshSchema } from '../support/postgres.js';
import { crashParent, expectedParentResult, openParentWork } from './fixtures/crash-workflows.js';
import { JournalProbe, countExecutions, useWorkerProcesses, waitFor, type WorkerProcess } from './fixtures/processes.js';

/**
 * SIGKILL in the middle of a 1,000-child fan-out (SPEC §5 crash safety, §11 "a worker killed with SIGKILL at any
 * point: another worker finishes its runs, each child is started once, each activity result journaled once").
 *
 * Three real worker processes (`skein worker`, lease 2 s, poll 200 ms, at most 100 live runs each so the children
 * spread over all three) share one fresh schema. The test starts a `crashParent` through a Client on its own
 * PgJournal: 1,000 children, each running two activities of a few ms, plus an activity of the parent's own that
 * keeps the parent's lease held (and renewed) by one worker for a while. When some children have completed and
 * others still run, one worker is killed with SIGKILL:
 *  A. a worker that does NOT hold the parent's lease, but holds leases on running children;
 *  B. the worker that holds the parent's lease (and, usually, many children's).
 * What must still hold, in both cases, once the parent has completed:
 *  - the parent's result is exactly right (no child result lost or counted twice);
 *  - exactly 1,000 child runs exist, and the parent journaled 1,000 ChildScheduled with 1,000 distinct childRunIds,
 *    the same set: every child was started exactly once, even when the parent's activation was replayed elsewhere;
 *  - every run's journal is the exact expected sequence; every activity has exactly one journaled result, although
 *    it may have *executed* more than once (at-least-once: the dead worker's in-flight activities run again; the
 *    counts are printed, not asserted);
 *  - after the dead worker's leases expired, nothing is left open and no run names a lease owner (so none names the
 *    dead one); every run's events are seq 1..last_seq, gap-free.
 */

const CHILDREN = 1000;
const LEASE_MS = 2000;

describe('SIGKILL of a worker process in a 1,000-child fan-out', () => {
  const { procs, cleanups, url } = useWorkerProcesses();

  async function setUp() {
    const { schema, drop } = await freshSchema(url());
    cleanups.push(drop);
    const journal: PgJournal = await createPgJournal({ connectionString: url(), schema, maxConnections: 4 });
    cleanups.push(() => journal.close());
    const dir = await mkdtemp(path.join(tmpdir(), 'skein-crash-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const execLog = path.join(dir, 'executions.log');
    const workers = [0, 1, 2].map((i) =>
      procs.spawn({ workerId: `w${i}`, url: url(), schema, leaseMs: LEASE_MS, pollMs: 200, concurrency: 100, env: { SKEIN_EXEC_LOG: execLog } }),
    );
    return { schema, journal, client: new Client(journal), probe: new JournalProbe(journal.pool, schema), execLog, workers };
  }

  /** Lease owners of running runs, counted per owner. */
  async function leasesByOwner(probe: JournalProbe): Promise<Map<string, number>> {
    const rows = await probe.query<{ lease_owner: string; n: number }>(
      `SELECT lease_owner, count(*)::int AS n FROM $S.runs WHERE status = 'running' AND lease_owner IS NOT NULL GROUP BY 1`,
    );
    return new Map(rows.map((r) => [r.lease_owner, r.n]));
  }

  async function completedChildren(probe: JournalProbe, parentRunId: string): Promise<number> {
    const [r] = await probe.query<{ n: number }>(`SELECT count(*)::int AS n FROM $S.runs WHERE parent_run_id = $1 AND status = 'completed'`, [parentRunId]);
    return r!.n;
  }

  async function scenario(which: 'not-parent-owner' | 'parent-owner') {
    const t0 = Date.now();
    const { client, probe, execLog, workers } = await setUp();
    // The parent's own activity runs until the test opens it (right after the kill), so the parent's lease is held,
    // and the activity in flight, when the kill comes, however slow the machine is.
    const parent = await client.start(crashParent, { children: CHILDREN, ms: 8, parentMs: 60_000, untilOpened: true }, { workflowId: `crash-${which}` });

    // Wait until some children completed while others still run, and the worker to kill holds leases.
    let victim!: WorkerProcess;
    let held = new Map<string, number>();
    let done = 0;
    let parentOwner: string | null = null;
    await waitFor(
      'a moment with children both completed and running, and a victim holding leases',
      async () => {
        done = await completedChildren(probe, parent.runId);
        if (done < 100) return false;
        parentOwner = (await client.getRun(parent.runId)).leaseOwner;
        if (!parentOwner) return false;
        held = await leasesByOwner(probe);
        const candidates = workers.filter((w) => (which === 'parent-owner' ? w.workerId === parentOwner : w.workerId !== parentOwner));
        // A: the non-parent worker holding the most child leases; B: the parent's owner, once it also holds children.
        const best = candidates.sort((a, b) => (held.get(b.workerId) ?? 0) - (held.get(a.workerId) ?? 0))[0];
        const minHeld = which === 'parent-owner' ? 2 : 1; // the parent's own lease counts for B
        if (!best || (held.get(best.workerId) ?? 0) < minHeld) return false;
        victim = best;
        return true;
      },
      60_000,
      20,
    );
    expect(done).toBeLessThan(CHILDREN); // mid-run: others still run
    const killedAt = Date.now();
    victim.signal('SIGKILL');
    const exit = await victim.exited;
    expect(exit.signal).toBe('SIGKILL');
    openParentWork(execLog);
    const survivors = workers.filter((w) => w !== victim);

    // The parent completes with the right result, although a worker died holding leases.
    const result = await client.result(parent, { timeoutMs: 90_000 });
    const finishedAt = Date.now();
    expect(result).toEqual(expectedParentResult(CHILDREN));

    // Every child was started exactly once: 1,000 rows, 1,000 distinct ChildScheduled ids, the same set.
    const parentEvents = (await client.history(parent.runId)).events;
    const scheduled = parentEvents.filter((e) => e.type === 'ChildScheduled').map((e) => (e.payload as { childRunId: string }).childRunId);
    expect(scheduled).toHaveLength(CHILDREN);
    expect(new Set(scheduled).size).toBe(CHILDREN);
    const childRows = await probe.query<{ run_id: string; status: string }>(`SELECT run_id, status FROM $S.runs WHERE parent_run_id = $1`, [parent.runId]);
    expect(childRows).toHaveLength(CHILDREN);
    expect(new Set(childRows.map((r) => r.run_id))).toEqual(new Set(scheduled));
    expect(childRows.every((r) => r.status === 'completed')).toBe(true);
    const [allRuns] = await probe.query<{ n: number }>(`SELECT count(*)::int AS n FROM $S.runs`);
    expect(allRuns!.n).toBe(CHILDREN + 1);

    // The parent's journal: each decision and each delivery once.
    const count = (t: string) => parentEvents.filter((e) => e.type === t).length;
    expect(count('ChildCompleted')).toBe(CHILDREN);
    expect(new Set(parentEvents.filter((e) => e.type === 'ChildCompleted').map((e) => (e.payload as { childRunId: string }).childRunId)).size).toBe(CHILDREN);
    expect([count('ActivityScheduled'), count('ActivityCompleted'), count('RunCompleted'), count('RunStarted')]).toEqual([1, 1, 1, 1]);
    expect(parentEvents).toHaveLength(2 * CHILDREN + 4);

    // Every child's journal is exactly its two activities, each result journaled once, whoever ran it.
    const childSeqs = await probe.query<{ types: string }>(
      `SELECT string_agg(e.type, ',' ORDER BY e.seq) AS types FROM $S.events e JOIN $S.runs r ON r.run_id = e.run_id
       WHERE r.parent_run_id = $1 GROUP BY e.run_id`,
      [parent.runId],
    );
    const shapes = new Map<string, number>();
    for (const r of childSeqs) shapes.set(r.types, (shapes.get(r.types) ?? 0) + 1);
    expect(Object.fromEntries(shapes)).toEqual({
      'RunStarted,ActivityScheduled,ActivityCompleted,ActivityScheduled,ActivityCompleted,RunCompleted': CHILDREN,
    });
    expect(await probe.duplicateActivityResults()).toEqual([]);
    expect(await probe.activitiesWithoutOneResult()).toEqual([]);
    expect(await probe.duplicateDecisions()).toEqual([]);

    // Gap-free seqs everywhere.
    expect(await probe.seqProblems()).toEqual([]);

    // After the dead worker's leases expired, nothing is open and nobody (dead or alive) holds a lease.
    await new Promise((r) => setTimeout(r, Math.max(0, killedAt + LEASE_MS - Date.now())));
    expect(await probe.openOrLeased()).toEqual([]);

    // The survivors are still alive and well (they were not disturbed by the death of their peer).
    expect(survivors.every((w) => w.alive)).toBe(true);

    // At-least-once, reported: every activity executed, some twice (those the dead worker had in flight).
    const ex = countExecutions(await readFile(execLog, 'utf8'));
    expect(ex.perKey.size).toBe(2 * CHILDREN + 1);
    const victimPid = String(victim.pid);
    const parentWorkBy = (await readFile(execLog, 'utf8'))
      .split('\n')
      .filter((l) => l.startsWith('parentWork '))
      .map((l) => l.split(' ')[2]);
    if (which === 'parent-owner') {
      // The killed worker was running the parent's activity; a survivor took the parent over and ran it again.
      expect(parentWorkBy).toContain(victimPid);
      expect(survivors.map((w) => String(w.pid))).toContain(parentWorkBy.at(-1));
    }
    console.info(
      `[crash ${which}] killed ${victim.workerId} (pid ${victim.pid}) at ${done}/${CHILDREN} children completed, ` +
        `holding ${held.get(victim.workerId)} leases (parent's owner: ${parentOwner}); leases at kill: ${JSON.stringify(Object.fromEntries(held))}; ` +
        `parent completed ${finishedAt - killedAt} ms after the kill, ${finishedAt - t0} ms after setup began; ` +
        `activities executed twice: ${ex.twice.length} (${ex.twice.slice(0, 8).join(', ')}${ex.twice.length > 8 ? ', ...' : ''}); ` +
        `executions by the killed process: ${ex.byPid.get(victimPid) ?? 0}; parent's activity executed by pids ${parentWorkBy.join(',')} (workers: ${workers.map((w) => `${w.workerId}=${w.pid}`).join(' ')})`,
    );
    for (const w of survivors) expect(w.output()).not.toMatch(/"level":(50|60)/); // no error or fatal log lines
  }

  it('A: a worker that does not hold the parent is SIGKILLed mid-run; the others finish its children', async () => {
    await scenario('not-parent-owner');
  }, 120_000);

  it("B: the worker holding the parent's lease is SIGKILLed mid-run; another takes the parent over", async () => {
    await scenario('parent-owner');
  }, 120_000);
});
