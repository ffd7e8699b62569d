import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { createActor, type Actor } from 'xstate';
import pino, { type Logger } from 'pino';
import { Admission } from './admission.js';
import { EngineCache, type CreatedChildren, type RunHost } from '../actors/activation.js';
import type { FreshRun, RunServices } from '../actors/run-machine.js';
import { workerSystemMachine, type SystemEvent } from '../actors/worker-system.js';
import { abortReason, type RunEndReason } from '../actors/local-work.js';
import type { EngineOptions } from '../runtime/engine.js';
import { Registry, type ActivitiesInput, type WorkflowsInput } from '../runtime/registry.js';
import type { CommitResult, Journal, Lease, WorkerHeartbeat } from '../journal/journal.js';
import type { WakeBus } from '../journal/wake-bus.js';
import { firstLine, isUnreachable } from '../journal/connection.js';
import { Heartbeat } from './heartbeat.js';
import { WorkerHttpServer } from './http.js';
import { WorkerMetrics } from './metrics.js';
import { WorkerObserver } from './observer.js';

export interface WorkerOptions {
  workflows: WorkflowsInput;
  activities?: ActivitiesInput;
  journal: Journal;
  /** Queues this worker serves. Default ['default']. */
  queues?: string[];
  /** Most runs with a live actor at once. Default 1000. */
  concurrency?: number;
  /**
   * Most activations (read, decide, commit) in flight at once; the other live runs wait their turn with their leases
   * kept by the heartbeat, and the poll claims no more while some wait. Default 128.
   */
  maxActivations?: number;
  leaseMs?: number;
  /** How often to look for due runs nobody told us about (timers, lost notifications, expired leases). */
  pollIntervalMs?: number;
  maxChildDepth?: number;
  /** Suspended runs kept live in memory (sticky execution). Default 10,000. */
  cacheCapacity?: number;
  inlineActivityBudgetMs?: number;
  /**
   * How long an activation may run the children it starts, inline, before committing (default 20 ms; 0: never).
   * A child that closes within it (it needed only quick activities) is committed closed together with its parent.
   */
  inlineChildBudgetMs?: number;
  logger?: Logger;
  workerId?: string;
  /** How long shutdown waits for running activities before releasing their runs. Default 10 s. */
  shutdownGraceMs?: number;
  /** Optional cross-worker wake-ups (Redis pub/sub), in addition to the journal's own notifications. */
  wakeBus?: WakeBus;
  /**
   * How often the worker records its heartbeat in the journal (its `workers` row; listWorkers shows it gone after 3
   * intervals without one). Default: SKEIN_HEARTBEAT_MS, else 5000.
   */
  heartbeatIntervalMs?: number;
  /**
   * Serve GET /healthz and GET /metrics on this port (0 or absent: no HTTP endpoint). Default: SKEIN_HTTP_PORT, else
   * none. See docs/operating.md.
   */
  httpPort?: number;
  /** The address the HTTP endpoint binds. Default: SKEIN_HTTP_HOST, else 127.0.0.1. */
  httpHost?: string;
}

/** What GET /healthz answers (and `worker.healthCheck()` returns): the worker's health and whether its journal answers. */
export interface WorkerHealthReport extends WorkerHealth {
  /** The journal answered a ping just now (within 2 s). */
  database: { reachable: boolean; latencyMs: number | null; error: string | null };
  /** The journal's target (the URL without its password, the schema). */
  journal: ReturnType<NonNullable<Journal['target']>> | null;
  heartbeat: { intervalMs: number; lastOkAt: number | null; lastError: string | null };
  startedAt: number | null;
}

export interface WorkerHealth {
  workerId: string;
  state: 'idle' | 'running' | 'stopping' | 'stopped';
  activeRuns: number;
  cachedEngines: number;
  cacheHits: number;
  cacheMisses: number;
  activationsEnded: Record<RunEndReason, number>;
  lastPollAt: number | null;
  lastError: string | null;
}

/**
 * How long after its next attempt a run stalled on an activity this worker lacks is left to workers that have it,
 * before this worker's poll claims it again (at least two poll intervals): the capable worker gets it first.
 */
const STALL_GRACE_MS = 5000;

