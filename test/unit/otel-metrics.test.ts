/**
 * The worker's metrics as OpenTelemetry metrics: with OpenTelemetry on, every Prometheus metric of a worker has an
 * OTel twin (the names below are the contract) that says the same thing, with the worker's id on each point; off, the
 * meter gets nothing; a stopped worker is no longer observed.
 *
 * A manual MetricReader collects exactly when the test asks (no export interval to wait for).
 */
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import * as api from '@opentelemetry/api';
import { MeterProvider, MetricReader, DataPointType, type MetricData } from '@opentelemetry/sdk-metrics';
import { Client, disableOpenTelemetry, enableOpenTelemetry, MemoryJournal, Worker } from '../../src/index.js';
import { WorkerMetrics } from '../../src/worker/metrics.js';
import { activities, otelParent, workflows } from '../integration/fixtures/otel-workflows.js';

const silent = pino({ level: 'silent' });

class ManualReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

/** Prometheus name → OTel name, unit, and the Prometheus label that became a `skein.<label>` attribute. */
const TWINS: Record<string, { otel: string; unit: string; label?: string }> = {
  skein_activations_total: { otel: 'skein.activations', unit: '{activation}' },
  skein_commits_total: { otel: 'skein.commits', unit: '{commit}' },
  skein_commit_duration_seconds: { otel: 'skein.commit.duration', unit: 's' },
  skein_claim_duration_seconds: { otel: 'skein.claim.duration', unit: 's', label: 'op' },
  skein_runs_started_total: { otel: 'skein.runs.started', unit: '{run}' },
  skein_runs_closed_total: { otel: 'skein.runs.closed', unit: '{run}', label: 'status' },
  skein_runs_blocked_total: { otel: 'skein.runs.blocked', unit: '{run}' },
  skein_runs_resumed_total: { otel: 'skein.runs.resumed', unit: '{run}' },
  skein_runs_taken_over_total: { otel: 'skein.runs.taken_over', unit: '{run}' },
  skein_activity_retries_total: { otel: 'skein.activity.retries', unit: '{attempt}' },
  skein_heartbeat_failures_total: { otel: 'skein.heartbeat.failures', unit: '{heartbeat}' },
  skein_active_runs: { otel: 'skein.runs.active', unit: '{run}' },
  skein_cached_engines: { otel: 'skein.engines.cached', unit: '{engine}' },
  skein_engine_cache_hits_total: { otel: 'skein.engine_cache.hits', unit: '{activation}' },
  skein_engine_cache_misses_total: { otel: 'skein.engine_cache.misses', unit: '{activation}' },
  skein_leases_lost_total: { otel: 'skein.leases.lost', unit: '{run}' },
  skein_run_actors_ended_total: { otel: 'skein.run_actors.ended', unit: '{run}', label: 'reason' },
};

async function collect(reader: MetricReader): Promise<Map<string, MetricData>> {
  const { resourceMetrics } = await reader.collect();
  const out = new Map<string, MetricData>();
  for (const scope of resourceMetrics.scopeMetrics) {
    expect(scope.scope.name).toBe('skein');
    for (const m of scope.metrics) out.set(m.descriptor.name, m);
  }
  return out;
}

/** A metric's points as `label value → number` (a histogram's count), for one worker. */
function points(m: MetricData | undefined, workerId: string, label?: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of m?.dataPoints ?? []) {
    if (p.attributes['skein.worker_id'] !== workerId) continue;
    const key = label ? String(p.attributes[`skein.${label}`]) : '';
    out[key] = m!.dataPointType === DataPointType.HISTOGRAM ? (p.value as { count: number }).count : (p.value as number);
  }
  return out;
}

