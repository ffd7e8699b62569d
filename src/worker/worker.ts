import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { createActor, type Actor } from 'xstate';
import pino, { type Logger } from 'pino';
import { EngineCache, type RunHost } from '../actors/activation.js';
import type { FreshRun, RunEndReason, RunServices } from '../actors/run-machine.js';
import { workerSystemMachine } from '../actors/worker-system.js';
import type { EngineOptions } from '../runtime/engine.js';
import { Registry, type ActivitiesInput, type WorkflowsInput } from '../runtime/registry.js';
import type { CommitResult, Journal, Lease } from '../journal/journal.js';
import type { WakeBus } from '../journal/wake-bus.js';

export interface WorkerOptions {
  workflows: WorkflowsInput;
  activities?: ActivitiesInput;
  journal: Journal;
  /** Queues this worker serves. Default ['default']. */
  queues?: string[];
  /** Most runs with a live actor at once. Default 1000. */
  concurrency?: number;
  leaseMs?: number;
  /** How often to look for due runs nobody told us about (timers, lost notifications, expired leases). */
  pollIntervalMs?: number;
  maxChildDepth?: number;
  /** Suspended runs kept live in memory (sticky execution). Default 10,000. */
  cacheCapacity?: number;
  inlineActivityBudgetMs?: number;
  logger?: Logger;
  workerId?: string;
  /** How long shutdown waits for running activities before releasing their runs. Default 10 s. */
  shutdownGraceMs?: number;
  /** Optional cross-worker wake-ups (Redis pub/sub), in addition to the journal's own notifications. */
  wakeBus?: WakeBus;
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
 * A long-lived worker: claims due runs from the journal, runs one XState actor per active run, routes wake-ups,
 * renews leases while activities run, and on shutdown finishes or releases what it holds.
 */
export class Worker {
  readonly workerId: string;
  readonly registry: Registry;
  readonly journal: Journal;
  readonly log: Logger;
  private readonly queues: string[];
  private readonly concurrency: number;
  private readonly leaseMs: number;
  private readonly pollIntervalMs: number;
  private readonly shutdownGraceMs: number;
  private readonly host: RunHost;
  private readonly system: Actor<typeof workerSystemMachine>;
  private readonly active = new Set<string>();
  private readonly acquiring = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private state: WorkerHealth['state'] = 'idle';
  private pollTimer: NodeJS.Timeout | null = null;
  private polling = false;
  private pollAgain = false;
  private unsubscribe: (() => void) | null = null;
  private unsubscribeBus: (() => void) | null = null;
  private readonly wakeBus: WakeBus | undefined;
  private stopped: Promise<void> | null = null;
  private resolveStopped: (() => void) | null = null;
  private readonly ended: Record<RunEndReason, number> = { closed: 0, suspended: 0, blocked: 0, lost: 0, failed: 0, stopped: 0 };
  private lastPollAt: number | null = null;
  private lastError: string | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(options: WorkerOptions) {
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.registry = new Registry(options.workflows, options.activities ?? []);
    this.journal = options.journal;
    this.queues = options.queues ?? ['default'];
    this.concurrency = options.concurrency ?? 1000;
    this.leaseMs = options.leaseMs ?? 30_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.shutdownGraceMs = options.shutdownGraceMs ?? 10_000;
    this.wakeBus = options.wakeBus;
    this.log = (options.logger ?? pino({ level: process.env.SKEIN_LOG_LEVEL ?? 'info' })).child({ workerId: this.workerId });
    const engineOptions: EngineOptions = {};
    if (options.maxChildDepth !== undefined) engineOptions.maxChildDepth = options.maxChildDepth;
    this.host = { journal: this.journal, registry: this.registry, engineOptions, cache: new EngineCache(options.cacheCapacity ?? 10_000) };
    const services: RunServices = {
      host: this.host,
      log: this.log,
      leaseMs: this.leaseMs,
      inlineActivityBudgetMs: options.inlineActivityBudgetMs ?? 20,
      afterCommit: (runId, result, timerAt, created) => this.afterCommit(runId, result, timerAt, created),
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

  /** Starts the worker and resolves when it has stopped (after shutdown(), or SIGTERM/SIGINT if `handleSignals`). */
  async run(options: { handleSignals?: boolean } = {}): Promise<void> {
    this.start();
    if (options.handleSignals) {
      const onSignal = (sig: string) => {
        this.log.info({ signal: sig }, 'shutting down');
        void this.shutdown();
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
    }
    await this.stopped;
  }

  /** Starts claiming and running runs; returns at once. */
  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.stopped = new Promise((r) => (this.resolveStopped = r));
    this.system.start();
    this.unsubscribe = this.journal.onWake((ids, kind) => {
      if (this.state !== 'running') return;
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
    this.log.info({ queues: this.queues, concurrency: this.concurrency }, 'worker started');
    this.schedulePoll(0);
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
    for (const slot of this.system.getSnapshot().context.runs.values()) {
      const lease = slot.actor?.getSnapshot().context.lease;
      if (lease) held.push(lease);
    }
    this.system.stop();
    // Whatever is still held goes back to the journal: another worker picks it up at once, nothing is lost.
    await Promise.allSettled(held.map((l) => this.journal.release(l)));
    this.state = 'stopped';
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

  private capacityLeft(): number {
    return this.concurrency - this.active.size - this.acquiring.size;
  }

  private runLease(lease: Lease, fresh?: FreshRun): void {
    if (this.state !== 'running') {
      void this.journal.release(lease);
      return;
    }
    this.active.add(lease.runId);
    this.system.send(fresh ? { type: 'RUN', lease, fresh } : { type: 'RUN', lease });
  }

  private async tryAcquire(runId: string): Promise<void> {
    if (this.state !== 'running' || this.active.has(runId) || this.acquiring.has(runId)) return;
    if (this.capacityLeft() <= 0) {
      this.schedulePoll(0);
      return;
    }
    this.acquiring.add(runId);
    try {
      const run = await this.journal.getRun(runId);
      if (!run || run.status !== 'running' || !this.queues.includes(run.queue)) return;
      const lease = await this.journal.acquire(runId, this.workerId, this.leaseMs);
      if (lease) this.runLease(lease);
    } catch (err) {
      this.noteError(err);
    } finally {
      this.acquiring.delete(runId);
      this.checkIdle();
    }
  }

  private afterCommit(runId: string, result: CommitResult, timerAt: number | null, created: FreshRun[]): void {
    const elsewhere: string[] = [];
    const specs = new Map(created.map((c) => [c.runId, c]));
    for (const l of result.childLeases) {
      if (this.capacityLeft() > 0) this.runLease(l, specs.get(l.runId));
      else {
        // Due now: another worker (or our next poll) takes it.
        void this.journal.release(l);
        elsewhere.push(l.runId);
      }
    }
    if (result.wokeParent) {
      // Straight through the actor system when the parent lives here; the bus tells other workers otherwise.
      if (!this.active.has(result.wokeParent)) elsewhere.push(result.wokeParent);
      this.system.send({ type: 'WAKE', runIds: [result.wokeParent] });
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
        this.system.send({ type: 'WAKE', runIds: [runId] });
      }, delay);
      t.unref?.();
      this.timers.set(runId, t);
    }
  }

  private onEnded(runId: string, reason: RunEndReason, wakePending: boolean): void {
    this.active.delete(runId);
    this.ended[reason]++;
    if (reason === 'failed') this.schedulePoll(this.pollIntervalMs);
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
    try {
      const limit = this.capacityLeft();
      if (limit > 0) {
        const leases = await this.journal.claimDue({ owner: this.workerId, queues: this.queues, limit, leaseMs: this.leaseMs });
        this.lastPollAt = Date.now();
        for (const l of leases) this.runLease(l);
        full = leases.length === limit;
      } else {
        this.pollAgain = true;
      }
      this.lastError = null;
    } catch (err) {
      this.noteError(err);
    } finally {
      this.polling = false;
    }
    this.schedulePoll(full ? 0 : this.pollIntervalMs);
  }

  private noteError(err: unknown): void {
    this.lastError = err instanceof Error ? err.message : String(err);
    this.log.warn({ err }, 'journal call failed; will retry');
  }
}