/**
 * A long-lived worker: claims due runs from the journal, runs one XState actor per active run, routes wake-ups,
 * renews leases while activities run, and on shutdown finishes or releases what it holds.
 */
export class Worker {
  readonly workerId: string;
  readonly registry: Registry;
  readonly journal: Journal;
  readonly log: Logger;
  private readonly queues: string[];
  /** The workflows registered here: the only runs this worker claims. */
  private readonly workflows: string[];
  private readonly concurrency: number;
  private readonly leaseMs: number;
  private readonly pollIntervalMs: number;
  private readonly shutdownGraceMs: number;
  private readonly host: RunHost;
  private readonly system: Actor<typeof workerSystemMachine>;
  private readonly active = new Set<string>();
  private readonly acquiring = new Set<string>();
  /** Runs to lease in the next acquireBatch (see tryAcquire). */
  private toAcquire: string[] = [];
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private state: WorkerHealth['state'] = 'idle';
  private pollTimer: NodeJS.Timeout | null = null;
  /** How many activations run at once (WorkerOptions.maxActivations). */
  private readonly admission: Admission;
  private leaseTimer: NodeJS.Timeout | null = null;
  private polling = false;
  private pollAgain = false;
  /** The last claim took all it asked for: more runs are due than this worker has room for (a backlog). */
  private claimedFull = false;
  private unsubscribe: (() => void) | null = null;
  private unsubscribeBus: (() => void) | null = null;
  private readonly wakeBus: WakeBus | undefined;
  private stopped: Promise<void> | null = null;
  private resolveStopped: (() => void) | null = null;
  private readonly ended: Record<RunEndReason, number> = { closed: 0, suspended: 0, blocked: 0, lost: 0, failed: 0, stopped: 0 };
  private lastPollAt: number | null = null;
  private lastError: string | null = null;
  private idleWaiters: (() => void)[] = [];
  /** The lease each active run was handed over with (a lease keeps its token while its actor lives). */
  private readonly leases = new Map<string, Lease>();
  /** Consecutive failed activations per run, for the backoff before such a run is given back (see onEnded). */
  private readonly failures = new Map<string, number>();
  /** Consecutive failed polls (the database is unreachable): polling backs off while this is > 0. */
  private pollFailures = 0;
  /** When the current database outage was first seen (null: none), so that it is logged once, not per retry. */
  private outageSince: number | null = null;
  /** Prometheus metrics of this worker (its own prom-client registry: `metrics.registry`), served at GET /metrics. */
  readonly metrics: WorkerMetrics;
  private readonly observer: WorkerObserver;
  /** This worker's row in the journal's workers table (listWorkers), refreshed every interval. */
  private readonly heartbeatRow: Heartbeat;
  private readonly http: WorkerHttpServer;
  private readonly httpPort: number;
  private readonly httpHost: string;
  private startedAt: number | null = null;

