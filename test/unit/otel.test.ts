/**
 * OpenTelemetry spans in one process (memory journal): a parent with inline and handed-over children, a retried
 * activity, one connected trace, children under the parent activation that scheduled them, and no duplicate span for
 * any journaled step although the engine cache is off (every activation replays the whole journal first). Signal
 * links are checked on PostgreSQL too (the sender's traceparent goes through the inbox table).
 */
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import * as api from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Client, disableOpenTelemetry, enableOpenTelemetry, MemoryJournal, openTelemetryEnabled, Worker } from '../../src/index.js';
import { activities, otelParent, otelWaiter, spanRecord, workflows, type SpanRecord } from '../integration/fixtures/otel-workflows.js';
import { checkTrace } from '../support/otel-checks.js';
import { freshPgJournal } from '../support/postgres.js';
import type { Journal } from '../../src/journal/journal.js';

const silent = pino({ level: 'silent' });

describe('OpenTelemetry spans (in-process)', () => {
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const s of stops.splice(0).reverse()) await s();
    disableOpenTelemetry();
  });

  it('is off until enabled, and then starts nothing', async () => {
    expect(openTelemetryEnabled()).toBe(false);
    const journal = new MemoryJournal();
    const client = new Client(journal, { workflows, logger: silent });
    const ref = await client.start(otelParent, { slow: 1, holdMs: 0 }, { workflowId: 'off' });
    const [started] = await journal.readEvents(ref.runId);
    expect(started!.type).toBe('RunStarted');
    expect('trace' in started!.payload).toBe(false);
  });

  for (const cacheCapacity of [0, 1000]) {
    it(`one connected trace, no duplicate spans (engine cache ${cacheCapacity ? 'on' : 'off: replay on every activation'})`, async () => {
      const exporter = new InMemorySpanExporter();
      const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
      expect(await enableOpenTelemetry({ api, tracerProvider: provider })).toBe(true);
      const journal = new MemoryJournal();
      const worker = new Worker({ workflows, activities, journal, logger: silent, pollIntervalMs: 10, shutdownGraceMs: 100, inlineChildBudgetMs: 500, cacheCapacity });
      worker.start();
      stops.push(() => worker.shutdown());
      const client = new Client(journal, { workflows, logger: silent });
      const ref = await client.start(otelParent, { slow: 3, holdMs: 20 }, { workflowId: `p-${cacheCapacity}` });
      const result = (await client.result(ref, { timeoutMs: 20_000 })) as { f: number };
      expect(result.f).toBe(10);

      const { runs } = await journal.listRuns({ rootRunId: ref.runId, limit: 1000 });
      expect(runs).toHaveLength(1 + 2 + 3 + 2);
      // Every child's RunStarted carries its parent's trace context.
      for (const r of runs) {
        const [started] = await journal.readEvents(r.runId);
        expect((started!.payload as { trace?: { rootRunId: string } }).trace?.rootRunId).toBe(ref.runId);
      }
      const spans: SpanRecord[] = exporter.getFinishedSpans().map((s) => spanRecord(s as never));
      checkTrace(
        spans,
        runs.map((r) => ({ runId: r.runId, parentRunId: r.parentRunId, lastSeq: r.lastSeq })),
        ref.runId,
      );
      // Inline children (otelLeaf) were committed inside the parent's activation, and say so.
      expect(spans.filter((s) => s.name === 'skein.activation otelLeaf' && s.attributes['skein.inline'] === true).length).toBeGreaterThanOrEqual(1);
      expect(spans.filter((s) => s.name === 'skein.activation otelSlow').length).toBeGreaterThanOrEqual(4);
    });
  }

  for (const kind of ['memory', 'postgres'] as const) it(`the activation that journals a signal links to the client's skein.signal span (${kind} journal)`, async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    await enableOpenTelemetry({ api, tracerProvider: provider });
    let journal: Journal = new MemoryJournal();
    if (kind === 'postgres') {
      const pg = await freshPgJournal();
      stops.push(pg.cleanup);
      journal = pg.journal;
    }
    const worker = new Worker({ workflows, activities, journal, logger: silent, pollIntervalMs: 10, shutdownGraceMs: 100 });
    worker.start();
    stops.push(() => worker.shutdown());
    const client = new Client(journal, { workflows, logger: silent });
    const ref = await client.start(otelWaiter, undefined, { workflowId: 'waiter' });
    await worker.idle();
    // (no active span here: each skein.signal span starts a trace of its own, not the run's)
    const { signalId: first } = await client.signal(ref.runId, 'go', 1);
    await worker.idle();
    const { signalId: second } = await client.signal(ref.runId, 'go', 2);
    expect(await client.result(ref, { timeoutMs: 20_000 })).toBe(4);

    const spans: SpanRecord[] = exporter.getFinishedSpans().map((s) => spanRecord(s as never));
    const sends = spans.filter((s) => s.name === 'skein.signal');
    expect(sends.map((s) => s.attributes['skein.signal_id'])).toEqual([first, second]);
    const runTrace = spans.find((s) => s.name === 'skein.start')!.traceId;
    for (const send of sends) expect(send.traceId).not.toBe(runTrace);
    for (const send of sends) {
      const id = send.attributes['skein.signal_id'];
      // Exactly one span journaled this signal (the run's trace), and it links to the span that sent it.
      const receivers = spans.filter((s) => s.events.some((e) => e.name === 'skein.signal.received' && e.attributes['skein.signal_id'] === id));
      expect(receivers).toHaveLength(1);
      expect(receivers[0]!.traceId).toBe(runTrace);
      expect(receivers[0]!.links.filter((l) => l.attributes['skein.signal_id'] === id)).toEqual([
        { traceId: send.traceId, spanId: send.spanId, attributes: { 'skein.link': 'signal', 'skein.signal.name': 'go', 'skein.signal_id': id } },
      ]);
    }
    // The journal keeps the sender's context with the signal.
    const received = (await journal.readEvents(ref.runId)).filter((e) => e.type === 'SignalReceived');
    expect(received.map((e) => (e.payload as { traceparent?: string }).traceparent)).toEqual(sends.map((s) => `00-${s.traceId}-${s.spanId}-01`));
  });

  it('signals and cancel cascades get a span', async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    await enableOpenTelemetry({ api, tracerProvider: provider });
    const journal = new MemoryJournal();
    const client = new Client(journal, { workflows, logger: silent });
    const ref = await client.start(otelParent, { slow: 1, holdMs: 0 }, { workflowId: 'sig' });
    await client.signal(ref.runId, 'hello', { a: 1 });
    await client.cancel(ref.runId, 'enough', { graceMs: 0 });
    const spans = exporter.getFinishedSpans().map((s) => spanRecord(s as never));
    expect(spans.map((s) => s.name)).toEqual(['skein.start', 'skein.signal', 'skein.cancel']);
    expect(spans[1]!.attributes).toMatchObject({ 'skein.run_id': ref.runId, 'skein.signal.name': 'hello' });
    expect(spans[2]!.attributes).toMatchObject({ 'skein.run_id': ref.runId, 'skein.cancel.reason': 'enough', 'skein.cancel.status': 'cancelled' });
  });
});
