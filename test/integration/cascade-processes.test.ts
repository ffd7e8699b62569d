import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { Client } from '../../src/client/client.js';
import { createPgJournal, type PgJournal } from '../../src/journal/postgres/index.js';
import { freshSchema } from '../support/postgres.js';
import { treeNode } from './fixtures/crash-workflows.js';
import { useWorkerProcesses, waitFor, sleep, type WorkerProcess } from './fixtures/processes.js';

/**
 * SPEC section 7 on live worker processes: a 364-run tree (each run starts 3 children, depth 5; every run waits on a
 * signal) hosted by two `skein worker` processes. After `cancel(root)`:
 *  - every run of the tree is cancelled, in the one transaction of the cancel (363 descendants reported closed);
 *  - no run keeps a lease, and nothing is appended to any of them afterwards;
 *  - both worker processes have stopped every actor of the tree and dropped every cached engine (they learn through
 *    the stop notification, not a poll: asked for their health right away, they show none left), and logged no error.
 */
describe('cancelling a 364-run tree live in worker processes', () => {
  const { procs, cleanups, url } = useWorkerProcesses();

  /** Asks a worker process for its health (SIGUSR2 prints one JSON line) and waits for the answer. */
  async function health(p: WorkerProcess): Promise<{ activeRuns: number; cachedEngines: number; lastError: string | null }> {
    const before = p.output().split('skein-health ').length;
    p.signal('SIGUSR2');
    const line = await waitFor(`health of ${p.workerId}`, () => {
      const parts = p.output().split('skein-health ');
      return parts.length > before ? parts[parts.length - 1]!.split('\n')[0] : undefined;
    });
    return JSON.parse(line);
  }

  it('cancels every run and leaves no live actor or cached engine in either process', async () => {
    const { schema, drop } = await freshSchema(url());
    cleanups.push(drop);
    const journal: PgJournal = await createPgJournal({ connectionString: url(), schema, maxConnections: 4 });
    cleanups.push(() => journal.close());
    const workers = [0, 1].map((i) => procs.spawn({ workerId: `tree-w${i}`, url: url(), schema, leaseMs: 10_000, pollMs: 200 }));
    const client = new Client(journal, { logger: pino({ level: 'silent' }) });
    const root = await client.start(treeNode, 0, { workflowId: 'tree' });

    // The whole tree exists and every run is waiting (journaled its wait, gave its lease back).
    await waitFor(
      'the 364-run tree to be waiting',
      async () => {
        const { rows } = await journal.pool.query(
          `SELECT count(*)::int AS n, count(*) FILTER (WHERE last_seq >= 2 AND lease_owner IS NULL AND status = 'running')::int AS idle
           FROM "${schema}".runs WHERE root_run_id = $1`,
          [root.runId],
        );
        return rows[0].n === 364 && rows[0].idle === 364;
      },
      60_000,
    );
    const cachedBefore = (await Promise.all(workers.map(health))).reduce((a, h) => a + h.cachedEngines, 0);
    expect(cachedBefore).toBeGreaterThan(0); // sticky execution: the waiting runs' engines are parked in the workers

    const t0 = performance.now();
    const result = await client.cancel(root.runId, 'tree cancelled', { graceMs: 0 });
    const dbMs = performance.now() - t0;
    expect(result.status).toBe('cancelled');
    expect(result.closed).toHaveLength(363);
    expect(result.truncated).toEqual([]);

    const { rows } = await journal.pool.query(
      `SELECT status, count(*)::int AS n, count(lease_owner)::int AS leased, max(last_seq)::int AS seq FROM "${schema}".runs WHERE root_run_id = $1 GROUP BY status`,
      [root.runId],
    );
    expect(rows.map((r) => [r.status, r.n, r.leased])).toEqual([['cancelled', 364, 0]]);

    // Both processes dropped every actor and engine of the tree: they were told, not left to find out.
    await waitFor('workers to drop the tree', async () => {
      const hs = await Promise.all(workers.map(health));
      return hs.every((h) => h.activeRuns === 0 && h.cachedEngines === 0) ? hs : undefined;
    }, 5_000);
    const stoppedMs = performance.now() - t0;
    console.info(`364-run tree: cancelled in the database in ${dbMs.toFixed(1)} ms; both workers clear ${stoppedMs.toFixed(1)} ms after cancel()`);

    // Nothing is appended to a cancelled run afterwards.
    const seqs = async () =>
      (await journal.pool.query(`SELECT run_id, last_seq FROM "${schema}".runs WHERE root_run_id = $1 ORDER BY run_id`, [root.runId])).rows;
    const after = await seqs();
    await sleep(500);
    expect(await seqs()).toEqual(after);
    for (const w of workers) expect(w.output()).not.toMatch(/"level":50/);
  });
});
