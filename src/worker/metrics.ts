import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Journal } from '../journal/journal.js';
import { LeaseLostError } from '../runtime/errors.js';

/**
 * A worker's Prometheus metrics (prom-client), in a registry of its own (never prom-client's global one), so several
 * workers in one process, and the application's own metrics, do not mix. Served as text at GET /metrics when the
 * worker has an HTTP port; `worker.metrics` is the registry, for embedding elsewhere (or for collectDefaultMetrics).
 *
 * Counters the worker keeps anyway (its health: cache hits, actor ends) are read when scraped; latencies are measured
 * around the journal calls themselves (instrument()).
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

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly activations: Counter;
  readonly commits: Counter;
  readonly commitSeconds: Histogram;
  readonly claimSeconds: Histogram<'op'>;
  readonly runsStarted: Counter;
  readonly runsClosed: Counter<'status'>;
  readonly runsBlocked: Counter;
  readonly runsResumed: Counter;
  readonly runsTakenOver: Counter;
  readonly activityRetries: Counter;
  readonly heartbeatFailures: Counter;

  constructor(source: () => MetricsSource) {
    const registers = [this.registry];
    this.activations = new Counter({ name: 'skein_activations_total', help: 'Activations begun by this worker (each ends in one journal commit, or fails)', registers });
    this.commits = new Counter({ name: 'skein_commits_total', help: 'Journal commits by this worker that succeeded', registers });
    this.commitSeconds = new Histogram({ name: 'skein_commit_duration_seconds', help: 'Latency of journal commits (an activation, a block)', buckets: LATENCY_BUCKETS, registers });
    this.claimSeconds = new Histogram({
      name: 'skein_claim_duration_seconds',
      help: 'Latency of lease claims: claimDue (polls), acquire and acquireMany (wake-ups)',
      labelNames: ['op'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.runsStarted = new Counter({ name: 'skein_runs_started_total', help: "Runs whose first activation this worker committed", registers });
    this.runsClosed = new Counter({ name: 'skein_runs_closed_total', help: 'Runs this worker closed, by status', labelNames: ['status'], registers });
    this.runsBlocked = new Counter({ name: 'skein_runs_blocked_total', help: 'Runs this worker blocked (non-determinism, a bug in the workflow code)', registers });
    this.runsResumed = new Counter({ name: 'skein_runs_resumed_total', help: 'Runs this worker loaded after an operator resumed them', registers });
    this.runsTakenOver = new Counter({ name: 'skein_runs_taken_over_total', help: "Runs claimed after their lease expired in another worker's hands", registers });
    this.activityRetries = new Counter({ name: 'skein_activity_retries_total', help: 'Activity attempts that failed and were retried', registers });
    this.heartbeatFailures = new Counter({ name: 'skein_heartbeat_failures_total', help: 'Worker heartbeats the journal did not take', registers });

    // Read from the worker at each scrape. Counters advance by what changed since the last scrape.
    new Gauge({ name: 'skein_active_runs', help: 'Runs with a live actor in this worker', registers, collect() {
      this.set(source().activeRuns);
    } });
    new Gauge({ name: 'skein_cached_engines', help: 'Suspended runs whose live engine this worker keeps (sticky execution)', registers, collect() {
      this.set(source().cachedEngines);
    } });
    const seen = { hits: 0, misses: 0, lost: 0, ended: new Map<string, number>() };
    new Counter({ name: 'skein_engine_cache_hits_total', help: 'Activations that found the run\'s engine in the sticky cache (no replay)', registers, collect() {
      const v = source().cacheHits;
      this.inc(Math.max(0, v - seen.hits));
      seen.hits = v;
    } });
    new Counter({ name: 'skein_engine_cache_misses_total', help: 'Activations that had to replay the run\'s journal', registers, collect() {
      const v = source().cacheMisses;
      this.inc(Math.max(0, v - seen.misses));
      seen.misses = v;
    } });
    new Counter({ name: 'skein_leases_lost_total', help: 'Run actors stopped because their lease was taken over or voided', registers, collect() {
      const v = source().activationsEnded.lost ?? 0;
      this.inc(Math.max(0, v - seen.lost));
      seen.lost = v;
    } });
    new Counter({ name: 'skein_run_actors_ended_total', help: 'Run actors ended, by reason', labelNames: ['reason'], registers, collect() {
      for (const [reason, v] of Object.entries(source().activationsEnded)) {
        this.inc({ reason }, Math.max(0, v - (seen.ended.get(reason) ?? 0)));
        seen.ended.set(reason, v);
      }
    } });
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
          if (ok || err instanceof LeaseLostError) this.commitSeconds.observe(s);
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
