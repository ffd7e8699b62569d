import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Attributes, BatchObservableResult, Counter as OtelCounter, Histogram as OtelHistogram } from '@opentelemetry/api';
import type { Journal } from '../journal/journal.js';
import { LeaseLostError } from '../runtime/errors.js';
import { otelMeter, type OtelMeter } from '../telemetry/otel.js';

/**
 * A worker's metrics, defined once (the tables below) and exported two ways:
 *
 *  - **Prometheus** (prom-client), always, in a registry of its own (never prom-client's global one), so several
 *    workers in one process, and the application's own metrics, do not mix. Served as text at GET /metrics when the
 *    worker has an HTTP port; `worker.metrics.registry` is the registry, for embedding elsewhere.
 *  - **OpenTelemetry**, while enableOpenTelemetry() is in force (src/telemetry/otel.ts): the same measurements,
 *    recorded with the meter named 'skein', under OTel names (`skein.activations`, `skein.commit.duration` in 's'),
 *    labels as `skein.<label>` attributes, and the worker's id as `skein.worker_id` on every point. Off, it costs one
 *    null check per recording; `@opentelemetry/api` is never imported here (types only).
 *
 * Counters the worker keeps anyway (its health: cache hits, actor ends) are read when collected; latencies are
 * measured around the journal calls themselves (instrument()).
 */

/** What the worker reports at each scrape (a subset of WorkerHealth). */
export interface MetricsSource {
  activeRuns: number;
  cachedEngines: number;
  cacheHits: number;
  cacheMisses: number;
  activationsEnded: Record<string, number>;
}

/** Seconds, from half a millisecond (a cached claim) to ten seconds (a database in trouble). */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A metric recorded as things happen: its Prometheus name, its OTel name and unit, one help text for both. */
interface RecordedDef {
  kind: 'counter' | 'histogram';
  prom: string;
  otel: string;
  /** UCUM unit (OTel): 's' for durations, `{thing}` for counts. */
  unit: string;
  help: string;
  labels?: readonly string[];
}

/** A metric read from the worker when collected: a gauge, or a counter the worker keeps (cumulative, by label). */
interface ObservedDef {
  kind: 'gauge' | 'counter';
  prom: string;
  otel: string;
  unit: string;
  help: string;
  /** Its value, from what the worker reports. */
  read(s: MetricsSource): number;
  label?: never;
}
/** The same, by the value of one label (Prometheus: `label`; OTel: the attribute `skein.<label>`). */
interface ObservedByLabelDef extends Omit<ObservedDef, 'read' | 'label'> {
  label: string;
  read(s: MetricsSource): Record<string, number>;
}

const RECORDED = {
  activations: { kind: 'counter', prom: 'skein_activations_total', otel: 'skein.activations', unit: '{activation}', help: 'Activations begun by this worker (each ends in one journal commit, or fails)' },
  commits: { kind: 'counter', prom: 'skein_commits_total', otel: 'skein.commits', unit: '{commit}', help: 'Journal commits by this worker that succeeded' },
  commitSeconds: { kind: 'histogram', prom: 'skein_commit_duration_seconds', otel: 'skein.commit.duration', unit: 's', help: 'Latency of journal commits (an activation, a block)' },
  claimSeconds: {
    kind: 'histogram',
    prom: 'skein_claim_duration_seconds',
    otel: 'skein.claim.duration',
    unit: 's',
    help: 'Latency of lease claims: claimDue (polls), acquire and acquireMany (wake-ups)',
    labels: ['op'],
  },
  runsStarted: { kind: 'counter', prom: 'skein_runs_started_total', otel: 'skein.runs.started', unit: '{run}', help: 'Runs whose first activation this worker committed' },
  runsClosed: { kind: 'counter', prom: 'skein_runs_closed_total', otel: 'skein.runs.closed', unit: '{run}', help: 'Runs this worker closed, by status', labels: ['status'] },
  runsBlocked: { kind: 'counter', prom: 'skein_runs_blocked_total', otel: 'skein.runs.blocked', unit: '{run}', help: 'Runs this worker blocked (non-determinism, a bug in the workflow code)' },
  runsResumed: { kind: 'counter', prom: 'skein_runs_resumed_total', otel: 'skein.runs.resumed', unit: '{run}', help: 'Runs this worker loaded after an operator resumed them' },
  runsTakenOver: { kind: 'counter', prom: 'skein_runs_taken_over_total', otel: 'skein.runs.taken_over', unit: '{run}', help: "Runs claimed after their lease expired in another worker's hands" },
  activityRetries: { kind: 'counter', prom: 'skein_activity_retries_total', otel: 'skein.activity.retries', unit: '{attempt}', help: 'Activity attempts that failed and were retried' },
  heartbeatFailures: { kind: 'counter', prom: 'skein_heartbeat_failures_total', otel: 'skein.heartbeat.failures', unit: '{heartbeat}', help: 'Worker heartbeats the journal did not take' },
} as const satisfies Record<string, RecordedDef>;