  constructor(options: WorkerOptions) {
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.registry = new Registry(options.workflows, options.activities ?? []);
    // (the journal as the worker uses it: claims and commits timed and counted for /metrics)
    this.metrics = new WorkerMetrics(() => this.health(), this.workerId);
    this.journal = this.metrics.instrument(options.journal);
    this.queues = options.queues ?? ['default'];
    this.workflows = this.registry.workflowNames();
    this.concurrency = options.concurrency ?? 1000;
    // When the admission queue drains, look for more work at once (the poll held back while it was full).
    this.admission = new Admission(options.maxActivations ?? 128, () => {
      if (this.pollAgain && this.admission.backlog === 0) this.schedulePoll(0);
    });
    this.leaseMs = options.leaseMs ?? 30_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.shutdownGraceMs = options.shutdownGraceMs ?? 10_000;
    this.wakeBus = options.wakeBus;
    this.log = (options.logger ?? pino({ level: process.env.SKEIN_LOG_LEVEL ?? 'info' })).child({ workerId: this.workerId });
    this.observer = new WorkerObserver(this.log, this.metrics, this.workerId);
    this.heartbeatRow = new Heartbeat(
      this.journal,
      () => this.heartbeatSnapshot(),
      options.heartbeatIntervalMs ?? (envInt('SKEIN_HEARTBEAT_MS') || 5000),
      this.log,
      () => this.metrics.heartbeatFailures.inc(),
    );
    this.httpPort = options.httpPort ?? envInt('SKEIN_HTTP_PORT');
    this.httpHost = options.httpHost ?? (process.env.SKEIN_HTTP_HOST || '127.0.0.1');
    this.http = new WorkerHttpServer({ health: () => this.healthz(), metrics: async () => ({ contentType: this.metrics.contentType, body: await this.metrics.text() }) }, this.log);
    const engineOptions: EngineOptions = {};
    if (options.maxChildDepth !== undefined) engineOptions.maxChildDepth = options.maxChildDepth;
    this.host = { journal: this.journal, registry: this.registry, engineOptions, cache: new EngineCache(options.cacheCapacity ?? 10_000) };
    const services: RunServices = {
      host: this.host,
      log: this.log,
      leaseMs: this.leaseMs,
      inlineActivityBudgetMs: options.inlineActivityBudgetMs ?? 20,
      inlineChildBudgetMs: options.inlineChildBudgetMs ?? 20,
      queues: this.queues,
      capacityLeft: () => this.capacityLeft(),
      afterCommit: (runId, result, timerAt, created) => this.afterCommit(runId, result, timerAt, created),
      observer: this.observer,
      admit: (activation) => this.admission.run(activation),
    };
    this.system = createActor(workerSystemMachine, {
      input: {
        services,
        hooks: {
          unrouted: (ids) => ids.forEach((id) => void this.tryAcquire(id)),
          ended: (runId, reason, wakePending) => this.onEnded(runId, reason, wakePending),
        },
      },
    });
  }

  /**
   * Starts the worker and resolves when it has stopped (after shutdown(), or SIGTERM/SIGINT if `handleSignals`).
   *
   * Until then it keeps the process alive, whatever happens to the database: the worker's own timers (polls, retries,
   * the journal's reconnects) do not hold the event loop (so that start() alone never keeps a process from exiting),
   * and an idle worker whose database went away would otherwise have nothing left to wait on and end, with exit code
   * 0, while it should be waiting for the database to come back.
   */
  async run(options: { handleSignals?: boolean } = {}): Promise<void> {
    this.start();
    const onSignal = (sig: string) => {
      this.log.info({ signal: sig }, 'shutting down');
      void this.shutdown();
    };
    if (options.handleSignals) {
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
    }
    const keepAlive = setInterval(() => {}, 1 << 30);
    try {
      await this.stopped;
    } finally {
      clearInterval(keepAlive);
      process.removeListener('SIGTERM', onSignal);
      process.removeListener('SIGINT', onSignal);
    }
  }

