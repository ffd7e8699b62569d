/**
 * OpenTelemetry across real `skein worker` processes (real PostgreSQL, fresh schema): a parent and its children on two
 * workers, the parent's worker SIGKILLed mid-run (while the parent runs its long step) and the parent replayed by the
 * other. The workers export their spans as JSON lines to SKEIN_OTEL_TEST_FILE (wired by the fixture module, see
 * fixtures/otel-workflows.ts); the test's own client exports to an in-memory exporter. All spans form one trace, each
 * journaled step of each run is described by exactly one activation span, and children hang under the parent
 * activation that scheduled them, whichever process ran them.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import * as api from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Client } from '../../src/client/client.js';
import { createPgJournal, type PgJournal } from '../../src/journal/postgres/index.js';
import { disableOpenTelemetry, enableOpenTelemetry } from '../../src/index.js';
import { freshSchema } from '../support/postgres.js';
import { checkTrace } from '../support/otel-checks.js';
import { otelParent, spanRecord, type SpanRecord } from './fixtures/otel-workflows.js';
import { useWorkerProcesses, waitFor } from './fixtures/processes.js';

describe('OpenTelemetry across worker processes, with a crash', () => {
  const { procs, cleanups, url } = useWorkerProcesses();

  it('one connected trace, no duplicate span, after SIGKILL of the parent worker and a replay by the other', async () => {
    const { schema, drop } = await freshSchema(url());
    cleanups.push(drop);
    const dir = mkdtempSync(path.join(tmpdir(), 'skein-otel-'));
    cleanups.push(async () => (process.env.SKEIN_OTEL_KEEP ? undefined : rmSync(dir, { recursive: true, force: true })));
    const file = path.join(dir, 'spans.jsonl');
    const journal: PgJournal = await createPgJournal({ connectionString: url(), schema, maxConnections: 4 });
    cleanups.push(() => journal.close());
    const exporter = new InMemorySpanExporter();
    await enableOpenTelemetry({ api, tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }) });
    cleanups.push(async () => disableOpenTelemetry());

    const spec = { url: url(), schema, leaseMs: 2000, pollMs: 100, concurrency: 3, workflowsModule: 'test/integration/fixtures/otel-workflows.ts', env: { SKEIN_OTEL_TEST_FILE: file } };
    const workers = [procs.spawn({ ...spec, workerId: 'otel-a' }), procs.spawn({ ...spec, workerId: 'otel-b' })];
    const client = new Client(journal, { logger: pino({ level: 'silent' }) });
    const ref = await client.start(otelParent, { slow: 4, holdMs: 4000 }, { workflowId: 'otel-crash' });

    // The parent runs its long step (otelHold): kill the worker that holds it.
    const owner = await waitFor(
      'the parent to run its long step',
      async () => {
        const events = await journal.readEvents(ref.runId);
        if (!events.some((e) => e.type === 'ActivityScheduled' && e.payload.name === 'otelHold')) return undefined;
        // and the commit that scheduled it has ended its span (with the flaky attempts'): the kill comes after
        if (!existsSync(file) || !readFileSync(file, 'utf8').includes('skein.activity otelFlaky')) return undefined;
        const { rows } = await journal.pool.query(`SELECT lease_owner FROM "${schema}".runs WHERE run_id = $1`, [ref.runId]);
        return (rows[0]?.lease_owner as string | null) ?? undefined;
      },
      60_000,
      20,
    );
    const victim = workers.find((w) => w.workerId === owner)!;
    const survivor = workers.find((w) => w !== victim)!;
    victim.signal('SIGKILL');
    const killedAt = (await victim.exited).at;

    await waitFor(
      'the parent to complete on the other worker',
      async () => {
        const { rows } = await journal.pool.query(`SELECT status FROM "${schema}".runs WHERE run_id = $1`, [ref.runId]);
        return rows[0]?.status === 'completed';
      },
      60_000,
      100,
    );
    // Every run of the tree closed (the last commits' spans are written right after them).
    const { rows } = await journal.pool.query(`SELECT run_id, parent_run_id, last_seq, status FROM "${schema}".runs WHERE root_run_id = $1`, [ref.runId]);
    expect(rows).toHaveLength(1 + 2 + 4 + 2);
    expect(rows.every((r) => r.status === 'completed')).toBe(true);
    await new Promise((r) => setTimeout(r, 300));

    const spans: SpanRecord[] = [
      ...exporter.getFinishedSpans().map((s) => spanRecord(s as never)),
      ...(existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as SpanRecord) : []),
    ];
    // Both processes emitted spans: the survivor at least for the parent's replayed activations.
    const pids = new Set(spans.map((s) => s.pid));
    expect(pids.has(victim.pid) && pids.has(survivor.pid)).toBe(true);
    const parentActs = spans.filter((s) => s.name === 'skein.activation otelParent');
    expect(parentActs.some((s) => s.pid === victim.pid)).toBe(true);
    expect(parentActs.some((s) => s.pid === survivor.pid)).toBe(true);
    // Steps the victim may have committed just before it died, their spans not yet ended: the only ones allowed to
    // have no activation span (a span ends only after its commit succeeded; nothing is emitted twice).
    const { rows: late } = await journal.pool.query(
      `SELECT run_id, seq FROM "${schema}".events WHERE recorded_at BETWEEN $1::bigint AND $2::bigint`,
      [killedAt - 2000, killedAt],
    );
    const lateSteps = new Set(late.map((r) => `${r.run_id as string}#${Number(r.seq)}`));
    checkTrace(
      spans,
      rows.map((r) => ({ runId: r.run_id as string, parentRunId: r.parent_run_id as string | null, lastSeq: Number(r.last_seq) })),
      ref.runId,
      (runId, seq) => lateSteps.has(`${runId}#${seq}`),
    );
    // The long step ran twice (killed, then re-run), but its outcome was journaled once: one span.
    expect(spans.filter((s) => s.name === 'skein.activity otelHold')).toHaveLength(1);
  }, 120_000);
});