const OBSERVED: readonly (ObservedDef | ObservedByLabelDef)[] = [
  { kind: 'gauge', prom: 'skein_active_runs', otel: 'skein.runs.active', unit: '{run}', help: 'Runs with a live actor in this worker', read: (s) => s.activeRuns },
  { kind: 'gauge', prom: 'skein_cached_engines', otel: 'skein.engines.cached', unit: '{engine}', help: 'Suspended runs whose live engine this worker keeps (sticky execution)', read: (s) => s.cachedEngines },
  { kind: 'counter', prom: 'skein_engine_cache_hits_total', otel: 'skein.engine_cache.hits', unit: '{activation}', help: "Activations that found the run's engine in the sticky cache (no replay)", read: (s) => s.cacheHits },
  { kind: 'counter', prom: 'skein_engine_cache_misses_total', otel: 'skein.engine_cache.misses', unit: '{activation}', help: "Activations that had to replay the run's journal", read: (s) => s.cacheMisses },
  { kind: 'counter', prom: 'skein_leases_lost_total', otel: 'skein.leases.lost', unit: '{run}', help: 'Run actors stopped because their lease was taken over or voided', read: (s) => s.activationsEnded.lost ?? 0 },
  { kind: 'counter', prom: 'skein_run_actors_ended_total', otel: 'skein.run_actors.ended', unit: '{run}', help: 'Run actors ended, by reason', label: 'reason', read: (s) => s.activationsEnded },
];

type Recorded = typeof RECORDED;
type LabelsOf<K extends keyof Recorded> = Recorded[K] extends { labels: readonly (infer L extends string)[] } ? Record<L, string> : Record<never, string>;

/** A counter of WorkerMetrics: `inc(labels?, by?)`, into Prometheus and, when on, OpenTelemetry. */
export interface CountMetric<L extends Record<string, string> = Record<never, string>> {
  inc(labels?: L, by?: number): void;
}
/** A histogram of WorkerMetrics, in seconds. */
export interface TimeMetric<L extends Record<string, string> = Record<never, string>> {
  observe(labels: L, seconds: number): void;
}
type MetricOf<K extends keyof Recorded> = Recorded[K]['kind'] extends 'histogram' ? TimeMetric<LabelsOf<K>> : CountMetric<LabelsOf<K>>;

