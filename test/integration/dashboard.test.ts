/**
 * The web dashboard in a real browser: Debian's Chromium driven by playwright-core, a real worker on a real
 * PostgreSQL (fresh schema). Screenshots of each page are taken every run; they replace docs/dashboard/*.png (committed:
 * docs/dashboard.md shows them) only with SKEIN_UPDATE_SCREENSHOTS=1, so that a test run leaves the checkout clean
 * (run ids and times differ every run). Without Chromium the browser tests skip, loudly; the token rules are checked
 * over HTTP either way.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import { dashboard, type DashboardServer } from '../../src/dashboard/server.js';
import { PgJournal } from '../../src/journal/postgres/index.js';
import { ConfigError } from '../../src/runtime/errors.js';
import { Worker } from '../../src/worker/worker.js';
import { time } from '../../src/dashboard/ui/format.js';
import { freshSchema, testDatabaseUrl } from '../support/postgres.js';
import { repoRoot, waitFor } from './fixtures/processes.js';
import * as fx from './fixtures/dashboard-workflows.js';

const CHROMIUM = process.env.SKEIN_CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const SHOTS = process.env.SKEIN_UPDATE_SCREENSHOTS === '1' ? path.join(repoRoot, 'docs/dashboard') : path.join(tmpdir(), `skein-dashboard-shots-${process.pid}`);
if (!CHROMIUM) {
  console.warn('\n*** skein tests: NO CHROMIUM FOUND (/usr/bin/chromium): the dashboard browser tests are SKIPPED. Install it: apt-get install -y chromium ***\n');
}

let journal: PgJournal;
let drop: () => Promise<void>;
let worker: Worker;
let client: Client;
let dash: DashboardServer;

beforeAll(async () => {
  const url = await testDatabaseUrl();
  const s = await freshSchema(url);
  drop = s.drop;
  journal = new PgJournal({ connectionString: url, schema: s.schema, maxConnections: 6 });
  await journal.migrate();
  const logger = pino({ level: 'silent' });
  worker = new Worker({ workflows: fx.workflows, activities: fx.activities, journal, logger, workerId: 'dashboard-test-worker', pollIntervalMs: 200, heartbeatIntervalMs: 1000 });
  worker.start();
  client = new Client(journal, { logger });
  dash = await dashboard({ client, port: 0 });
});

afterAll(async () => {
  await dash?.close();
  await worker?.shutdown();
  await journal?.close();
  await drop?.();
});

describe('dashboard tokens', () => {
  it('refuses to bind a non-loopback address without a token', async () => {
    await expect(dashboard({ client, host: '0.0.0.0', port: 0 })).rejects.toBeInstanceOf(ConfigError);
  });

  it('bound to 0.0.0.0 with a token: requests and actions without it are refused (401), with it they work', async () => {
    const d = await dashboard({ client, host: '0.0.0.0', port: 0, token: 's3cret' });
    try {
      const base = `http://127.0.0.1:${d.port}`;
      const ref = await client.start(fx.approval, null, { workflowId: 'token-check' });
      const act = { 'content-type': 'application/json', 'x-skein-dashboard': '1' };
      const refused = await fetch(`${base}/api/runs/${ref.runId}/cancel`, { method: 'POST', headers: act, body: '{}' });
      expect(refused.status).toBe(401);
      expect((await fetch(`${base}/api/runs/${ref.runId}/cancel`, { method: 'POST', headers: { ...act, authorization: 'Bearer wrong' }, body: '{}' })).status).toBe(401);
      expect((await fetch(`${base}/api/runs`)).status).toBe(401);
      expect((await fetch(`${base}/`)).status).toBe(401);
      // a page opened with ?token= sets the cookie, and the cookie is enough
      const opened = await fetch(`${base}/?token=s3cret`, { redirect: 'manual' });
      expect(opened.status).toBe(303);
      const cookie = opened.headers.get('set-cookie')!.split(';')[0]!;
      expect((await fetch(`${base}/api/runs`, { headers: { cookie } })).status).toBe(200);
      // with the bearer token, but without the action header (a cross-site form could not set it): 403
      expect((await fetch(`${base}/api/runs/${ref.runId}/terminate`, { method: 'POST', headers: { authorization: 'Bearer s3cret' }, body: '{}' })).status).toBe(403);
      expect((await client.getRun(ref.runId)).status).toBe('running');
      const ok = await fetch(`${base}/api/runs/${ref.runId}/terminate`, { method: 'POST', headers: { ...act, authorization: 'Bearer s3cret' }, body: '{"reason":"token test"}' });
      expect(ok.status).toBe(200);
      expect((await client.getRun(ref.runId)).status).toBe('terminated');
    } finally {
      await d.close();
    }
  });

  it('the loopback API answers without a token, and the history download is the exported format', async () => {
    const ref = await client.start(fx.ok, 7, { workflowId: 'history-check' });
    await client.result(ref, { timeoutMs: 20_000 });
    const res = await fetch(`http://127.0.0.1:${dash.port}/api/runs/history-check/history?download=1`);
    expect(res.headers.get('content-disposition')).toMatch(/attachment/);
    expect(await res.json()).toEqual(JSON.parse(JSON.stringify(await client.history(ref.runId))));
    expect((await fetch(`http://127.0.0.1:${dash.port}/api/runs/nope-nope`)).status).toBe(404);
  });
});

describe.skipIf(!CHROMIUM)('dashboard in Chromium', () => {
  let context: BrowserContext;
  let page: Page;
  let profile: string;

  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true });
    profile = await mkdtemp(path.join(tmpdir(), 'skein-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM!,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
      viewport: { width: 1280, height: 860 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(20_000);
  });

  afterAll(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  const open = (hash: string) => page.goto(`http://127.0.0.1:${dash.port}/${hash}`);
  /** Rows in the tree's (virtualised) list: the tree sets data-rows. */
  const treeRows = (n: string) => expect.poll(() => page.locator('.tree').getAttribute('data-rows'), { timeout: 20_000 }).toBe(n);
  const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`) });

  it('the failed-runs filter shows exactly the failed runs; a failed run shows its error and stack', async () => {
    const oks = await Promise.all([1, 2, 3].map((n) => client.start(fx.ok, n, { workflowId: `order-ok-${n}` })));
    const booms = await Promise.all([1, 2].map((n) => client.start(fx.boom, n, { workflowId: `order-boom-${n}` })));
    for (const r of [...oks, ...booms]) await client.result(r, { timeoutMs: 20_000 }).catch(() => {});
    const failed = (await client.listRuns({ status: 'failed' })).runs.map((r) => r.runId).sort();
    expect(failed).toEqual(booms.map((b) => b.runId).sort());

    await open('#/runs');
    await page.locator('tr[data-run-id]').first().waitFor();
    await page.locator('.chip[data-status="failed"] b', { hasText: '2' }).waitFor();
    await shot('runs');
    await page.click('.chip[data-status="failed"]');
    await page.waitForURL(/status=failed/);
    await waitFor('exactly the failed runs listed', async () => {
      const shown = await page.locator('tbody tr[data-run-id]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-run-id')!).sort());
      return JSON.stringify(shown) === JSON.stringify(failed);
    }, 10_000);
    await shot('runs-failed');

    await page.click(`tr[data-run-id="${booms[0]!.runId}"] a`);
    await page.getByTestId('run-error').waitFor();
    const err = await page.getByTestId('run-error').innerText();
    expect(err).toContain('boom 1: the card was declined');
    expect(err).toMatch(/ApplicationError[\s\S]*at /); // the stack
    await shot('run-failed');
  });

  it("a 1,000-child fan-out's tree renders and expands (virtualised)", async () => {
    const ref = await client.start(fx.fanout, 1000, { workflowId: 'fanout-1000' });
    await expect(client.result(ref, { timeoutMs: 60_000 })).resolves.toBe(1000);
    await open(`#/run/${ref.runId}`);
    await page.getByTestId('tree-count').filter({ hasText: '1000 descendants' }).waitFor();
    const tree = page.locator('.tree');
    await treeRows('1001');
    // virtualised: far fewer rows in the DOM than in the list
    expect(await page.locator('.tree-row').count()).toBeLessThan(100);
    await tree.scrollIntoViewIfNeeded();
    await shot('run-tree');
    const rootToggle = page.locator(`.tree-row[data-run-id="${ref.runId}"] button.toggle`);
    await rootToggle.click(); // collapse
    await treeRows('1');
    await rootToggle.click(); // expand
    await treeRows('1001');
    // the last child (in the tree's order: creation, then run id) is reachable by scrolling, and opens
    const last = (await client.tree(ref.runId, { limit: 1000 })).nodes.at(-1)!.run;
    expect(await page.locator(`.tree-row[data-run-id="${last.runId}"]`).count()).toBe(0);
    await tree.evaluate((el) => (el.scrollTop = el.scrollHeight));
    await page.locator(`.tree-row[data-run-id="${last.runId}"] a`).click();
    await page.getByTestId('workflow-id').filter({ hasText: last.workflowId }).waitFor();
  });

  it('a run waiting on a signal says so, with its name and since when; a signal sent from the page (JSON editor) completes it', async () => {
    const ref = await client.start(fx.approval, null, { workflowId: 'approval-1' });
    const d = await waitFor('the run waits on its signal', async () => {
      const x = await client.describe(ref.runId);
      return x.openWaits.some((w) => w.kind === 'signal') && x;
    });
    const since = d.openWaits[0]!.since;
    await open(`#/run/${ref.runId}`);
    const wait = page.locator('.waits li[data-kind="signal"]');
    await wait.waitFor();
    expect(await wait.locator('.signal-name').innerText()).toBe('approve');
    expect(await wait.innerText()).toContain(`since ${time(since)}`);
    await shot('run-waiting');

    await page.click('button.act-signal');
    const dialog = page.getByRole('dialog');
    await dialog.locator('input[name="signal"]').fill('approve');
    await dialog.locator('textarea[name="payload"]').fill('{"by": "ada"');
    await dialog.locator('.bad-json').waitFor();
    expect(await dialog.locator('button.confirm-signal').isDisabled()).toBe(true);
    await dialog.locator('textarea[name="payload"]').fill('{"by": "ada"}');
    await shot('signal');
    await dialog.locator('button.confirm-signal').click();
    await expect(client.result(ref, { timeoutMs: 20_000 })).resolves.toEqual({ approvedBy: { by: 'ada' } });
    await page.locator('h1 .status.s-completed').waitFor();
  });

  it('cancel from the page cancels the tree', async () => {
    const ref = await client.start(fx.team, null, { workflowId: 'team-1' });
    await waitFor('three children waiting on their signal', async () => {
      const kids = await client.listChildren(ref.runId);
      return kids.length === 3 && (await Promise.all(kids.map((k) => client.describe(k.runId)))).every((k) => k.openWaits.some((w) => w.kind === 'signal'));
    });
    await open(`#/run/${ref.runId}`);
    await treeRows('4');
    await page.click('button.act-cancel');
    const dialog = page.getByRole('dialog');
    await dialog.locator('input[name="reason"]').fill('the team disbanded');
    await dialog.locator('input[name="grace"]').fill('5');
    await shot('cancel');
    await dialog.locator('button.confirm-cancel').click();
    await page.locator('.actions .note', { hasText: 'cancel done' }).waitFor();
    await waitFor('the tree cancelled', async () => {
      const runs = (await client.listRuns({ rootRunId: ref.runId })).runs;
      return runs.length === 4 && runs.every((r) => r.status === 'cancelled');
    });
    await page.locator('h1 .status.s-cancelled').waitFor();
    await expect.poll(() => page.locator('.tree-row .status.s-cancelled').count(), { timeout: 15_000 }).toBe(4);
    await shot('run-cancelled');
  });

  it('the workers page lists the worker, alive, with its queues, workflows and load', async () => {
    await open('#/workers');
    const row = page.locator('tr[data-worker-id="dashboard-test-worker"]');
    await row.waitFor();
    const text = await row.innerText();
    expect(text).toContain('alive');
    expect(text).toContain('fanout');
    expect(text).toContain('default');
    await shot('workers');
  });
});
