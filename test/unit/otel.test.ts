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
import { activities, otelFailsOnce, otelParent, otelRetryingParent, otelWaiter, spanRecord, workflows, type SpanRecord } from '../integration/fixtures/otel-workflows.js';
import { checkTrace } from '../support/otel-checks.js';
import { freshPgJournal } from '../support/postgres.js';
import type { Journal } from '../../src/journal/journal.js';
import { Simulation } from '../../src/testing/simulator.js';

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
      await worker.idle(); // (the last activation span ends once its commit is back in the worker: after the result)
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

  /** Spans on, an in-memory exporter, a worker and a client on the given journal (cleaned up after the test). */
  async function tracedWorker(kind: 'memory' | 'postgres'): Promise<{ exporter: InMemorySpanExporter; journal: Journal; worker: Worker; client: Client }> {
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
    return { exporter, journal, worker, client: new Client(journal, { workflows, logger: silent }) };
  }

  for (const kind of ['memory', 'postgres'] as const) it(`the activation that journals a signal links to the client's skein.signal span (${kind} journal)`, async () => {
    const { exporter, journal, worker, client } = await tracedWorker(kind);
    const ref = await client.start(otelWaiter, undefined, { workflowId: 'waiter' });
    await worker.idle();
    // (no active span here: each skein.signal span starts a trace of its own, not the run's)
    const { signalId: first } = await client.signal(ref.runId, 'go', 1);
    await worker.idle();
    const { signalId: second } = await client.signal(ref.runId, 'go', 2);
    expect(await client.result(ref, { timeoutMs: 20_000 })).toBe(4);

    // (the run's last activation span ends once its commit has returned to the worker, which a client can see
    // closed a moment before: the spans are complete when the worker is idle)
    await worker.idle();
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

  for (const kind of ['memory', 'postgres'] as const) it(`an operator's retry is a trace of its own, linked to the retried run's (${kind} journal)`, async () => {
    const { exporter, journal, worker, client } = await tracedWorker(kind);
    const key = `operator-${kind}-${Date.now()}`;
    const first = await client.start(otelFailsOnce, key, { workflowId: key });
    await expect(client.result(first, { timeoutMs: 20_000 })).rejects.toThrow(/fails/);
    const { run, created } = await client.retry(first.runId, 'fixed', { by: 'ops' });
    expect(created).toBe(true);
    expect(await client.result(run.runId, { timeoutMs: 20_000 })).toBe(key);

    // (the run's last activation span ends once its commit has returned to the worker, which a client can see
    // closed a moment before: the spans are complete when the worker is idle)
    await worker.idle();
    const spans: SpanRecord[] = exporter.getFinishedSpans().map((s) => spanRecord(s as never));
    const start = spans.find((s) => s.name === 'skein.start')!;
    const retry = spans.find((s) => s.name === 'skein.retry')!;
    expect(retry.attributes).toMatchObject({ 'skein.run_id': run.runId, 'skein.retry.previous_run_id': first.runId, 'skein.retry.reason': 'fixed', 'skein.created': true });
    // A trace of its own (no active span here), linked to the span that started the retried run.
    expect(retry.traceId).not.toBe(start.traceId);
    expect(retry.links).toEqual([{ traceId: start.traceId, spanId: start.spanId, attributes: { 'skein.link': 'retry', 'skein.run_id': first.runId } }]);
    // Each run's activations are in its own trace, under its own client span.
    const activations = (runId: string) => spans.filter((s) => s.name.startsWith('skein.activation') && s.attributes['skein.run_id'] === runId);
    expect(activations(first.runId).length).toBeGreaterThan(0);
    expect(activations(run.runId).length).toBeGreaterThan(0);
    for (const s of activations(first.runId)) expect([s.traceId, s.parentSpanId]).toEqual([start.traceId, start.spanId]);
    for (const s of activations(run.runId)) {
      expect([s.traceId, s.parentSpanId]).toEqual([retry.traceId, retry.spanId]);
      expect(s.attributes['skein.root_run_id']).toBe(run.runId);
    }
    const [started] = await journal.readEvents(run.runId);
    expect(started!.payload).toMatchObject({ retry: { previousRunId: first.runId, reason: 'fixed', by: 'ops' }, trace: { traceparent: `00-${retry.traceId}-${retry.spanId}-01`, rootRunId: run.runId } });
  });

  it("a child retried by its retry policy stays in its parent's trace, under the activation that scheduled the retry", async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    await enableOpenTelemetry({ api, tracerProvider: provider });
    const journal = new MemoryJournal();
    const worker = new Worker({ workflows, activities, journal, logger: silent, pollIntervalMs: 10, shutdownGraceMs: 100 });
    worker.start();
    stops.push(() => worker.shutdown());
    const client = new Client(journal, { workflows, logger: silent });
    const key = `policy-${Date.now()}`;
    const ref = await client.start(otelRetryingParent, key, { workflowId: key });
    expect(await client.result(ref, { timeoutMs: 20_000 })).toBe(key);

    const { runs } = await journal.listRuns({ rootRunId: ref.runId, limit: 100 });
    const kids = runs.filter((r) => r.parentRunId === ref.runId).sort((a, b) => a.workflowId.length - b.workflowId.length);
    expect(kids.map((k) => [k.workflowId.endsWith('~2'), k.status])).toEqual([
      [false, 'failed'],
      [true, 'completed'],
    ]);
    // (the run's last activation span ends once its commit has returned to the worker, which a client can see
    // closed a moment before: the spans are complete when the worker is idle)
    await worker.idle();
    const spans: SpanRecord[] = exporter.getFinishedSpans().map((s) => spanRecord(s as never));
    expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    for (const [attempt, kid] of kids.entries()) {
      const mine = spans.filter((s) => s.name.startsWith('skein.activation') && s.attributes['skein.run_id'] === kid.runId);
      expect(mine.length).toBeGreaterThan(0);
      // attempt 2 starts after its backoff: never inline, so its spans hang under the span that scheduled it
      if (attempt === 1) expect(mine.some((s) => s.attributes['skein.inline'] === true)).toBe(false);
      for (const s of mine) {
        const parent = byId.get(s.parentSpanId!)!;
        expect(parent.attributes['skein.run_id']).toBe(ref.runId);
        // (an inline attempt's span hangs under the activation that ran it; a handed-over one's under the scheduler)
        if (s.attributes['skein.inline'] !== true) {
          expect(parent.events.find((e) => e.name === 'skein.child.scheduled' && e.attributes['skein.child_run_id'] === kid.runId)?.attributes['skein.attempt']).toBe(attempt + 1);
        }
        expect(s.attributes['skein.root_run_id']).toBe(ref.runId);
      }
    }
  });

  for (const quick of [false, true]) it(`the simulator (skein/testing) emits activity attempt spans as a worker does (${quick ? 'eager activities, inline children' : 'activities performed later'})`, async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    await enableOpenTelemetry({ api, tracerProvider: provider });
    const sim = new Simulation({ workflows, activities, ...(quick ? { quickActivity: () => true, inlineChildren: true } : {}) });
    const runId = await sim.start(otelParent, { slow: 1, holdMs: 0 }, { workflowId: 'sim', runId: 'sim' });
    await sim.runUntilIdle();
    expect((await sim.run(runId)).status).toBe('completed');

    const spans: SpanRecord[] = exporter.getFinishedSpans().map((s) => spanRecord(s as never));
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    // otelFlaky: attempt 1 failed (ERROR, its exception), attempt 2 succeeded, both under the parent's activation
    // that journaled the outcome.
    const flaky = spans.filter((s) => s.name === 'skein.activity otelFlaky');
    expect(flaky.map((s) => [s.attributes['skein.activity.attempt'], s.status])).toEqual([
      [1, 2],
      [2, 0],
    ]);
    for (const s of flaky) {
      const parent = byId.get(s.parentSpanId!)!;
      expect([parent.name, parent.attributes['skein.run_id'], s.traceId]).toEqual(['skein.activation otelParent', runId, parent.traceId]);
    }
    // Every activity the journals completed has its one span per attempt, no more.
    const journaled = [];
    for (const r of sim.journal.allRuns()) {
      for (const e of await sim.history(r.runId)) if (e.type === 'ActivityCompleted') journaled.push(`${r.runId} ${e.payload.path} ${e.payload.attempts}`);
    }
    const last = spans
      .filter((s) => s.name.startsWith('skein.activity ') && s.status !== 2)
      .map((s) => `${s.attributes['skein.run_id']} ${s.attributes['skein.activity.path']} ${s.attributes['skein.activity.attempt']}`);
    expect(last.sort()).toEqual(journaled.sort());
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
