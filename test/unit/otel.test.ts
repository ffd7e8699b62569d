/**
 * OpenTelemetry spans in one process (memory journal): a parent with inline and handed-over children, a retried
 * activity, one connected trace, children under the parent activation that scheduled them, and no duplicate span for
 * any journaled step although the engine cache is off (every activation replays the whole journal first).
 */
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import * as api from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Client, disableOpenTelemetry, enableOpenTelemetry, MemoryJournal, openTelemetryEnabled, Worker } from '../../src/index.js';
import { activities, otelParent, spanRecord, workflows, type SpanRecord } from '../integration/fixtures/otel-workflows.js';
import { checkTrace } from '../support/otel-checks.js';

const silent = pino({ level: 'silent' });

describe('OpenTelemetry spans (in-process)', () => {
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const s of stops.splice(0)) await s();
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
