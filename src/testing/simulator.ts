import {
  activateRun,
  block,
  EngineCache,
  freshEngine,
  isBlocking,
  loadEngine,
  LocalWork,
  type ActivationHost,
  type ActivityCall,
  type CreatedChildren,
  type FreshRun,
  type RunHost,
} from '../actors/activation.js';
import { runActivity } from '../runtime/activities.js';
import type { AbortLatch } from '../runtime/abort-latch.js';
import type { WorkflowDef } from '../runtime/commands.js';
import type { EngineOptions, ActivityTask, RunEngine } from '../runtime/engine.js';
import { ActivityAbortedError, LeaseLostError, serializeError } from '../runtime/errors.js';
import type { JournalEvent, NewEvent } from '../runtime/events.js';
import { Registry, type ActivitiesInput, type WorkflowsInput } from '../runtime/registry.js';
import { journalValue } from '../runtime/json.js';
import type { CommitResult, Lease, RunRecord } from '../journal/journal.js';
import { ManualClock, MemoryJournal } from '../journal/memory.js';

/**
 * A deterministic, single-threaded host for runs on the in-memory journal: one simulated worker. Instead of a
 * worker's event loop, the caller decides what happens next: which run activates, which in-flight activity finishes,
 * when the worker "crashes" (every live engine, lease and in-flight activity is lost), how far the clock moves. The
 * same choices always produce the same journals, which is what the property tests and the user-facing fuzzer rely on.
 *
 * Design boundary: an activation is not simulated, it is the worker's own (actors/activation.ts `activateRun`,
 * through an ActivationHost): local work, eager activities, inline children, stalls, commits. This module owns only
 * what a worker's run actors and event loop own: which runs it holds (their leases, engines and local work), when an
 * activity finishes (scripted, on the virtual clock) and when a timer wakes a run.
 *
 *  - A run is *held* from the activation that leases it (or the commit that creates it, as the journal leases a
 *    commit's new children to its committer) until a commit releases it: while its activities run here, as a run
 *    actor in 'working' holds its lease. Held runs wake on their own timers (the worker's local timers).
 *  - An activity either finishes within the activation that started it (`quickActivity`: a worker's eager activities
 *    and inline children journal it in the same commit), or later, when the scheduler performs it.
 *  - A crash drops every held run (their leases are released, which models them expiring), cached engine and
 *    in-flight activity; runs resume by replay.
 */

/** A scripted activity outcome; `closedAt` (default: the clock's time when it finishes) replays a journaled one. */
export type ActivityOutcome = ({ ok: true; value: unknown } | { ok: false; error: { name: string; message: string; details?: unknown } }) & { closedAt?: number };

/** One activity call, as the simulator's scripts see it. */
export interface SimActivityCall {
  runId: string;
  workflowId: string;
  path: string;
  name: string;
  input: unknown;
}

export interface SimulationOptions {
  workflows: WorkflowsInput;
  activities?: ActivitiesInput;
  engine?: EngineOptions;
  clock?: ManualClock;
  /** Sticky cache size; 0 forces a full replay on every activation (also of runs held while their activities run). */
  cacheCapacity?: number;
  /**
   * Decides an activity's outcome instead of running its function (fuzzing). Return undefined to run the real
   * function. Must be a pure function of its argument for schedules to be reproducible.
   */
  activityOutcome?: (call: SimActivityCall) => ActivityOutcome | undefined;
  /**
   * Whether a call finishes within the activation that starts it (a worker's eager activities: its result is
   * journaled in the same commit). Default: none does; each finishes when the scheduler performs it. Must be a pure
   * function of its argument.
   */
  quickActivity?: (call: SimActivityCall) => boolean;
  /**
   * Run the children an activation starts inline, in the parent's activation (a worker's `inlineChildBudgetMs`):
   * a child that closes with quick activities only is committed closed with its parent; otherwise its first
   * activation is handed over, uncommitted, to its own run. Default false.
   */
  inlineChildren?: boolean;
  /** How many runs the simulated worker holds at most (bounds inline children). Default unbounded. */
  capacity?: number;
}

/** Something the simulation can do next. */
export type SimAction = { kind: 'activate'; runId: string } | { kind: 'activity'; runId: string; path: string; name: string };

