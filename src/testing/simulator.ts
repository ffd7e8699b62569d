import { EngineCache, block, isBlocking, step, loadEngine, type RunHost } from '../actors/activation.js';
import { runActivity } from '../runtime/activities.js';
import type { WorkflowDef } from '../runtime/commands.js';
import type { EngineOptions, ActivityTask, RunEngine } from '../runtime/engine.js';
import { serializeError } from '../runtime/errors.js';
import type { JournalEvent, NewEvent } from '../runtime/events.js';
import { Registry, type ActivitiesInput, type WorkflowsInput } from '../runtime/registry.js';
import { journalValue } from '../runtime/json.js';
import type { RunRecord } from '../journal/journal.js';
import { ManualClock, MemoryJournal } from '../journal/memory.js';

/**
 * A deterministic, single-threaded host for runs on the in-memory journal. Instead of a worker's event loop, the
 * caller decides what happens next: which woken run activates, which pending activity finishes, when the worker
 * "crashes" (every live engine and lease is lost), how far the clock moves. The same choices always produce the same
 * journals, which is what the property tests and the user-facing fuzzer rely on.
 */

export type ActivityOutcome = { ok: true; value: unknown } | { ok: false; error: { name: string; message: string; details?: unknown } };

export interface SimulationOptions {
  workflows: WorkflowsInput;
  activities?: ActivitiesInput;
  engine?: EngineOptions;
  clock?: ManualClock;
  /** Sticky cache size; 0 forces a full replay on every activation. */
  cacheCapacity?: number;
  /**
   * Decides an activity's outcome instead of running its function (fuzzing). Return undefined to run the real
   * function. Must be a pure function of its argument for schedules to be reproducible.
   */
  activityOutcome?: (call: { runId: string; workflowId: string; path: string; name: string; input: unknown }) => ActivityOutcome | undefined;
}

/** Something the simulation can do next. */
export type SimAction = { kind: 'activate'; runId: string } | { kind: 'activity'; runId: string; path: string; name: string };

const OWNER = 'simulator';
const LEASE_MS = 60_000;

export class Simulation {
  readonly clock: ManualClock;
  readonly journal: MemoryJournal;
  readonly registry: Registry;
  readonly host: RunHost;
  private readonly woken = new Set<string>();
  /** Activities issued and not finished, per run and path. */
  private readonly pending = new Map<string, Map<string, ActivityTask>>();
  /** Activations that ran, per run (not counting replays). */
  readonly activations = new Map<string, number>();
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
    // The journal says which runs became due because of another run (new children, parents woken by a close).
    this.journal.onWake((ids, kind) => {
      if (kind !== 'closed') ids.forEach((id) => this.woken.add(id));
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
    for (const r of this.journal.peekRuns()) {
      // Timers: a run whose wake-up time has come is due even though nobody woke it.
      if (r.status === 'running' && r.nextWakeupAt !== null && r.nextWakeupAt <= now && !this.pending.get(r.runId)?.size) due.add(r.runId);
    }
    for (const id of [...due].sort()) {
      const r = this.runRecord(id);
      if (r && r.status === 'running') out.push({ kind: 'activate', runId: id });
    }
    for (const [runId, tasks] of [...this.pending.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
      // A run closed by someone else (cancelled by its parent's close) has no use for its activities' results.
      if (this.runRecord(runId)?.status !== 'running') continue;
      for (const t of [...tasks.values()].sort((a, b) => (a.path < b.path ? -1 : 1))) out.push({ kind: 'activity', runId, path: t.path, name: t.name });
    }
    return out;
  }

  /** Performs one action. */
  async perform(a: SimAction): Promise<void> {
    if (a.kind === 'activate') {
      this.woken.delete(a.runId);
      await this.activate(a.runId, []);
      return;
    }
    const tasks = this.pending.get(a.runId);
    const task = tasks?.get(a.path);
    if (!task) throw new Error(`no pending activity at ${a.runId} ${a.path}`);
    tasks!.delete(a.path);
    const delivery = await this.finishActivity(a.runId, task);
    await this.activate(a.runId, [delivery]);
  }

  /** The worker dies: every live engine, lease and in-memory result is gone; the journal stays. */
  crash(): void {
    this.crashes++;
    this.host.cache.clear();
    // Runs with unfinished activities become due again (their lease would expire); on activation the engine,
    // rebuilt by replay, reports the activities that must run again.
    // (A run whose activities have all finished keeps an empty entry here; it has nothing to redo.)
    for (const [runId, tasks] of this.pending) if (tasks.size) this.woken.add(runId);
    this.pending.clear();
  }

  /** Moves the clock to the next timer, if any run waits on one. Returns false when none does. */
  advanceToNextTimer(): boolean {
    let next = Infinity;
    for (const r of this.journal.peekRuns()) if (r.status === 'running' && r.nextWakeupAt !== null) next = Math.min(next, r.nextWakeupAt);
    if (!Number.isFinite(next) || next <= this.clock.now()) return false;
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

  private runRecord(runId: string): Readonly<RunRecord> | undefined {
    return this.journal.peekRun(runId);
  }

  private async finishActivity(runId: string, task: ActivityTask): Promise<NewEvent> {
    const r = this.runRecord(runId)!;
    const scripted = this.options.activityOutcome?.({ runId, workflowId: r.workflowId, path: task.path, name: task.name, input: task.input });
    if (scripted) {
      const closedAt = this.clock.now();
      return scripted.ok
        ? // Round-tripped like a real result, so live code sees what its replay will see.
          { type: 'ActivityCompleted', payload: { path: task.path, result: journalValue(scripted.value ?? null, `result of activity '${task.name}'`), closedAt, attempts: 1 } }
        : { type: 'ActivityFailed', payload: { path: task.path, error: serializeError(Object.assign(new Error(scripted.error.message), scripted.error)), closedAt, attempts: 1 } };
    }
    return runActivity(this.registry, task, { clock: this.clock, delay: async () => {} });
  }

  private async activate(runId: string, local: NewEvent[]): Promise<void> {
    const lease = await this.journal.acquire(runId, OWNER, LEASE_MS);
    if (!lease) return;
    const run = (await this.journal.getRun(runId))!;
    let engine: RunEngine;
    try {
      engine = await loadEngine(this.host, run);
    } catch (err) {
      // Changed code (or a corrupt journal) shows up when the run is rebuilt by replay: block it, as step() does
      // for the same errors, instead of failing the activation and leaving the run to be retried forever.
      if (!isBlocking(err)) throw err;
      await block(this.host, lease, run.lastSeq, err);
      this.activations.set(runId, (this.activations.get(runId) ?? 0) + 1);
      this.host.cache.delete(runId);
      this.pending.delete(runId);
      return;
    }
    const result = await step(this.host, lease, engine, local, { releaseWhenIdle: true, leaseChildren: false });
    await this.journal.release(lease);
    this.activations.set(runId, (this.activations.get(runId) ?? 0) + 1);
    if (result.kind !== 'committed' || engine.closed) {
      this.host.cache.delete(runId);
      this.pending.delete(runId);
      return;
    }
    this.host.cache.put(runId, engine);
    // Activities to run: the ones issued now, plus any the journal shows unfinished (after a crash).
    let tasks = this.pending.get(runId);
    for (const t of engine.openActivities()) {
      if (!tasks) this.pending.set(runId, (tasks = new Map()));
      if (!tasks.has(t.path)) tasks.set(t.path, t);
    }
  }
}
