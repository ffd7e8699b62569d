import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import { createPgJournal } from '../../src/journal/postgres/index.js';
import { freshSchema } from '../support/postgres.js';
import { crashParent, expectedParentResult } from '../integration/fixtures/crash-workflows.js';
import { JournalProbe, countExecutions, useWorkerProcesses } from '../integration/fixtures/processes.js';

/**
 * No lease churn without faults (issue 9): three real `skein worker` processes at the default concurrency (1,000)
 * with a short lease (2 s) over a 1,000-child fan-out, each child running two activities. Nothing is killed, so
 * nothing may be lost: every worker keeps every lease it took (the lease heartbeat renews them all in one statement,
 * whatever each run is doing), no worker logs a lost lease, no run is taken over, and (at-least-once only matters
 * after a fault) fewer than 1% of the activities run twice.
 */
describe('three workers, default concurrency, 2 s lease, 1,000-child fan-out, no faults', () => {
  const { procs, cleanups, url } = useWorkerProcesses();

  it('completes with no lease lost and (almost) no activity run twice', async () => {
    const { schema, drop } = await freshSchema(url());
    cleanups.push(drop);
    const journal = await createPgJournal({ connectionString: url(), schema, maxConnections: 4 });
    cleanups.push(() => journal.close());
    const dir = await mkdtemp(path.join(tmpdir(), 'skein-soak-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const execLog = path.join(dir, 'executions.log');
    const workers = [0, 1, 2].map((i) => procs.spawn({ workerId: `w${i}`, url: url(), schema, leaseMs: 2000, pollMs: 200, env: { SKEIN_EXEC_LOG: execLog } }));
    const client = new Client(journal);
    const ref = await client.start(crashParent, { children: 1000, ms: 3, parentMs: 50 }, { workflowId: 'soak' });
    const probe = new JournalProbe(journal.pool, schema);
    const result = await client.result(ref, { timeoutMs: 150_000 }).catch(async (err: unknown) => {
      const rows = await probe.query(`SELECT status, workflow, lease_owner IS NOT NULL AS leased, (next_wakeup_at <= $1) AS due, count(*)::int AS n FROM $S.runs GROUP BY 1, 2, 3, 4`, [Date.now()]);
      console.log('[soak] stuck:', JSON.stringify(rows));
      throw err;
    });
    expect(result).toEqual(expectedParentResult(1000));

    const lost = workers.flatMap((w) => w.output().split('\n').filter((l) => l.includes('lease lost')));
    expect(lost, lost.slice(0, 3).join('\n')).toEqual([]);
    const { perKey, twice } = countExecutions(await readFile(execLog, 'utf8'));
    const executions = [...perKey.values()].reduce((a, b) => a + b, 0);
    console.log(`[soak] ${perKey.size} activities, ${executions} executions, ${twice.length} ran more than once`);
    expect(twice.length).toBeLessThan(perKey.size / 100);
    expect(await probe.duplicateDecisions()).toEqual([]);
  }, 200_000);
});