/** The instruments made from one OTel meter (made again when enableOpenTelemetry() replaces it). */
interface OtelBinding {
  generation: number;
  instruments: Record<keyof Recorded, OtelCounter | OtelHistogram>;
  unobserve: () => void;
}

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly activations: MetricOf<'activations'>;
  readonly commits: MetricOf<'commits'>;
  readonly commitSeconds: MetricOf<'commitSeconds'>;
  readonly claimSeconds: MetricOf<'claimSeconds'>;
  readonly runsStarted: MetricOf<'runsStarted'>;
  readonly runsClosed: MetricOf<'runsClosed'>;
  readonly runsBlocked: MetricOf<'runsBlocked'>;
  readonly runsResumed: MetricOf<'runsResumed'>;
  readonly runsTakenOver: MetricOf<'runsTakenOver'>;
  readonly activityRetries: MetricOf<'activityRetries'>;
  readonly heartbeatFailures: MetricOf<'heartbeatFailures'>;
  private otel: OtelBinding | null = null;
  private closed = false;
  /** `skein.worker_id` (and nothing else): the attributes of a point without labels. */
  private readonly workerAttrs: Attributes;

  constructor(
    private readonly source: () => MetricsSource,
    private readonly workerId = '',
  ) {
    this.workerAttrs = { 'skein.worker_id': workerId };
    const registers = [this.registry];
    const made = {} as Record<keyof Recorded, CountMetric<Record<string, string>> | TimeMetric<Record<string, string>>>;
    for (const key of Object.keys(RECORDED) as (keyof Recorded)[]) {
      const d: RecordedDef = RECORDED[key];
      const labelNames = [...(d.labels ?? [])];
      if (d.kind === 'counter') {
        const c = new Counter({ name: d.prom, help: d.help, labelNames, registers });
        made[key] = {
          inc: (labels = {}, by = 1) => {
            c.inc(labels, by);
            const o = this.bound();
            if (o) (o.instruments[key] as OtelCounter).add(by, this.attributes(labels));
          },
        };
      } else {
        const h = new Histogram({ name: d.prom, help: d.help, labelNames, buckets: LATENCY_BUCKETS, registers });
        made[key] = {
          observe: (labels, seconds) => {
            h.observe(labels, seconds);
            const o = this.bound();
            if (o) (o.instruments[key] as OtelHistogram).record(seconds, this.attributes(labels));
          },
        };
      }
    }
    const m = made as unknown as { [K in keyof Recorded]: MetricOf<K> };
    this.activations = m.activations;
    this.commits = m.commits;
    this.commitSeconds = m.commitSeconds;
    this.claimSeconds = m.claimSeconds;
    this.runsStarted = m.runsStarted;
    this.runsClosed = m.runsClosed;
    this.runsBlocked = m.runsBlocked;
    this.runsResumed = m.runsResumed;
    this.runsTakenOver = m.runsTakenOver;
    this.activityRetries = m.activityRetries;
    this.heartbeatFailures = m.heartbeatFailures;

    // Read from the worker at each scrape. Prometheus counters advance by what changed since the last scrape.
    for (const d of OBSERVED) {
      if (d.kind === 'gauge') {
        const read = d.read as (s: MetricsSource) => number;
        new Gauge({ name: d.prom, help: d.help, registers, collect() {
          this.set(read(source()));
        } });
      } else if (d.label === undefined) {
        let seen = 0;
        const read = d.read;
        new Counter({ name: d.prom, help: d.help, registers, collect() {
          const v = read(source());
          this.inc(Math.max(0, v - seen));
          seen = v;
        } });
      } else {
        const seen = new Map<string, number>();
        const read = d.read;
        new Counter({ name: d.prom, help: d.help, labelNames: [d.label], registers, collect() {
          for (const [value, v] of Object.entries(read(source()))) {
            this.inc({ [d.label]: value }, Math.max(0, v - (seen.get(value) ?? 0)));
            seen.set(value, v);
          }
        } });
      }
    }
    this.bound();
  }

  /**
   * The OTel instruments to record into, or null while OpenTelemetry is off (one null check). Made on first use
   * after each enableOpenTelemetry(): at construction, or at the first recording after (a worker polls, so soon).
   */
  private bound(): OtelBinding | null {
    const m = otelMeter();
    if (!m) return this.otel ? this.unbind() : null; // (disableOpenTelemetry(): the gauges are no longer observed)
    if (this.otel?.generation === m.generation) return this.otel;
    this.unbind();
    this.otel = this.closed ? null : this.bind(m);
    return this.otel;
  }

  private unbind(): null {
    this.otel?.unobserve();
    this.otel = null;
    return null;
  }

  private bind({ meter, generation }: OtelMeter): OtelBinding {
    const instruments = {} as OtelBinding['instruments'];
    for (const key of Object.keys(RECORDED) as (keyof Recorded)[]) {
      const d: RecordedDef = RECORDED[key];
      instruments[key] =
        d.kind === 'counter'
          ? meter.createCounter(d.otel, { description: d.help, unit: d.unit })
          : meter.createHistogram(d.otel, { description: d.help, unit: d.unit, advice: { explicitBucketBoundaries: LATENCY_BUCKETS } });
    }
    // The observed metrics: one callback per collection reads the worker once for all of them.
    const observables = OBSERVED.map((d) =>
      d.kind === 'gauge'
        ? meter.createObservableGauge(d.otel, { description: d.help, unit: d.unit })
        : meter.createObservableCounter(d.otel, { description: d.help, unit: d.unit }),
    );
    const observe = (result: BatchObservableResult) => {
      const s = this.source();
      OBSERVED.forEach((d, i) => {
        const o = observables[i]!;
        if (d.label === undefined) result.observe(o, d.read(s), this.workerAttrs);
        else for (const [value, v] of Object.entries(d.read(s))) result.observe(o, v, { ...this.workerAttrs, [`skein.${d.label}`]: value });
      });
    };
    meter.addBatchObservableCallback(observe, observables);
    return { generation, instruments, unobserve: () => meter.removeBatchObservableCallback(observe, observables) };
  }

  /** An OTel point's attributes: the worker's id, and each label as `skein.<label>`. */
  private attributes(labels: Record<string, string>): Attributes {
    const keys = Object.keys(labels);
    if (!keys.length) return this.workerAttrs;
    const a: Attributes = { ...this.workerAttrs };
    for (const k of keys) a[`skein.${k}`] = labels[k];
    return a;
  }

  /** The worker stopped: its gauges are no longer observed (the meter would keep calling it otherwise). */
  close(): void {
    this.closed = true;
    this.unbind();
  }

  /** The Prometheus text exposition of every metric. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * The journal, with its claims and commits timed and counted. Every other call goes through untouched (bound to the
   * journal itself).
   */
  instrument<J extends Journal>(journal: J): J {
    const timed = (fn: (...a: unknown[]) => Promise<unknown>, observe: (seconds: number, ok: boolean, err?: unknown) => void) =>
      async (...args: unknown[]) => {
        const t = process.hrtime.bigint();
        try {
          const out = await fn(...args);
          observe(Number(process.hrtime.bigint() - t) / 1e9, true);
          return out;
        } catch (err) {
          observe(Number(process.hrtime.bigint() - t) / 1e9, false, err);
          throw err;
        }
      };
    const wrap: Record<string, (fn: (...a: unknown[]) => Promise<unknown>) => (...a: unknown[]) => Promise<unknown>> = {
      commit: (fn) =>
        timed(fn, (s, ok, err) => {
          // a fenced refusal is an answer, not a slow database: time only what the database did
          if (ok || err instanceof LeaseLostError) this.commitSeconds.observe({}, s);
          if (ok) this.commits.inc();
        }),
      claimDue: (fn) => timed(fn, (s) => this.claimSeconds.observe({ op: 'claim_due' }, s)),
      acquire: (fn) => timed(fn, (s) => this.claimSeconds.observe({ op: 'acquire' }, s)),
      acquireMany: (fn) => timed(fn, (s) => this.claimSeconds.observe({ op: 'acquire_many' }, s)),
    };
    const cache = new Map<PropertyKey, unknown>();
    return new Proxy(journal, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown;
        if (typeof v !== 'function') return v;
        let f = cache.get(prop);
        if (!f) {
          const bound = (v as (...a: unknown[]) => unknown).bind(target) as (...a: unknown[]) => Promise<unknown>;
          f = typeof prop === 'string' && wrap[prop] ? wrap[prop](bound) : bound;
          cache.set(prop, f);
        }
        return f;
      },
    });
  }
}