const OWNER = 'simulator';
/** Leases never expire on their own in a simulation: the simulated worker renews them (a crash releases them). */
const LEASE_MS = 1e12;

/** A run the simulated worker holds: what a worker's run actor keeps in its context. */
interface Held {
  lease: Lease;
  engine: RunEngine | null;
  work: LocalWork;
  fresh: FreshRun | undefined;
  /** News from outside (a wake-up) since the last activation. */
  wake: boolean;
  activations: number;
  /** Its next durable timer, as its last commit said (a worker arms a local timer for it). */
  timerAt: number | null;
}

/** An activity running "in this process", finished when the scheduler performs it. */
interface InFlight {
  task: ActivityTask;
  promise: Promise<NewEvent>;
  resolve: (d: NewEvent) => void;
  /** Told of retried attempts when it runs (OpenTelemetry attempt spans, through the activation's runner). */
  onRetry?: RetryListener;
}

type RetryListener = NonNullable<ActivityCall['onRetry']>;

export class Simulation {
  readonly clock: ManualClock;
  readonly journal: MemoryJournal;
  readonly registry: Registry;
  readonly host: RunHost;
  /** Runs woken (by the journal, a signal, a crash) that this worker does not hold. */
  private readonly woken = new Set<string>();
  private readonly held = new Map<string, Held>();
  /** Activities in flight, per run and path. */
  private readonly inflight = new Map<string, Map<string, InFlight>>();
  /** Quick activities being computed (awaited within the activation that started them). */
  private readonly quick = new Set<Promise<NewEvent>>();
  private readonly activation: ActivationHost;
  /** Activations that ran, per run (not counting replays). */
  readonly activations = new Map<string, number>();
  /**
   * Every execution of an activity (its effect in the world), by run and call path: the outcome each produced. An
   * activity runs at least once; its journaled result must be one of these (the fuzzer checks it).
   */
  readonly effects = new Map<string, NewEvent[]>();
  crashes = 0;

  constructor(private readonly options: SimulationOptions) {
    this.clock = options.clock ?? new ManualClock();
    this.journal = new MemoryJournal(this.clock);
    this.registry = new Registry(options.workflows, options.activities ?? []);
    this.host = {
      journal: this.journal,
      registry: this.registry,
      engineOptions: options.engine ?? {},
      cache: new EngineCache(options.cacheCapacity ?? 10_000),
    };
    const capacity = options.capacity ?? Infinity;
    this.activation = {
      host: this.host,
      log: { warn: () => {} },
      // Budgets are on the virtual clock, which does not move within an activation: what finishes "in time" is what
      // the scripts say is quick (see settle).
      inlineActivityBudgetMs: options.quickActivity ? 1 : 0,
      inlineChildBudgetMs: options.inlineChildren ? 1 : 0,
      queues: { includes: () => true },
      capacityLeft: () => capacity - this.held.size,
      afterCommit: (runId, result, timerAt, created) => this.afterCommit(runId, result, timerAt, created),
      runActivity: (runId, task, call) => this.startActivity(runId, task, call?.signal, call?.onRetry),
      settle: (p) => this.settle(p),
      budgetNow: () => this.clock.now(),
      // Every name runs here: scripted outcomes need no function, and an unknown one fails (UnknownActivityError)
      // instead of stalling the run, which a test host would only see as a run that never finishes.
      hasActivity: () => true,
    };
    // The journal says which runs became due because of another run (new children, parents woken by a close, a
    // signal); a run closed from outside is dropped, as a worker stops its actor.
    this.journal.onWake((ids, kind) => {
      if (kind === 'closed') return;
      for (const id of ids) {
        const h = this.held.get(id);
        if (h && kind === 'stop') this.drop(id);
        else if (h) h.wake = true;
        else this.woken.add(id);
      }
    });
  }

  /** Starts a root run with a chosen run id (so that ids are the same across simulations). */
  async start<I>(wf: WorkflowDef<I, unknown>, input: I, opts: { workflowId?: string; runId?: string; queue?: string } = {}): Promise<string> {
    this.registry.addWorkflow(wf as WorkflowDef);
    const workflowId = opts.workflowId ?? `${wf.name}-${this.journal.allRuns().length + 1}`;
    const { run } = await this.journal.startRun({
      runId: opts.runId ?? `run-${workflowId}`,
      workflowId,
      workflow: wf.name,
      input,
      queue: opts.queue ?? 'default',
    });
    this.woken.add(run.runId);
    return run.runId;
  }

