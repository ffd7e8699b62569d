import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import { createPgJournal, type PgJournal } from '../../src/journal/postgres/index.js';
import { freshSchema } from '../support/postgres.js';
import { fleetParent, fleetW, hotelSaga } from './fixtures/fleet-workflows.js';
import { JournalProbe, sleep, useWorkerProcesses, waitFor, type WorkerProcess } from './fixtures/processes.js';

/**
 * SPEC section 12, "a worker claims only runs of workflows it registered; a run that no live worker can execute waits
 * and starts as soon as a capable worker appears; an activity the worker running its run does not have is not a
 * failure of the activity: the run is released and retried with backoff", on real `skein worker` processes sharing one
 * queue of a real PostgreSQL. Worker A is started with SKEIN_FLEET_OMIT (fixtures/fleet-workflows.ts) so it lacks a
 * workflow or an activity that worker B has, as in a fleet in the middle of a rolling deploy.
 */

const MODULE = 'test/integration/fixtures/fleet-workflows.ts';
const LEASE_MS = 5000;

describe('a mixed fleet: workers that register different workflows and activities on one queue', () => {
  const { procs, cleanups, url } = useWorkerProcesses();

  async function setUp() {
    const { schema, drop } = await freshSchema(url());
    cleanups.push(drop);
    const journal: PgJournal = await createPgJournal({ connectionString: url(), schema, maxConnections: 4 });
    cleanups.push(() => journal.close());
    const dir = await mkdtemp(path.join(tmpdir(), 'skein-fleet-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const execLog = path.join(dir, 'executions.log');
    const spawn = (workerId: string, omit: string[]) =>
      procs.spawn({
        workerId,
        url: url(),
        schema,
        leaseMs: LEASE_MS,
        pollMs: 100,
        workflowsModule: MODULE,
        // info: the test waits for 'worker started' (and checks that nothing above info is logged)
        env: { SKEIN_EXEC_LOG: execLog, SKEIN_FLEET_OMIT: omit.join(','), SKEIN_LOG_LEVEL: 'info' },
      });
    const executions = async () =>
      (await readFile(execLog, 'utf8').catch(() => ''))
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          const [activity, key, pid] = l.split(' ');
          return { activity: activity!, key: key!, pid: Number(pid) };
        });
    return { schema, journal, client: new Client(journal, { logger: pino({ level: 'silent' }) }), probe: new JournalProbe(journal.pool, schema), spawn, executions };
  }

  /** Waits until the worker process has started claiming (before that, SIGUSR2 would end it). */
  const started = (p: WorkerProcess) => waitFor(`${p.workerId} to start`, () => p.output().includes('"msg":"worker started"') || (!p.alive && Promise.reject(new Error(`${p.workerId} exited:\n${p.output()}`))), 30_000, 50);

  /** Asks a started worker process for its health (SIGUSR2 prints one JSON line). */
  async function health(p: WorkerProcess): Promise<{ activeRuns: number; activationsEnded: Record<string, number>; lastError: string | null }> {
    const before = p.output().split('skein-health ').length;
    p.signal('SIGUSR2');
    const line = await waitFor(`health of ${p.workerId}`, () => {
      const parts = p.output().split('skein-health ');
      return parts.length > before ? parts[parts.length - 1]!.split('\n')[0] : undefined;
    }, 30_000, 100);
    return JSON.parse(line);
  }

  /** Pino lines of a worker at warn (40) or above, with their messages. */
  const warnings = (p: WorkerProcess) =>
    p
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; err?: { type?: string; message?: string } })
      .filter((l) => l.level >= 40);

  it('(a) runs of a workflow only B has are all run by B: A never claims nor activates one, root or child, and logs nothing about them', async () => {
    const { client, probe, spawn, executions } = await setUp();
    const a = spawn('fleet-A', ['fleetW']);
    const b = spawn('fleet-B', []);
    await Promise.all([started(a), started(b)]);

    // Roots of fleetW, and parents (which A may run) whose children are runs of fleetW (which A must hand over).
    const roots = await Promise.all(Array.from({ length: 12 }, (_, i) => client.start(fleetW, { key: `r${i}`, ms: 60 }, { workflowId: `w-${i}` })));
    const parents = await Promise.all(Array.from({ length: 6 }, (_, i) => client.start(fleetParent, { key: `p${i}`, n: 3, ms: 30 }, { workflowId: `p-${i}` })));

    // Who holds leases on runs of fleetW, sampled while they run. A child is leased to the worker whose commit creates
    // it (the journal leases a commit's new children to the committer), so A may be seen holding a child of a parent it
    // runs for the moment between that commit and its release of the child; never a root, never a run it activated.
    const held: Array<{ lease_owner: string; root: boolean; last_seq: number }> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        held.push(
          ...(await probe.query<{ lease_owner: string; root: boolean; last_seq: number }>(
            `SELECT lease_owner, parent_run_id IS NULL AS root, last_seq FROM $S.runs WHERE workflow = 'fleetW' AND lease_owner IS NOT NULL`,
          )),
        );
        await sleep(5);
      }
    })();
    const results = await Promise.all(roots.map((r) => client.result(r, { timeoutMs: 45_000 })));
    const parentResults = await Promise.all(parents.map((p) => client.result(p, { timeoutMs: 45_000 })));
    sampling = false;
    await sampler;

    expect(results.every((r) => r.pid === b.pid)).toBe(true);
    expect(parentResults.flat().every((r) => r.pid === b.pid)).toBe(true);
    expect(held.filter((h) => h.lease_owner === 'fleet-B').length).toBeGreaterThan(0); // the sampler saw leases
    expect(held.filter((h) => h.lease_owner !== 'fleet-B' && (h.root || h.last_seq > 1))).toEqual([]);
    const stamps = (await executions()).filter((e) => e.activity === 'stamp');
    expect(stamps).toHaveLength(12 + 6 * 3);
    expect(stamps.filter((e) => e.pid !== b.pid)).toEqual([]);
    // A ran no activation that failed, and said nothing about runs it cannot execute.
    const ha = await health(a);
    expect(ha.activationsEnded.failed).toBe(0);
    expect(ha.lastError).toBeNull();
    expect(warnings(a)).toEqual([]);
    expect(a.output()).not.toMatch(/UnknownWorkflowError|unknown workflow/);
    expect(await probe.openOrLeased()).toEqual([]);
  });

  it('(b) a run of a workflow no live worker has waits, running and due; B, once started, runs it', async () => {
    const { journal, client, spawn, executions } = await setUp();
    const a = spawn('fleet-A', ['fleetW']);
    await started(a);
    const ref = await client.start(fleetW, { key: 'lonely', ms: 10 }, { workflowId: 'lonely' });
    await sleep(1500); // fifteen of A's polls
    const waiting = (await journal.getRun(ref.runId))!;
    expect(waiting).toMatchObject({ status: 'running', leaseOwner: null, lastSeq: 1, error: null });
    expect(waiting.nextWakeupAt).not.toBeNull();
    expect(waiting.nextWakeupAt!).toBeLessThanOrEqual(Date.now());
    expect(warnings(a)).toEqual([]);

    const b = spawn('fleet-B', []);
    expect(await client.result(ref, { timeoutMs: 30_000 })).toEqual({ key: 'lonely', pid: b.pid });
    expect((await executions()).map((e) => [e.activity, e.pid])).toEqual([['stamp', b.pid]]);
    expect(warnings(a)).toEqual([]);
  });

  it('(c) a saga whose compensation only B has: with A alone it stalls (not failed, row says why), then B compensates once', async () => {
    const { journal, client, probe, spawn, executions } = await setUp();
    const a = spawn('fleet-A', ['cancelHotel']);
    await started(a);
    const ref = await client.start(hotelSaga, 'h1', { workflowId: 'saga-h1' });

    // A books, fails to charge, needs cancelHotel: it releases the run with a stall, and again after the backoff.
    const stalled = await waitFor(
      'the saga to be stalled twice by A',
      async () => {
        const r = (await journal.getRun(ref.runId))!;
        return r.stall && r.stall.attempts >= 2 ? r : undefined;
      },
      30_000,
      50,
    );
    expect(stalled).toMatchObject({
      status: 'running',
      error: null,
      leaseOwner: null,
      stall: { reason: 'activity_unavailable', activity: 'cancelHotel', workerId: 'fleet-A' },
    });
    expect(stalled.nextWakeupAt).toBe(stalled.stall!.nextAttemptAt);
    expect(stalled.stall!.nextAttemptAt).toBeGreaterThan(stalled.stall!.since);
    const path = stalled.stall!.path;
    const failedResults = await probe.query<{ path: string; error: { name: string } }>(
      `SELECT payload->>'path' AS path, payload->'error' AS error FROM $S.events WHERE run_id = $1 AND type = 'ActivityFailed'`,
      [ref.runId],
    );
    expect(failedResults.map((r) => r.error.name)).toEqual(['ApplicationError']); // chargeCard's, nothing for cancelHotel
    expect(failedResults.map((r) => r.path)).not.toContain(path);
    expect(warnings(a).every((w) => w.level === 40 && /activity not registered/.test(w.msg))).toBe(true);

    const b = spawn('fleet-B', []);
    expect(await client.result(ref, { timeoutMs: 60_000 })).toEqual({ compensated: 'cancelled hotel-h1' });
    const cancels = (await executions()).filter((e) => e.activity === 'cancelHotel');
    expect(cancels).toEqual([{ activity: 'cancelHotel', key: 'hotel-h1', pid: b.pid }]);
    const done = (await journal.getRun(ref.runId))!;
    expect(done).toMatchObject({ status: 'completed', stall: null });
    const results = await probe.query<{ type: string }>(`SELECT type FROM $S.events WHERE run_id = $1 AND payload->>'path' = $2 ORDER BY seq`, [ref.runId, path]);
    expect(results.map((r) => r.type)).toEqual(['ActivityScheduled', 'ActivityCompleted']);
    expect(warnings(b)).toEqual([]);
    expect(await probe.duplicateActivityResults()).toEqual([]);
  });
});
