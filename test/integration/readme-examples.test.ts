/**
 * The README's examples, run as a user would run them: its "Run lifecycle" block is a verbatim excerpt of
 * examples/lifecycle/workflows.ts (checked here line by line), and each example is run on PostgreSQL with a Worker
 * and a Client, with what the README says about it asserted.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, Worker } from '../../src/index.js';
import type { Journal } from '../../src/journal/journal.js';
import { freshPgJournal } from '../support/postgres.js';
import * as ex from '../../examples/lifecycle/workflows.js';
import * as quick from '../../examples/quickstart/workflows.js';

const root = path.resolve(import.meta.dirname, '../..');

function codeBlocks(markdown: string, heading: string): string[] {
  const section = markdown.slice(markdown.indexOf(heading), markdown.indexOf('\n## ', markdown.indexOf(heading) + heading.length));
  return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

describe('README examples', () => {
  it("the first example is the quickstart module's readme region, verbatim (with the package's import)", () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const source = readFileSync(path.join(root, 'examples/quickstart/workflows.ts'), 'utf8');
    const region = source.slice(source.indexOf('// #region readme-quickstart\n') + '// #region readme-quickstart\n'.length, source.indexOf('// #endregion readme-quickstart'));
    const first = readme.match(/```ts\n([\s\S]*?)```/)![1]!;
    expect(first).toBe(`import { workflow, child, all, activity, defineActivity } from 'skein';\n\n${region}`);
  });

  it("the 'Run lifecycle' block is the example module's readme region, verbatim", () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const source = readFileSync(path.join(root, 'examples/lifecycle/workflows.ts'), 'utf8');
    const region = source.slice(source.indexOf('// #region readme-lifecycle\n') + '// #region readme-lifecycle\n'.length, source.indexOf('// #endregion readme-lifecycle'));
    expect(codeBlocks(readme, '## Run lifecycle')[0]).toBe(region);
  });

  describe('run on PostgreSQL', () => {
    let journal: Journal;
    let cleanup: () => Promise<void>;
    let worker: Worker;
    let client: Client;
    const silent = pino({ level: 'silent' });
    beforeAll(async () => {
      ({ journal, cleanup } = await freshPgJournal({ maxConnections: 6 }));
      worker = new Worker({ workflows: ex.workflows, activities: ex.activities, journal, logger: silent, pollIntervalMs: 20 });
      worker.start();
      client = new Client(journal, { logger: silent });
    });
    afterAll(async () => {
      await worker.shutdown();
      await cleanup();
    });
    const until = async (cond: () => Promise<boolean>) => {
      for (let i = 0; !(await cond()); i++) {
        if (i > 1000) throw new Error('condition not reached');
        await new Promise((r) => setTimeout(r, 10));
      }
    };

    it('quickstart: the batch audits and charges every order', async () => {
      const w = new Worker({ workflows: [quick.batch, quick.order], activities: [quick.charge], journal, logger: silent, pollIntervalMs: 20, queues: ['quickstart'] });
      w.start();
      try {
        const run = await client.start(quick.batch, ['a', 'b'], { queue: 'quickstart' });
        expect(await client.result(run, { timeoutMs: 10_000 })).toEqual({ audit: 'ch_audit', orders: [{ id: 'a', chargeId: 'ch_a' }, { id: 'b', chargeId: 'ch_b' }] });
      } finally {
        await w.shutdown();
      }
    });

    it('approval: a signal is delivered to the waiting run', async () => {
      const run = await client.start(ex.approval, 'A-1');
      await client.signal(run.runId, 'approve', 'ada');
      expect(await client.result(run, { timeoutMs: 10_000 })).toEqual({ id: 'A-1', approvedBy: 'ada' });
    });

    it('trip: a graceful cancel while it waits on its hotel child runs the flight compensation and closes cancelled', async () => {
      const run = await client.start(ex.trip, { id: 'T-1', city: 'Lyon' });
      await until(async () => (await journal.listChildren(run.runId)).length === 1);
      await client.cancel(run.runId, 'customer changed plans', { graceMs: 30_000 });
      await until(async () => (await journal.getRun(run.runId))!.status !== 'running');
      expect((await journal.getRun(run.runId))!.status).toBe('cancelled');
      expect(ex.undone).toEqual(['FL-T-1']);
      const [hotel] = await journal.listChildren(run.runId);
      expect(hotel!.status).toBe('cancelled');
      const types = (await journal.readEvents(run.runId)).map((e) => e.type);
      expect(types[types.length - 1]).toBe('RunCancelled');
    });

    it('terminate: no workflow code runs', async () => {
      const run = await client.start(ex.approval, 'A-2');
      await until(async () => (await journal.readEvents(run.runId)).length > 1);
      expect((await client.terminate(run.runId, 'operator')).status).toBe('terminated');
    });

    it("order: an 'abandon' child outlives its parent", async () => {
      const run = await client.start(ex.order, { id: 'O-1' });
      expect(await client.result(run, { timeoutMs: 10_000 })).toBe('order O-1 placed');
      const [audit] = await journal.listChildren(run.runId);
      expect(audit!.status).toBe('running');
      await client.signal(audit!.runId, 'flush');
      expect(await client.result(audit!.runId, { timeoutMs: 10_000 })).toBe('audited O-1');
    });

    it('pricing: a child with timeout and retry; poller: continue-as-new keeps the workflow id', async () => {
      expect(await client.result(await client.start(ex.pricing, { item: 'tea' }), { timeoutMs: 10_000 })).toEqual({ item: 'tea', price: 42 });
      const p = await client.start(ex.poller, { cursor: 0, n: 0 }, { workflowId: 'poller-1' });
      await until(async () => (await journal.getRunByWorkflowId('poller-1'))!.status === 'completed');
      expect((await journal.getRunByWorkflowId('poller-1'))!.result).toBe(30);
      expect((await journal.getRun(p.runId))!.status).toBe('continued');
    });
  });
});
