import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import { freePort } from '../../src/journal/embedded.js';
import { createPgJournal, PgJournal } from '../../src/journal/postgres/index.js';
import { Worker } from '../../src/worker/worker.js';
import { freshSchema } from '../support/postgres.js';
import { crashParent, expectedParentResult, fencedRun } from './fixtures/crash-workflows.js';
import { logLines, useWorkerProcesses, waitFor, type WorkerProcess } from './fixtures/processes.js';

/**
 * Workers are visible (docs/operating.md), checked on real `skein worker` processes and a real PostgreSQL:
 *  (a) a worker's heartbeat row is refreshed while it runs; when the process is killed with SIGKILL the row stops
 *      being refreshed and listWorkers shows it gone (3 heartbeat intervals later); a SIGTERM marks it stopped at once;
 *      the worker that takes its held run over logs `run taken over` naming it;
 *  (b) GET /metrics of a real worker is Prometheus text that a Prometheus text parser reads, with the named metrics
 *      present and non-zero after runs; GET /healthz is 200 with the worker's health;
 *  (c) /healthz is 503 when the worker cannot reach its database (in process: a journal on a port nobody listens on).
 * The workers get their heartbeat interval and HTTP port from SKEIN_HEARTBEAT_MS and SKEIN_HTTP_PORT (the CLI passes
 * no such options yet: WorkerOptions defaults to these variables).
 */

const HEARTBEAT_MS = 200;