  /** Everything that could happen next, in a canonical order (so a choice index means the same thing every time). */
  actions(): SimAction[] {
    const now = this.clock.now();
    const out: SimAction[] = [];
    const due = new Set(this.woken);
    for (const [id, h] of this.held) {
      if (h.wake || h.activations === 0 || h.work.hasReady || (h.timerAt !== null && h.timerAt <= now)) due.add(id);
    }
    for (const r of this.journal.peekRuns()) {
      // Timers (and runs whose lease lapsed): a run whose wake-up time has come is due even though nobody woke it.
      if (r.status !== 'running' || this.held.has(r.runId) || r.nextWakeupAt === null || r.nextWakeupAt > now) continue;
      if (r.leaseOwner !== null && (r.leaseExpiresAt ?? 0) > now) continue; // someone else holds it
      due.add(r.runId);
    }
    for (const id of [...due].sort()) {
      if (this.runRecord(id)?.status === 'running') out.push({ kind: 'activate', runId: id });
    }
    for (const [runId, tasks] of [...this.inflight.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
      // A run closed by someone else (cancelled by its parent's close) has no use for its activities' results.
      if (!this.held.has(runId) || this.runRecord(runId)?.status !== 'running') continue;
      for (const t of [...tasks.values()].map((f) => f.task).sort((a, b) => (a.path < b.path ? -1 : 1))) {
        out.push({ kind: 'activity', runId, path: t.path, name: t.name });
      }
    }
    return out;
  }

  /** Performs one action. An activity finishing is followed by its run's activation, as ACTIVITY_DONE is in a worker. */
  async perform(a: SimAction): Promise<void> {
    if (a.kind === 'activate') {
      await this.activate(a.runId);
      return;
    }
    const f = this.inflight.get(a.runId)?.get(a.path);
    if (!f) throw new Error(`no pending activity at ${a.runId} ${a.path}`);
    this.inflight.get(a.runId)!.delete(a.path);
    f.resolve(await this.finishActivity(a.runId, f.task, f.onRetry));
    await f.promise; // (the run's local work has the result once this resumes: its callback was registered first)
    await this.activate(a.runId);
  }

  /** The worker dies: every held run, live engine, lease and in-flight activity is gone; the journal stays. */
  crash(): void {
    this.crashes++;
    this.host.cache.clear();
    for (const [runId, h] of this.held) {
      // The lease would expire; releasing it now stands for that. (The memory journal clears it synchronously.)
      void this.journal.release(h.lease);
      // Runs with unfinished work are due again; on activation the engine, rebuilt by replay, reports the activities
      // that must run again. (A run created and never activated is due anyway.)
      if (h.work.size || h.work.hasReady || h.wake) this.woken.add(runId);
      h.work.stop(new ActivityAbortedError('the worker crashed'));
    }
    this.held.clear();
    this.inflight.clear();
  }

  /**
   * The next time a timer wakes a run, after now: a held run's own timer, or a free run's wake-up time. Null when
   * no run waits on one.
   */
  nextTimer(): number | null {
    const now = this.clock.now();
    let next = Infinity;
    for (const r of this.journal.peekRuns()) {
      if (r.status === 'running' && !this.held.has(r.runId) && r.nextWakeupAt !== null && r.nextWakeupAt > now) next = Math.min(next, r.nextWakeupAt);
    }
    for (const h of this.held.values()) if (h.timerAt !== null && h.timerAt > now) next = Math.min(next, h.timerAt);
    return Number.isFinite(next) ? next : null;
  }

  /** Moves the clock to the next timer, if any run waits on one. Returns false when none does. */
  advanceToNextTimer(): boolean {
    const next = this.nextTimer();
    if (next === null) return false;
    this.clock.set(next);
    return true;
  }

  /**
   * Runs until nothing can happen, choosing each next action with `choose` (default: the first). Between actions
   * the clock advances by `tick()` ms (default 1); returns the number of actions performed.
   */
  async runUntilIdle(opts: { choose?: (n: number) => number; tick?: () => number; crashBefore?: () => boolean; maxSteps?: number } = {}): Promise<number> {
    const choose = opts.choose ?? (() => 0);
    const max = opts.maxSteps ?? 100_000;
    let steps = 0;
    for (;;) {
      const acts = this.actions();
      if (!acts.length) {
        if (this.advanceToNextTimer()) continue;
        return steps;
      }
      if (++steps > max) throw new Error(`simulation did not settle within ${max} steps`);
      if (opts.crashBefore?.()) this.crash();
      const acts2 = this.crashes ? this.actions() : acts;
      if (!acts2.length) continue;
      const a = acts2[Math.abs(choose(acts2.length)) % acts2.length]!;
      await this.perform(a);
      this.clock.advance(opts.tick ? opts.tick() : 1);
    }
  }

  async run(runId: string): Promise<RunRecord> {
    const r = await this.journal.getRun(runId);
    if (!r) throw new Error(`unknown run ${runId}`);
    return r;
  }

  async history(runId: string): Promise<JournalEvent[]> {
    return this.journal.readEvents(runId);
  }

  /** What a crash now would lose: live engines (cached, or of held runs) and activities in flight. */
  get live(): { engines: number; inflight: number } {
    let inflight = 0;
    for (const m of this.inflight.values()) inflight += m.size;
    let engines = this.host.cache.size;
    for (const h of this.held.values()) if (h.engine) engines++;
    return { engines, inflight };
  }

  // ---------------------------------------------------------------------------------------------------------------

  private runRecord(runId: string): Readonly<RunRecord> | undefined {
    return this.journal.peekRun(runId);
  }

  private call(runId: string, task: ActivityTask): SimActivityCall {
    return { runId, workflowId: this.runRecord(runId)?.workflowId ?? runId, path: task.path, name: task.name, input: task.input };
  }

  /** The host's "run this activity now": quick ones are computed at once, the others wait for the scheduler. */
  private startActivity(runId: string, task: ActivityTask, signal?: AbortLatch, onRetry?: RetryListener): Promise<NewEvent> {
    if (this.options.quickActivity?.(this.call(runId, task))) {
      const p = this.finishActivity(runId, task, onRetry);
      this.quick.add(p);
      void p.finally(() => this.quick.delete(p));
      return p;
    }
    let resolve!: (d: NewEvent) => void;
    const promise = new Promise<NewEvent>((r) => (resolve = r));
    let m = this.inflight.get(runId);
    if (!m) this.inflight.set(runId, (m = new Map()));
    m.set(task.path, { task, promise, resolve, ...(onRetry ? { onRetry } : {}) });
    // Aborted (a graceful cancel of its run): it ends at once, failed with the reason, as runActivity ends it.
    signal?.onAbort((reason) => {
      if (this.inflight.get(runId)?.get(task.path)?.promise !== promise) return;
      this.inflight.get(runId)!.delete(task.path);
      resolve(this.record(runId, task.path, { type: 'ActivityFailed', payload: { path: task.path, error: serializeError(reason), closedAt: this.clock.now(), attempts: 1 } }));
    });
    return promise;
  }

  /** The budget ends when every quick activity has finished: whatever is still in flight is not within it. */
  private async settle(p: Promise<unknown>): Promise<void> {
    await Promise.race([p, Promise.all([...this.quick])]);
  }

  private async finishActivity(runId: string, task: ActivityTask, onRetry?: RetryListener): Promise<NewEvent> {
    return this.record(runId, task.path, await this.execute(runId, task, onRetry));
  }

  private record(runId: string, path: string, d: NewEvent): NewEvent {
    const key = `${runId}\u0000${path}`;
    const seen = this.effects.get(key);
    if (seen) seen.push(d);
    else this.effects.set(key, [d]);
    return d;
  }

  private async execute(runId: string, task: ActivityTask, onRetry?: RetryListener): Promise<NewEvent> {
    const scripted = this.options.activityOutcome?.(this.call(runId, task));
    if (scripted) {
      const closedAt = scripted.closedAt ?? this.clock.now();
      return scripted.ok
        ? // Round-tripped like a real result, so live code sees what its replay will see.
          { type: 'ActivityCompleted', payload: { path: task.path, result: journalValue(scripted.value ?? null, `result of activity '${task.name}'`), closedAt, attempts: 1 } }
        : { type: 'ActivityFailed', payload: { path: task.path, error: serializeError(Object.assign(new Error(scripted.error.message), scripted.error)), closedAt, attempts: 1 } };
    }
    return runActivity(this.registry, task, { clock: this.clock, delay: async () => {}, run: { runId, workflowId: this.call(runId, task).workflowId }, ...(onRetry ? { onRetry } : {}) });
  }

  /** What a worker does after a commit: run the children leased to it, arm the run's timer. */
  private afterCommit(runId: string, result: CommitResult, timerAt: number | null, created: CreatedChildren): void {
    for (const lease of result.childLeases) {
      const fresh = created(lease.runId);
      const work = fresh?.prepared?.work ?? new LocalWork(() => {});
      work.setListener(() => {});
      this.held.set(lease.runId, { lease, engine: fresh?.prepared?.engine ?? null, work, fresh, wake: false, activations: 0, timerAt: null });
      this.woken.delete(lease.runId);
    }
    const h = this.held.get(runId);
    if (h) h.timerAt = timerAt;
  }

  private drop(runId: string): void {
    this.held.get(runId)?.work.stop(new ActivityAbortedError('its run stopped in the simulated worker'));
    this.held.delete(runId);
    this.inflight.delete(runId);
    this.host.cache.delete(runId);
  }

  private count(runId: string): void {
    this.activations.set(runId, (this.activations.get(runId) ?? 0) + 1);
  }

  /** A run actor's life in one call: take the run (lease, engine), activate it, and keep it or let it go. */
  private async activate(runId: string): Promise<void> {
    this.woken.delete(runId);
    let h = this.held.get(runId);
    if (!h) {
      const lease = await this.journal.acquire(runId, OWNER, LEASE_MS);
      if (!lease) return;
      h = { lease, engine: null, work: new LocalWork(() => {}), fresh: undefined, wake: false, activations: 0, timerAt: null };
      this.held.set(runId, h);
    }
    if (!h.engine) {
      try {
        h.engine = h.fresh ? freshEngine(this.host, h.fresh) : await loadEngine(this.host, (await this.journal.getRun(runId))!);
      } catch (err) {
        // Changed code (or a corrupt journal) shows up when the run is rebuilt by replay: block it, as a run actor
        // does, instead of failing the activation and leaving the run to be retried forever.
        if (!isBlocking(err)) throw err;
        await block(this.host, h.lease, (await this.journal.getRun(runId))!.lastSeq, err);
        this.count(runId);
        this.drop(runId);
        return;
      }
    }
    const engine = h.engine;
    // Signals and cancel requests arrive with a wake-up; a run created by this worker has none yet.
    const checkInbox = h.wake || (h.activations === 0 && !h.fresh && h.lease.inboxPending !== false);
    h.wake = false;
    h.activations++;
    h.fresh = undefined; // (known without a read only until its first commit)
    let result;
    try {
      result = await activateRun(this.activation, { runId, lease: h.lease, engine, work: h.work, checkInbox });
      // Quick activities started after the commit finish now, before the next action: schedules stay deterministic.
      while (this.quick.size) await Promise.all([...this.quick]);
    } catch (err) {
      if (!(err instanceof LeaseLostError)) throw err;
      // Taken over or voided (a graceful cancel voids the lease and wakes the run): start over from the journal.
      this.drop(runId);
      this.woken.add(runId);
      return;
    } finally {
      this.count(runId);
    }
    if (this.held.get(runId) !== h) return; // stopped from outside meanwhile
    if (result.kind === 'blocked' || engine.closed) {
      this.drop(runId);
      return;
    }
    // With the cache off, a held run is rebuilt by replay at its next activation too: every activation replays.
    if (this.options.cacheCapacity === 0) h.engine = null;
    if (result.released) {
      this.host.cache.put(runId, engine);
      this.held.delete(runId);
      this.inflight.delete(runId);
      // News that came in during the activation is handled by the next holder.
      if (h.wake || h.work.hasReady) this.woken.add(runId);
    }
  }
}
