/**
 * `npm start`: runs the batch example on the default journal (PostgreSQL at DATABASE_URL, or an embedded server
 * under the project's .skein/ that needs no installation), printing progress while it runs and the result tree at
 * the end.
 *
 * Kill it midway (Ctrl-C, or kill -9) and run it again, from any directory of the project: it resumes the same batch
 * (its id is kept in .skein/current-batch), finishing the same runs without starting any child twice.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { Client, Worker } from '../../src/index.js';
import { openJournal, skeinHome } from '../../src/journal/open.js';
import type { RunRecord } from '../../src/journal/journal.js';
import { activities, batch, workflows, type Order } from './workflows.js';

// (the same folder the embedded server uses, found from any directory of the project: see skeinHome)
const MARKER = join(skeinHome(), 'current-batch');
const ORDERS = Number(process.env.SKEIN_EXAMPLE_ORDERS ?? 20);

async function main(): Promise<void> {
  const t0 = Date.now();
  const opened = await openJournal();
  console.log(`journal: ${opened.describe()}`);
  const worker = new Worker({
    workflows,
    activities,
    journal: opened.journal,
    logger: pino({ level: process.env.SKEIN_LOG_LEVEL ?? 'warn' }),
    // Short leases so that, after a kill, a restarted example takes over its runs within seconds.
    leaseMs: 3000,
    pollIntervalMs: 250,
  });
  worker.start();
  const client = new Client(opened.journal);

  let workflowId = existsSync(MARKER) ? readFileSync(MARKER, 'utf8').trim() : '';
  const previous = workflowId ? await opened.journal.getRunByWorkflowId(workflowId) : undefined;
  if (previous && previous.status === 'running') {
    console.log(`resuming ${workflowId} (left unfinished by an earlier run)`);
  } else {
    workflowId = `batch-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    mkdirSync(skeinHome(), { recursive: true });
    writeFileSync(MARKER, workflowId);
    console.log(`starting ${workflowId} with ${ORDERS} orders`);
  }
  const orders: Order[] = Array.from({ length: ORDERS }, (_, i) => ({ id: `o-${i + 1}`, amount: 10 * (i + 1), email: `buyer${i + 1}@example.com` }));
  const ref = await client.start(batch, { orders }, { workflowId });

  const progress = setInterval(() => void printProgress(client, ref.runId), 300);
  const result = await client.result(ref, { timeoutMs: 120_000 });
  clearInterval(progress);
  await printProgress(client, ref.runId);

  console.log('\nresult tree:');
  await printTree(client, ref.runId, '');
  console.log(`\nbatch result: ${result.paid} paid, ${result.failed} failed (handled), audited ${result.audited}`);
  console.log(`done in ${Date.now() - t0} ms`);
  rmSync(MARKER, { force: true });
  await worker.shutdown();
  await opened.close();
}

async function printProgress(client: Client, runId: string): Promise<void> {
  const kids = await client.listChildren(runId);
  const by = (s: string) => kids.filter((k) => k.status === s).length;
  console.log(`progress: ${kids.length} children started, ${by('completed')} completed, ${by('running')} running, ${by('failed')} failed`);
}

async function printTree(client: Client, runId: string, indent: string): Promise<void> {
  const run: RunRecord = await client.getRun(runId);
  const summary = run.status === 'completed' ? JSON.stringify(run.result)?.slice(0, 100) : run.error?.message;
  console.log(`${indent}${run.workflowId} [${run.workflow}] ${run.status}${summary ? ` -> ${summary}` : ''}`);
  const kids = (await client.listChildren(runId)).sort((a, b) => a.workflowId.localeCompare(b.workflowId, "en", { numeric: true }));
  for (const c of kids) await printTree(client, c.runId, indent + '  ');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