  /** Starts claiming and running runs; returns at once. */
  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.stopped = new Promise((r) => (this.resolveStopped = r));
    this.system.start();
    this.unsubscribe = this.journal.onWake((ids, kind) => {
      if (this.state !== 'running' || kind === 'closed') return;
      if (kind === 'stop') {
        // Closed from outside (cancel, terminate): stop their actors now; their next append would fail anyway.
        for (const id of ids) {
          this.host.cache.delete(id);
          this.system.send({ type: 'STOP_RUN', runId: id });
        }
        return;
      }
      this.system.send({ type: 'WAKE', runIds: ids });
    });
    if (this.wakeBus) {
      this.unsubscribeBus = this.wakeBus.subscribe((ids) => {
        if (this.state === 'running') this.system.send({ type: 'WAKE', runIds: ids });
      });
    }
    this.startedAt = Date.now();
    const target = this.journal.target?.();
    this.log.info(
      {
        queues: this.queues,
        concurrency: this.concurrency,
        ...(target ? { journal: target.kind, database: target.url, schema: target.schema } : {}),
        workflows: this.workflows,
        activities: this.registry.activityNames(),
        heartbeatIntervalMs: this.heartbeatRow.intervalMs,
      },
      'worker started',
    );
    this.heartbeatRow.start();
    if (this.httpPort > 0) void this.http.start(this.httpHost, this.httpPort);
    this.scheduleLeaseHeartbeat();
    this.schedulePoll(0);
  }

  /**
   * Every held lease is renewed in ONE statement, a third of a lease period after the previous renewal, whatever
   * each run is doing (loading, activating, committing, running activities): a run never starts or continues an
   * activation with a lease about to expire because it happened not to be running an activity. A token that no
   * longer holds its run (taken over, voided by a cancel request, closed) stops that run's actor (LOST). While the
   * database is unreachable the heartbeat retries at a shorter interval; leases simply run out if it stays away.
   */
  private scheduleLeaseHeartbeat(delayMs = Math.max(10, Math.floor(this.leaseMs / 3))): void {
    if (this.state === 'stopped') return;
    this.leaseTimer = setTimeout(() => void this.heartbeatLeases(), delayMs);
    this.leaseTimer.unref?.();
  }

  private async heartbeatLeases(): Promise<void> {
    const held = [...this.leases.values()];
    let next = Math.max(10, Math.floor(this.leaseMs / 3));
    if (held.length) {
      try {
        const { expiresAt, lost } = await this.journal.renewMany(held, this.leaseMs);
        const lostIds = new Set(lost);
        for (const l of held) {
          // (only if it is still the same grant: the run may have been released and leased to us again meanwhile)
          const current = this.leases.get(l.runId);
          if (current?.token !== l.token) continue;
          if (lostIds.has(l.runId)) this.toSystem({ type: 'LOSE_RUN', runId: l.runId });
          else this.leases.set(l.runId, { ...current, expiresAt });
        }
      } catch (err) {
        this.noteError(err);
        next = Math.max(10, Math.min(next, 500));
      }
    }
    if (this.state === 'running' || this.state === 'stopping') this.scheduleLeaseHeartbeat(next);
  }

  /**
   * The worker's health and whether its journal answers now (a ping, at most 2 s): what GET /healthz serves, with 503
   * when the database cannot be reached. `health()` is the same without the round trip.
   */
  async healthCheck(): Promise<WorkerHealthReport> {
    const t = Date.now();
    let error: string | null = null;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.journal.ping(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('no answer within 2000 ms')), 2000);
          timer.unref?.();
        }),
      ]);
    } catch (err) {
      error = firstLine(err);
    } finally {
      clearTimeout(timer);
    }
    return {
      ...this.health(),
      database: { reachable: error === null, latencyMs: error === null ? Date.now() - t : null, error },
      journal: this.journal.target?.() ?? null,
      heartbeat: { intervalMs: this.heartbeatRow.intervalMs, lastOkAt: this.heartbeatRow.lastOkAt, lastError: this.heartbeatRow.lastError },
      startedAt: this.startedAt,
    };
  }

  /** Where GET /healthz and GET /metrics are served (null: no HTTP port, or not listening yet). */
  get httpAddress(): { host: string; port: number } | null {
    return this.http.address;
  }

  private async healthz(): Promise<{ ok: boolean; body: WorkerHealthReport }> {
    const body = await this.healthCheck();
    return { ok: body.database.reachable && body.state === 'running', body };
  }

  /** The worker's row in the journal's workers table, as of now. */
  private heartbeatSnapshot(): WorkerHeartbeat {
    return {
      workerId: this.workerId,
      host: hostname(),
      pid: process.pid,
      queues: this.queues,
      workflows: this.workflows,
      activities: this.registry.activityNames(),
      concurrency: this.concurrency,
      activeRuns: this.active.size,
      startedAt: this.startedAt ?? Date.now(),
      heartbeatIntervalMs: this.heartbeatRow.intervalMs,
    };
  }

  /** Stops claiming, lets running activities finish (up to the grace period), releases every lease it holds. */
  async shutdown(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return this.stopped ?? undefined;
    this.state = 'stopping';
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.unsubscribe?.();
    this.unsubscribeBus?.();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    const deadline = Date.now() + this.shutdownGraceMs;
    while (this.active.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const held: Lease[] = [];
    // The grace period is over: activities still running are aborted (ctx.signal) and their results dropped.
    const aborted = abortReason('shutdown', null);
    for (const slot of this.system.getSnapshot().context.runs.values()) {
      const lease = slot.actor?.getSnapshot().context.lease;
      if (lease) held.push(lease);
      slot.actor?.getSnapshot().context.work?.stop(aborted);
    }
    this.system.stop();
    // Whatever is still held goes back to the journal: another worker picks it up at once, nothing is lost.
    await Promise.allSettled(held.map((l) => this.journal.release(l)));
    await Promise.all([this.heartbeatRow.stop(), this.http.stop()]);
    this.metrics.close();
    this.state = 'stopped';
    if (this.leaseTimer) clearTimeout(this.leaseTimer);
    this.log.info({ released: held.length }, 'worker stopped');
    this.resolveStopped?.();
  }

  health(): WorkerHealth {
    return {
      workerId: this.workerId,
      state: this.state,
      activeRuns: this.active.size,
      cachedEngines: this.host.cache.size,
      cacheHits: this.host.cache.hits,
      cacheMisses: this.host.cache.misses,
      activationsEnded: { ...this.ended },
      lastPollAt: this.lastPollAt,
      lastError: this.lastError,
    };
  }

  /** Resolves when no run is active in this worker and nothing is due (for tests and examples). */
  async idle(): Promise<void> {
    if (this.active.size === 0 && this.acquiring.size === 0) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  // ---------------------------------------------------------------------------------------------------------------

  /** Sends to the actor system unless it has stopped (a commit or a timer that ends after shutdown has no one to tell). */
  private toSystem(event: SystemEvent): void {
    if (this.system.getSnapshot().status === 'active') this.system.send(event);
  }

  private capacityLeft(): number {
    return this.concurrency - this.active.size - this.acquiring.size;
  }

  private runLease(lease: Lease, fresh?: FreshRun): void {
    if (this.state !== 'running') {
      this.releaseQuietly(lease);
      return;
    }
    this.active.add(lease.runId);
    this.leases.set(lease.runId, lease);
    this.observer.leased(lease, fresh);
    this.system.send(fresh ? { type: 'RUN', lease, fresh } : { type: 'RUN', lease });
  }

  /**
   * Leases a run this worker was told about (a wake-up for a run with no actor here). Wake-ups come in bursts (a
   * thousand signals, a wave of child closes): the ids of one event-loop turn are leased together, in one statement
   * that also brings each run's inbox (acquireMany), so a burst costs one round trip, not two per run.
   */
  private tryAcquire(runId: string): void {
    if (this.state !== 'running' || this.active.has(runId) || this.acquiring.has(runId)) return;
    this.acquiring.add(runId);
    this.toAcquire.push(runId);
    if (this.toAcquire.length === 1) setImmediate(() => void this.acquireBatch());
  }

  private async acquireBatch(): Promise<void> {
    const ids = this.toAcquire.splice(0);
    // Never more than we can run; the rest are due and the poll (asked for now) claims them when there is room.
    const room = Math.max(0, this.capacityLeft() + ids.length);
    const take = ids.slice(0, room);
    for (const id of ids.slice(room)) this.acquiring.delete(id);
    if (take.length < ids.length) this.schedulePoll(0);
    if (!take.length || this.state !== 'running') {
      take.forEach((id) => this.acquiring.delete(id));
      this.checkIdle();
      return;
    }
    try {
      // One statement: the journal checks each run is open, free and on our queues, and says what its actor needs.
      // Runs with no engine here come with their journal (one statement for the burst, not a read per run).
      const cache = this.host.cache;
      const withHistory = take.filter((id) => !cache.has(id));
      const leases = await this.journal.acquireMany(take, this.workerId, this.leaseMs, this.queues, this.workflows, withHistory);
      take.forEach((id) => this.acquiring.delete(id));
      for (const lease of leases) this.runLease(lease);
    } catch (err) {
      take.forEach((id) => this.acquiring.delete(id));
      this.noteError(err);
    } finally {
      this.checkIdle();
    }
  }

  private afterCommit(runId: string, result: CommitResult, timerAt: number | null, created: CreatedChildren): void {
    const elsewhere: string[] = [];
    const specs = new Map(result.childLeases.map((l) => [l.runId, created(l.runId)]));
    // Children whose first activation already ran here (inline, unfinished) come first: their work is in hand.
    const leases = [...result.childLeases].sort((a, b) => Number(!specs.get(a.runId)?.prepared) - Number(!specs.get(b.runId)?.prepared));
    for (const l of leases) {
      const spec = specs.get(l.runId);
      // The commit leased only children this worker runs and has room for (activation.ts: runsHere); room may have
      // shrunk since, and what no longer fits goes back at once like any overflow.
      if (this.capacityLeft() > 0) this.runLease(l, spec);
      else {
        // Due now: another worker (or our next poll) takes it.
        this.releaseQuietly(l);
        elsewhere.push(l.runId);
      }
    }
    if (result.wokeParent) {
      // Straight through the actor system when the parent lives here; the bus tells other workers otherwise.
      if (!this.active.has(result.wokeParent)) elsewhere.push(result.wokeParent);
      this.toSystem({ type: 'WAKE', runIds: [result.wokeParent] });
    }
    if (elsewhere.length && this.wakeBus) void this.wakeBus.publish(elsewhere);
    const old = this.timers.get(runId);
    if (old) clearTimeout(old);
    this.timers.delete(runId);
    if (timerAt !== null) {
      // A local timer for our own durable timers; the poll is the safety net if this process dies.
      const delay = Math.max(0, timerAt - this.journal.clock.now());
      const t = setTimeout(() => {
        this.timers.delete(runId);
        this.toSystem({ type: 'WAKE', runIds: [runId] });
      }, delay);
      t.unref?.();
      this.timers.set(runId, t);
    }
  }

  private onEnded(runId: string, reason: RunEndReason, wakePending: boolean): void {
    this.active.delete(runId);
    this.ended[reason]++;
    this.observer.ended(runId);
    const lease = this.leases.get(runId);
    this.leases.delete(runId);
    if (reason === 'failed') {
      // The activation failed on something other than a lost lease or bad workflow code (those end as 'lost' and
      // 'blocked'): typically the database went away mid-activation (restart, failover, network). The run is still
      // leased to us but nothing here runs it any more, and whatever its in-process activities produce is dropped
      // (they may run again: at-least-once). Give the lease back after a per-run backoff (100 ms, doubling, at most
      // the lease period), retrying while the database is unreachable, so that this or another worker resumes the
      // run from its journal as soon as the database is back, rather than only when the lease expires. A run that
      // fails again and again is retried less and less often. The fence makes a late release harmless: it only
      // clears the lease if it still carries our token.
      const n = (this.failures.get(runId) ?? 0) + 1;
      if (this.failures.size > 10_000) this.failures.clear();
      this.failures.set(runId, n);
      if (lease) this.giveBackLater(lease, Math.min(this.leaseMs, 100 * 2 ** Math.min(n - 1, 20)));
      this.schedulePoll(this.pollIntervalMs);
    } else {
      this.failures.delete(runId);
    }
    // News arrived while the actor was busy: take the run again (after 'lost' too: a graceful cancel voids the lease
    // and wakes the run; if someone else holds it or it has closed, the acquire simply fails).
    if ((wakePending && reason === 'suspended') || reason === 'lost') void this.tryAcquire(runId);
    if (this.capacityLeft() > 0 && this.pollAgain) this.schedulePoll(0);
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.active.size || this.acquiring.size || !this.idleWaiters.length) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    w.forEach((r) => r());
  }

  private schedulePoll(delay: number): void {
    if (this.state !== 'running') return;
    // While the database is unreachable nothing polls faster than the backoff, whatever asked for a poll.
    if (this.pollFailures > 0) delay = Math.max(delay, this.pollBackoffMs());
    if (this.polling) {
      this.pollAgain = true;
      return;
    }
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => void this.poll(), delay);
    this.pollTimer.unref?.();
  }

  private async poll(): Promise<void> {
    if (this.state !== 'running') return;
    this.polling = true;
    this.pollAgain = false;
    let full = false;
    let failed = false;
    try {
      // Claim no more than the activations can take soon: what is free of the concurrency, but at most a batch of
      // twice the admission limit, and nothing while activations already wait for a slot (see Admission).
      // With a backlog of due runs, claim a full batch once there is room for one rather than a few runs each time
      // one ends: a claim's cost is mostly fixed (it walks past the runs this worker holds in the due index), so
      // claims of ~100 runs each turned a 100,000-child fan-out into 945 claims (5.5 s of database time). Not longer
      // than a poll interval, though: runs that hold their slots for long (slow activities) must not keep the free
      // ones idle.
      const batch = 2 * this.admission.limit;
      const room = this.capacityLeft();
      const gather = this.claimedFull && room < Math.min(batch, this.concurrency / 4) && Date.now() - (this.lastPollAt ?? 0) < this.pollIntervalMs;
      const limit = this.admission.backlog > 0 || gather ? 0 : Math.min(room, batch);
      if (limit > 0) {
        // Only runs this worker can execute: of its workflows, and not stalled on an activity it lacks while a worker
        // that has it may still take it (see ClaimOptions.activities).
        const leases = await this.journal.claimDue({
          owner: this.workerId,
          queues: this.queues,
          limit,
          leaseMs: this.leaseMs,
          workflows: this.workflows,
          activities: { names: this.registry.activityNames(), graceMs: Math.max(STALL_GRACE_MS, 2 * this.pollIntervalMs) },
        });
        this.lastPollAt = Date.now();
        this.noteReachable();
        for (const l of leases) this.runLease(l);
        full = leases.length === limit;
        this.claimedFull = full;
      } else {
        this.pollAgain = true;
      }
      this.lastError = null;
    } catch (err) {
      this.noteError(err);
      failed = true;
    } finally {
      this.polling = false;
    }
    this.pollFailures = failed ? this.pollFailures + 1 : 0;
    this.schedulePoll(full ? 0 : this.pollIntervalMs);
  }

  /**
   * The delay before the next poll after `pollFailures` failed ones in a row: the poll interval, doubling, capped at
   * 5 s (or the poll interval if longer), with jitter so that workers do not all come back at the same instant when
   * a database restarts.
   */
  private pollBackoffMs(): number {
    const cap = Math.max(this.pollIntervalMs, 5000);
    const base = Math.min(cap, this.pollIntervalMs * 2 ** Math.min(this.pollFailures - 1, 20));
    return Math.round(base * (0.75 + Math.random() * 0.5));
  }

  /** Gives a lease back without waiting; a failure (database unreachable) only costs the time until it expires. */
  private releaseQuietly(lease: Lease): void {
    this.journal.release(lease).catch((err: unknown) => this.noteError(err));
  }

  /**
   * Gives the lease of a run whose actor failed back after `delayMs`, retrying with backoff while the database is
   * unreachable, until the lease must have expired anyway (one lease period after the failure).
   */
  private giveBackLater(lease: Lease, delayMs: number): void {
    const giveUpAt = Date.now() + this.leaseMs;
    const attempt = (wait: number) => {
      const t = setTimeout(() => {
        if (this.state === 'stopped' || this.active.has(lease.runId)) return; // stopped, or already running here again
        this.journal.release(lease).then(
          () => this.schedulePoll(0),
          (err: unknown) => {
            // quietly: the failed activation and the poll have said already that the database is unreachable
            this.lastError = err instanceof Error ? err.message : String(err);
            this.log.debug({ err, runId: lease.runId }, 'giving back the lease of a failed run: will retry');
            if (Date.now() + wait * 2 < giveUpAt) attempt(Math.min(wait * 2, 2000));
          },
        );
      }, wait);
      t.unref?.();
    };
    attempt(delayMs);
  }

  /**
   * A failed journal call. The database being away (down, restarting, unreachable) is one outage, however many calls
   * fail during it: said once at warn when first seen, each further failure at debug, and at info when a poll gets
   * through again (noteReachable). Any other failure is said each time.
   */
  private noteError(err: unknown): void {
    this.lastError = err instanceof Error ? err.message : String(err);
    if (!isUnreachable(err)) {
      this.log.warn({ err }, 'journal call failed; will retry');
      return;
    }
    if (this.outageSince === null) {
      this.outageSince = Date.now();
      this.log.warn({ reason: firstLine(err) }, 'database unreachable: will retry with backoff until it is back');
    } else {
      this.log.debug({ reason: firstLine(err) }, 'database still unreachable');
    }
  }

  private noteReachable(): void {
    if (this.outageSince === null) return;
    this.log.info({ downForMs: Date.now() - this.outageSince }, 'database reachable again');
    this.outageSince = null;
  }
}

/** A non-negative integer from the environment (0 when unset or not one). */
function envInt(name: string): number {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v > 0 ? v : 0;
}