describe('workers are visible', () => {
  const { procs, cleanups, url } = useWorkerProcesses();

  async function setUp() {
    const { schema, drop } = await freshSchema(url());
    cleanups.push(drop);
    const journal = await createPgJournal({ connectionString: url(), schema, maxConnections: 4 });
    cleanups.push(() => journal.close());
    return { schema, journal, client: new Client(journal, { logger: pino({ level: 'silent' }) }) };
  }

  const spawn = (workerId: string, schema: string, extra: { leaseMs?: number; httpPort?: number } = {}) =>
    procs.spawn({
      workerId,
      url: url(),
      schema,
      leaseMs: extra.leaseMs ?? 2000,
      pollMs: 100,
      env: { SKEIN_HEARTBEAT_MS: String(HEARTBEAT_MS), SKEIN_LOG_LEVEL: 'info', ...(extra.httpPort ? { SKEIN_HTTP_PORT: String(extra.httpPort) } : {}) },
    });

  it('(a) a SIGKILLed worker stops refreshing its heartbeat row and shows as gone; SIGTERM marks it stopped; its run is taken over, and said so', async () => {
    const { schema, client } = await setUp();
    const a = spawn('wa', schema, { leaseMs: 1500 });
    const b = spawn('wb', schema);
    const row = async (id: string) => (await client.listWorkers()).find((w) => w.workerId === id);

    // both alive, with what they serve; the row is refreshed every interval
    const first = await waitFor('both workers alive', async () => {
      const ws = await client.listWorkers();
      return ws.length === 2 && ws.every((w) => w.status === 'alive') && ws;
    });
    expect(first.find((w) => w.workerId === 'wa')).toMatchObject({
      pid: a.pid,
      queues: ['default'],
      workflows: expect.arrayContaining(['crashParent', 'fencedRun']),
      activities: expect.arrayContaining(['slowStep', 'quickStep']),
      concurrency: 1000,
      heartbeatIntervalMs: HEARTBEAT_MS,
      stoppedAt: null,
    });
    const seen0 = (await row('wa'))!.lastSeenAt;
    await waitFor('a refreshed heartbeat', async () => (await row('wa'))!.lastSeenAt > seen0 && true, 5000);

    // wb stops gracefully: marked stopped at once (gone), no waiting for 3 intervals
    b.signal('SIGTERM');
    expect((await b.exited).code).toBe(0);
    expect(await row('wb')).toMatchObject({ status: 'gone', stoppedAt: expect.any(Number) });

    // a run held by wa in the middle of a slow activity, then wa is SIGKILLed
    const run = await client.start(fencedRun, { key: 'k', ms: 60_000 }, { workflowId: 'held-by-wa' });
    await waitFor('wa holding the run', async () => (await client.getRun(run.runId)).leaseOwner === 'wa', 10_000);
    a.signal('SIGKILL');
    await a.exited;
    const killedAt = Date.now();
    const gone = await waitFor('wa shown gone', async () => {
      const w = await row('wa');
      return w?.status === 'gone' && w;
    }, 10_000);
    // gone because silent, not stopped: its last heartbeat is older than 3 intervals, and it is not refreshed any more
    expect(gone.stoppedAt).toBeNull();
    expect(Date.now() - gone.lastSeenAt).toBeGreaterThan(3 * HEARTBEAT_MS);
    expect(gone.lastSeenAt).toBeLessThanOrEqual(killedAt);
    await new Promise((r) => setTimeout(r, 3 * HEARTBEAT_MS));
    expect((await row('wa'))!.lastSeenAt).toBe(gone.lastSeenAt);

    // another worker takes the run over once wa's lease expires, and says whose it was
    const c = spawn('wc', schema);
    const line = await waitFor('a "run taken over" line', () => logLines(c).find((l) => l.msg === 'run taken over' && l.runId === run.runId), 20_000);
    expect(line).toMatchObject({ previousOwner: 'wa', workflowId: 'held-by-wa', workflow: 'fencedRun', parentRunId: null, rootRunId: run.runId, workerId: 'wc' });
    expect(await row('wc')).toMatchObject({ status: 'alive' });
  });

  it('(b) GET /metrics of a real worker parses as Prometheus text, the named metrics non-zero after runs; GET /healthz is 200', async () => {
    const { schema, client } = await setUp();
    const port = await freePort();
    const w = spawn('wm', schema, { httpPort: port });
    const base = `http://127.0.0.1:${port}`;
    await waitFor('the http endpoint', async () => (await fetch(`${base}/healthz`).catch(() => null))?.status === 200, 15_000);

    const n = 5;
    const refs = await Promise.all([0, 1].map((i) => client.start(crashParent, { children: n, ms: 4, parentMs: 20 }, { workflowId: `metrics-${i}` })));
    for (const r of refs) expect(await client.result(r, { timeoutMs: 30_000 })).toEqual(expectedParentResult(n));

    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = parsePrometheusTextFormat(await res.text());
    const by = new Map(families.map((f) => [f.name, f]));
    const value = (name: string, labels: Record<string, string> = {}) =>
      by.get(name)?.metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)).reduce((s, m) => s + Number(m.value), 0);
    // (a histogram's count is its +Inf bucket; this parser drops _count and _sum of labelled histograms)
    const count = (name: string) => by.get(name)?.metrics.reduce((s, m) => s + Number(m.buckets?.['+Inf'] ?? m.count), 0);
    for (const name of [
      'skein_activations_total',
      'skein_commits_total',
      'skein_commit_duration_seconds',
      'skein_claim_duration_seconds',
      'skein_leases_lost_total',
      'skein_active_runs',
      'skein_engine_cache_hits_total',
      'skein_engine_cache_misses_total',
      'skein_runs_started_total',
      'skein_runs_closed_total',
    ]) {
      expect(by.has(name), name).toBe(true);
    }
    expect(by.get('skein_commit_duration_seconds')!.type).toBe('HISTOGRAM');
    expect(by.get('skein_active_runs')!.type).toBe('GAUGE');
    expect(value('skein_activations_total')).toBeGreaterThan(0);
    expect(value('skein_commits_total')).toBeGreaterThan(0);
    expect(count('skein_commit_duration_seconds')).toBeGreaterThan(0);
    expect(count('skein_claim_duration_seconds')).toBeGreaterThan(0);
    expect(value('skein_engine_cache_hits_total')! + value('skein_engine_cache_misses_total')!).toBeGreaterThan(0);
    // two roots and their children (each run started and closed once, here or inline in its parent's commit)
    expect(value('skein_runs_started_total')).toBe(2 + 2 * n);
    expect(value('skein_runs_closed_total', { status: 'completed' })).toBe(2 + 2 * n);
    expect(value('skein_leases_lost_total')).toBe(0);
    expect(value('skein_active_runs')).toBe(0);

    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({
      workerId: 'wm',
      state: 'running',
      database: { reachable: true, error: null },
      journal: { kind: 'postgres', schema },
      heartbeat: { intervalMs: HEARTBEAT_MS, lastError: null },
    });
    expect((await fetch(`${base}/nope`)).status).toBe(404);

    // the startup line says where it keeps its journal (no password) and what it serves; runs are logged by id
    const lines = logLines(w);
    expect(lines.find((l) => l.msg === 'worker started')).toMatchObject({ journal: 'postgres', schema, queues: ['default'], workflows: expect.arrayContaining(['crashParent']) });
    expect(lines.find((l) => l.msg === 'run closed' && l.runId === refs[0]!.runId)).toMatchObject({ status: 'completed', workflowId: 'metrics-0', workflow: 'crashParent', parentRunId: null, rootRunId: refs[0]!.runId });
  });

  it('(c) /healthz answers 503 when the worker cannot reach its database; failing heartbeats neither stop the worker nor add warnings', async () => {
    const dead = await freePort();
    const journal = new PgJournal({ connectionString: `postgres://postgres@127.0.0.1:${dead}/postgres`, schema: 'nowhere' });
    cleanups.push(() => journal.close());
    const lines: Array<{ msg: string; level: number }> = [];
    const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const port = await freePort();
    const worker = new Worker({ workflows: [fencedRun], journal, httpPort: port, heartbeatIntervalMs: 50, pollIntervalMs: 50, logger });
    worker.start();
    cleanups.push(() => worker.shutdown());
    await waitFor('the http endpoint', () => worker.httpAddress !== null && true, 5000);
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ state: 'running', database: { reachable: false, error: expect.any(String) } });
    // several heartbeats failed, the worker runs on and says the outage once (its polls' line), not once per heartbeat
    await new Promise((r) => setTimeout(r, 300));
    expect(lines.filter((l) => l.level >= 40).map((l) => l.msg)).toEqual(['database unreachable: will retry with backoff until it is back']);
    expect(lines.filter((l) => l.msg.startsWith('worker heartbeat failed')).length).toBeGreaterThan(2);
    const failures = parsePrometheusTextFormat(await worker.metrics.text()).find((fam) => fam.name === 'skein_heartbeat_failures_total')!;
    expect(Number(failures.metrics[0]!.value)).toBeGreaterThan(2);
    expect(worker.health().state).toBe('running');
    await worker.shutdown();
  });
});