describe('worker metrics as OpenTelemetry metrics', () => {
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const s of stops.splice(0)) await s();
    disableOpenTelemetry();
  });

  it('every Prometheus metric has an OTel twin with the same values, the worker id on each point', async () => {
    const reader = new ManualReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    expect(await enableOpenTelemetry({ api, meterProvider })).toBe(true);
    const journal = new MemoryJournal();
    const worker = new Worker({ workflows, activities, journal, logger: silent, workerId: 'w-otel', pollIntervalMs: 10, shutdownGraceMs: 100, cacheCapacity: 1 });
    worker.start();
    stops.push(() => worker.shutdown());
    const client = new Client(journal, { workflows, logger: silent });
    const ref = await client.start(otelParent, { slow: 2, holdMs: 5 }, { workflowId: 'metrics' });
    await client.result(ref, { timeoutMs: 20_000 });
    await worker.idle();

    const otel = await collect(reader);
    const prom = await worker.metrics.registry.getMetricsAsJSON();
    expect(prom.map((m) => m.name).sort()).toEqual(Object.keys(TWINS).sort());
    for (const p of prom) {
      const twin = TWINS[p.name]!;
      const m = otel.get(twin.otel);
      // (the SDK exports an instrument only once it has a point: a counter nothing advanced has no twin to read)
      if (m) {
        expect({ name: twin.otel, unit: m.descriptor.unit }).toEqual({ name: twin.otel, unit: twin.unit });
        expect(m.descriptor.description).toBe(p.help);
      }
      if (p.name === 'skein_claim_duration_seconds') continue; // polls go on between the two reads
      const values: Record<string, number> = {};
      for (const v of p.values) {
        if (String(p.type) === 'histogram' && !(v as { metricName?: string }).metricName?.endsWith('_count')) continue; // a histogram: its count
        values[twin.label ? String(v.labels[twin.label]) : ''] = v.value;
      }
      const expected = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== 0));
      const got = Object.fromEntries(Object.entries(points(m, 'w-otel', twin.label)).filter(([, v]) => v !== 0));
      expect({ metric: p.name, values: got }).toEqual({ metric: p.name, values: expected });
    }
    // What this run did, said by OTel (the parent, 3 slow and 3 leaf children; otelFlaky fails its first attempt).
    expect(points(otel.get('skein.runs.closed'), 'w-otel', 'status')).toEqual({ completed: 7 });
    expect(points(otel.get('skein.activity.retries'), 'w-otel')['']).toBeGreaterThanOrEqual(1);
    expect(points(otel.get('skein.commit.duration'), 'w-otel')['']).toBe(points(otel.get('skein.commits'), 'w-otel')['']);
    expect(Object.keys(points(otel.get('skein.claim.duration'), 'w-otel', 'op'))).toContain('claim_due');
    expect(points(otel.get('skein.runs.active'), 'w-otel')).toEqual({ '': 0 });
  });

  it('the gauges are read once per collection, and no more once the worker closed its metrics', async () => {
    const reader = new ManualReader();
    await enableOpenTelemetry({ api, meterProvider: new MeterProvider({ readers: [reader] }) });
    let reads = 0;
    const metrics = new WorkerMetrics(() => {
      reads++;
      return { activeRuns: 3, cachedEngines: 2, cacheHits: 5, cacheMisses: 1, activationsEnded: { closed: 4, lost: 1 } };
    }, 'w-gauges');
    const otel = await collect(reader);
    expect(reads).toBe(1);
    expect(points(otel.get('skein.runs.active'), 'w-gauges')).toEqual({ '': 3 });
    expect(points(otel.get('skein.engines.cached'), 'w-gauges')).toEqual({ '': 2 });
    expect(points(otel.get('skein.engine_cache.hits'), 'w-gauges')).toEqual({ '': 5 });
    expect(points(otel.get('skein.leases.lost'), 'w-gauges')).toEqual({ '': 1 });
    expect(points(otel.get('skein.run_actors.ended'), 'w-gauges', 'reason')).toEqual({ closed: 4, lost: 1 });
    metrics.close();
    await collect(reader);
    expect(reads).toBe(1);
  });

  it('a second enableOpenTelemetry() moves the worker to the new meter; disableOpenTelemetry() stops it', async () => {
    const [r1, r2] = [new ManualReader(), new ManualReader()];
    await enableOpenTelemetry({ api, meterProvider: new MeterProvider({ readers: [r1] }) });
    const metrics = new WorkerMetrics(() => ({ activeRuns: 1, cachedEngines: 0, cacheHits: 0, cacheMisses: 0, activationsEnded: {} }), 'w-move');
    metrics.activations.inc();
    await enableOpenTelemetry({ api, meterProvider: new MeterProvider({ readers: [r2] }) });
    metrics.activations.inc({}, 2);
    expect(points((await collect(r1)).get('skein.activations'), 'w-move')).toEqual({ '': 1 });
    expect(points((await collect(r1)).get('skein.runs.active'), 'w-move')).toEqual({}); // no longer observed there
    const second = await collect(r2);
    expect(points(second.get('skein.activations'), 'w-move')).toEqual({ '': 2 });
    expect(points(second.get('skein.runs.active'), 'w-move')).toEqual({ '': 1 });
    disableOpenTelemetry();
    metrics.activations.inc();
    expect(points((await collect(r2)).get('skein.activations'), 'w-move')).toEqual({ '': 2 });
    metrics.close();
  });

  it('two workers in one process record into the same instruments, told apart by skein.worker_id', async () => {
    const reader = new ManualReader();
    await enableOpenTelemetry({ api, meterProvider: new MeterProvider({ readers: [reader] }) });
    const source = (activeRuns: number) => () => ({ activeRuns, cachedEngines: 0, cacheHits: 0, cacheMisses: 0, activationsEnded: {} });
    const a = new WorkerMetrics(source(1), 'w-a');
    const b = new WorkerMetrics(source(2), 'w-b');
    a.runsClosed.inc({ status: 'completed' });
    b.runsClosed.inc({ status: 'failed' }, 2);
    b.commitSeconds.observe({}, 0.003);
    const otel = await collect(reader);
    expect(points(otel.get('skein.runs.closed'), 'w-a', 'status')).toEqual({ completed: 1 });
    expect(points(otel.get('skein.runs.closed'), 'w-b', 'status')).toEqual({ failed: 2 });
    expect(points(otel.get('skein.commit.duration'), 'w-b')).toEqual({ '': 1 });
    expect(points(otel.get('skein.runs.active'), 'w-a')).toEqual({ '': 1 });
    expect(points(otel.get('skein.runs.active'), 'w-b')).toEqual({ '': 2 });
    a.close();
    b.close();
  });

  it('off: the meter gets nothing; enabled after the worker started: recorded from then on', async () => {
    const reader = new ManualReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    api.metrics.setGlobalMeterProvider(meterProvider);
    stops.push(async () => api.metrics.disable());
    const journal = new MemoryJournal();
    const worker = new Worker({ workflows, activities, journal, logger: silent, workerId: 'w-late', pollIntervalMs: 10, shutdownGraceMs: 100 });
    worker.start();
    stops.push(() => worker.shutdown());
    const client = new Client(journal, { workflows, logger: silent });
    await client.result(await client.start(otelParent, { slow: 1, holdMs: 0 }, { workflowId: 'before' }), { timeoutMs: 20_000 });
    expect([...(await collect(reader)).keys()]).toEqual([]);

    expect(await enableOpenTelemetry({ api })).toBe(true); // the global meter provider
    await client.result(await client.start(otelParent, { slow: 1, holdMs: 0 }, { workflowId: 'after' }), { timeoutMs: 20_000 });
    await worker.idle();
    const otel = await collect(reader);
    // Only the second run's closes: the first ones were before OpenTelemetry was on.
    expect(points(otel.get('skein.runs.closed'), 'w-late', 'status')).toEqual({ completed: 6 });
    expect(points(otel.get('skein.runs.active'), 'w-late')).toEqual({ '': 0 });
  });
});
