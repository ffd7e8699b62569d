import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { signalName, type SignalDef, type WorkflowDef } from '../runtime/commands.js';
import { SkeinError, WorkflowFailedError } from '../runtime/errors.js';
import type { ActivityDef } from '../runtime/commands.js';
import type { ActivityFn, ActivitiesInput, WorkflowsInput } from '../runtime/registry.js';
import { isOpen, type CancelResult, type RunRecord } from '../journal/journal.js';
import { ManualClock, type MemoryJournal } from '../journal/memory.js';
import { Client, type ExportedHistory, type RunDescription, type RunRef } from '../client/client.js';
import { Simulation, type SimAction } from './simulator.js';
import { Entropy, instrument, prng } from './entropy.js';
import { closest } from './suggest.js';

/**
 * A test environment for users' own workflows: the in-memory journal, a virtual clock and the deterministic
 * simulator, behind an API shaped like the Client's. Nothing waits in real time: an activity "runs" when the
 * environment performs it, and a timer fires when the virtual clock reaches it, so a day-long `sleep` finishes as
 * soon as `result()` (or `skipTime()`) has nothing else to do.
 */

export interface TestEnvOptions {
  /** Every workflow a run may start (roots and children). */
  workflows: WorkflowsInput;
  /** Activity implementations (replace one per test with `mockActivity`). */
  activities?: ActivitiesInput;
  /**
   * Picks which ready action goes next (an activation, an activity finishing). Without a seed the environment always
   * takes the first ready action in canonical order; with one, a seeded choice. Either way, the same seed gives the
   * same schedule and the same journals (given deterministic activities). Also seeds `random()` and `uuid()`.
   */
  seed?: number;
  maxChildDepth?: number;
  /** Virtual epoch ms at which the clock starts. Default 1_700_000_000_000. */
  startTime?: number;
  /** Virtual ms the clock moves after each action. Default 0: time only moves when you (or `result()`) skip it. */
  stepMs?: number;
  /** Sticky engine cache size. 0 rebuilds every run by replay on every activation (a cheap determinism check). */
  cacheCapacity?: number;
  /** Bound on actions per `result()` / `runUntilIdle()` / `skipTime()` call, against runaway workflows. Default 100_000. */
  maxSteps?: number;
}

export interface EnvStartOptions {
  /** Default `${workflow}-${n}` (n counts starts in this environment), so ids are stable from run to run. */
  workflowId?: string;
}

export class TestEnv {
  readonly simulation: Simulation;
  readonly clock: ManualClock;
  readonly client: Client;
  readonly seed: number | undefined;
  private readonly entropy: Entropy;
  /** Instrumented workflows by name, and the user's own definitions they wrap. */
  private readonly defs = new Map<string, WorkflowDef>();
  private readonly originals = new Map<string, WorkflowDef>();
  private readonly choose: (n: number) => number;
  private readonly stepMs: number;
  private readonly maxSteps: number;
  private starts = 0;

  constructor(options: TestEnvOptions) {
    this.seed = options.seed;
    this.clock = new ManualClock(options.startTime);
    this.entropy = new Entropy({ seed: options.seed ?? 0, clock: this.clock });
    for (const wf of Array.isArray(options.workflows) ? options.workflows : Object.values(options.workflows)) {
      const def = wf as WorkflowDef;
      const prev = this.originals.get(def.name);
      if (prev && prev !== def) throw new TypeError(`createTestEnv: two different workflows are named '${def.name}'`);
      this.originals.set(def.name, def);
      this.defs.set(def.name, this.wrap(def));
    }
    this.simulation = new Simulation({
      workflows: [...this.defs.values()],
      activities: options.activities ?? [],
      engine: options.maxChildDepth !== undefined ? { maxChildDepth: options.maxChildDepth } : {},
      clock: this.clock,
      cacheCapacity: options.cacheCapacity ?? 1000,
    });
    this.client = new Client(this.simulation.journal);
    // Its own stream, not the one random()/uuid() draw from (seeded with the same number).
    const rand = options.seed === undefined ? null : prng(options.seed ^ 0x2545f491);
    this.choose = rand ? (n) => Math.floor(rand() * n) : () => 0;
    this.stepMs = options.stepMs ?? 0;
    this.maxSteps = options.maxSteps ?? 100_000;
  }

  get journal(): MemoryJournal {
    return this.simulation.journal;
  }

  /** The virtual time, epoch ms. */
  now(): number {
    return this.clock.now();
  }

  /** Starts a root run. Idempotent by workflow id, like `Client.start`. */
  async start<I, O>(wf: WorkflowDef<I, O> | string, input: I, options: EnvStartOptions = {}): Promise<RunRef<O>> {
    const def = this.resolve(wf);
    const workflowId = options.workflowId ?? `${def.name}-${++this.starts}`;
    const existing = await this.journal.getRunByWorkflowId(workflowId);
    const runId = await this.simulation.start(def, input, { workflowId });
    return { runId, workflowId, workflow: def.name, created: !existing };
  }

  /**
   * Drives the simulation (every run, not only this one) until the run closes, skipping virtual time whenever
   * nothing else is ready. Returns the result or throws WorkflowFailedError, as `Client.result` does (a run blocked
   * by a NonDeterminismError throws too, with that error as the cause).
   */
  async result<O>(ref: RunRef<O> | string): Promise<O> {
    const runId = typeof ref === 'string' ? ref : ref.runId;
    for (let steps = 0; ; steps++) {
      const run = await this.client.getRun(runId);
      if (run.status === 'completed') return run.result as O;
      if (run.status === 'blocked') throw new WorkflowFailedError(runId, 'is blocked', run.error ?? undefined);
      if (!isOpen(run.status)) throw new WorkflowFailedError(runId, run.status, run.error ?? undefined);
      if (steps >= this.maxSteps) throw new SkeinError(`run ${runId} did not close within ${this.maxSteps} simulation steps`);
      const acted = await this.step();
      if (acted) continue;
      if (this.simulation.advanceToNextTimer()) continue;
      throw await this.stuck(run);
    }
  }

  /** `start` then `result`. */
  async execute<I, O>(wf: WorkflowDef<I, O> | string, input: I, options: EnvStartOptions = {}): Promise<O> {
    return this.result(await this.start(wf, input, options));
  }

  /**
   * Performs every ready action (activations, activities) until none is left, without moving the clock to the next
   * timer. Returns how many actions ran.
   */
  async runUntilIdle(): Promise<number> {
    let n = 0;
    while (await this.step()) {
      if (++n > this.maxSteps) throw new SkeinError(`the simulation did not go idle within ${this.maxSteps} steps`);
    }
    return n;
  }

  /**
   * Moves virtual time forward by `ms`, firing every timer that falls due on the way, in order, at its own time (so
   * a timer due at +5 s fires with the clock at +5 s even when you advance by an hour).
   */
  async advance(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`advance(ms): ms must be a finite number >= 0, got ${ms}`);
    const target = this.clock.now() + ms;
    await this.runUntilIdle();
    for (;;) {
      const next = this.nextTimer();
      if (next === null || next > target) break;
      this.clock.set(next);
      await this.runUntilIdle();
    }
    this.clock.set(target);
    await this.runUntilIdle();
  }

  /**
   * Runs until nothing is ready and no timer is pending, jumping the clock from timer to timer. Returns the virtual
   * ms skipped. Bounded by `maxSteps`, so a workflow that sleeps in an endless loop fails instead of hanging.
   */
  async skipTime(): Promise<number> {
    const from = this.clock.now();
    let jumps = 0;
    for (;;) {
      await this.runUntilIdle();
      if (!this.simulation.advanceToNextTimer()) return this.clock.now() - from;
      if (++jumps > this.maxSteps) throw new SkeinError(`skipTime(): timers kept firing for ${this.maxSteps} jumps`);
    }
  }

  /**
   * Replaces an activity's implementation (keeping its retry policy). Returns a function that restores the old one.
   * The activity must be registered (`activities` of createTestEnv): a mock of a name nothing registers would never
   * run (a typo such as 'chargeCrad' would leave the real activity in place), so it throws instead.
   */
  mockActivity(name: string, fn: ActivityFn): () => void {
    const registry = this.simulation.registry;
    if (!registry.hasActivity(name)) {
      const near = closest(name, registry.activityNames());
      throw new TypeError(
        `mockActivity('${name}'): no activity of that name is registered in this environment${near ? ` (did you mean '${near}'?)` : ''}; ` +
          `register it in createTestEnv({ activities })`,
      );
    }
    const previous: ActivityDef = registry.activity(name);
    registry.replaceActivity(name, fn);
    return () => registry.addActivity(previous);
  }

  /** Sends a signal to a run (it is delivered when the run next activates; see runUntilIdle/result). */
  signal<T>(runId: string, signal: SignalDef<T>, payload: T, options?: { signalId?: string }): Promise<{ signalId: string }>;
  signal(runId: string, signal: SignalDef<void>): Promise<{ signalId: string }>;
  signal(runId: string, name: string, payload?: unknown, options?: { signalId?: string }): Promise<{ signalId: string }>;
  signal(runId: string, signal: SignalDef<any> | string, payload?: unknown, options: { signalId?: string } = {}): Promise<{ signalId: string }> {
    return this.client.signal(runId, signalName(signal), payload, options);
  }

  /** Cancels a run (and its open, non-abandoned descendants); `graceMs` of virtual time for its cleanup code. */
  cancel(runId: string, reason = 'cancelled', options: { graceMs?: number } = {}): Promise<CancelResult> {
    return this.client.cancel(runId, reason, options);
  }

  /** Terminates a run at once, without running its code. */
  terminate(runId: string, reason = 'terminated'): Promise<CancelResult> {
    return this.client.terminate(runId, reason);
  }

  /** The worker "dies": cached engines and in-flight activities are lost; runs resume by replay. */
  crash(): void {
    this.simulation.crash();
  }

  /**
   * Deploys new code: each given workflow replaces the one of its name, and the worker restarts (as `crash()`), so
   * every open run resumes by replaying its journal with the new code, as after a production deploy. A run whose
   * journal the new code no longer fits is blocked (NonDeterminismError) when it next activates.
   */
  deploy(workflows: WorkflowsInput): void {
    for (const wf of Array.isArray(workflows) ? workflows : Object.values(workflows)) {
      const def = wf as WorkflowDef;
      const wrapped = this.wrap(def);
      this.originals.set(def.name, def);
      this.defs.set(def.name, wrapped);
      this.simulation.registry.replaceWorkflow(wrapped);
    }
    this.simulation.crash();
  }

  describe(runId: string): Promise<RunDescription> {
    return this.client.describe(runId);
  }

  history(runId: string): Promise<ExportedHistory> {
    return this.client.history(runId);
  }

  /** The run's exportable history (the same JSON as `Client.history`); save it as a golden file with `saveHistory`. */
  exportHistory(runId: string): Promise<ExportedHistory> {
    return this.client.history(runId);
  }

  /** The histories of a run and all its descendants, breadth first, children in the order their parent started them. */
  async exportHistories(runId: string): Promise<ExportedHistory[]> {
    const out: ExportedHistory[] = [];
    const queue = [runId];
    while (queue.length) {
      const h = await this.client.history(queue.shift()!);
      out.push(h);
      const started = h.events.flatMap((e) => (e.type === 'ChildScheduled' ? [e.payload.childRunId] : []));
      const rows = (await this.journal.listChildren(h.runId)).map((c) => c.runId);
      queue.push(...started.filter((id) => rows.includes(id)), ...rows.filter((id) => !started.includes(id)));
    }
    return out;
  }

  /** Writes a run's history as pretty JSON (creating the folder). */
  async saveHistory(runId: string, path: string): Promise<ExportedHistory> {
    const h = await this.exportHistory(runId);
    await writeHistoryFile(path, h);
    return h;
  }

  /** Writes one file per run of the tree under `dir`, named after the workflow id. Returns the paths. */
  async saveHistories(runId: string, dir: string): Promise<string[]> {
    const paths: string[] = [];
    for (const h of await this.exportHistories(runId)) {
      const path = join(dir, `${h.workflowId.replace(/[^A-Za-z0-9._-]+/g, '_')}.json`);
      await writeHistoryFile(path, h);
      paths.push(path);
    }
    return paths;
  }

  /** Every run in the environment. */
  runs(): RunRecord[] {
    return this.journal.allRuns();
  }

  // ---------------------------------------------------------------------------------------------------------------

  private resolve(wf: WorkflowDef | string): WorkflowDef {
    const name = typeof wf === 'string' ? wf : wf.name;
    const known = this.defs.get(name);
    if (known) {
      // Starting "v2" of a workflow in an environment built with "v1" must not silently run v1.
      if (typeof wf !== 'string' && this.originals.get(name) !== wf) {
        throw new TypeError(`workflow '${name}' is registered in this environment with a different definition`);
      }
      return known;
    }
    if (typeof wf === 'string') throw new SkeinError(`unknown workflow '${wf}': pass it in createTestEnv({ workflows })`);
    return this.register(wf);
  }

  /** A workflow not listed up front is registered when first started (as a root, or as a child by a run). */
  private register(wf: WorkflowDef): WorkflowDef {
    const def = this.wrap(wf);
    this.originals.set(wf.name, wf);
    this.defs.set(wf.name, def);
    this.simulation.registry.addWorkflow(def);
    return def;
  }

  private wrap(wf: WorkflowDef): WorkflowDef {
    return instrument(wf, this.entropy, {
      onChild: (c) => {
        if (!this.defs.has(c.name)) this.register(c);
      },
    });
  }

  /** One seeded choice among the ready actions. Returns false when none is ready. */
  private async step(): Promise<boolean> {
    const acts: SimAction[] = this.simulation.actions();
    if (!acts.length) return false;
    const a = acts[Math.min(acts.length - 1, this.choose(acts.length))]!;
    try {
      await this.simulation.perform(a);
    } finally {
      this.entropy.closeEffects();
    }
    if (this.stepMs) this.clock.advance(this.stepMs);
    return true;
  }

  private nextTimer(): number | null {
    return this.simulation.nextTimer();
  }

  private async stuck(run: RunRecord): Promise<Error> {
    const d = await this.client.describe(run.runId);
    const waits = d.openWaits.map((w) => `${w.kind} at path ${w.path}${w.childWorkflowId ? ` (${w.childWorkflowId})` : ''}`).join(', ');
    const blocked = this.journal.allRuns().filter((r) => r.status === 'blocked');
    const why = blocked.length ? `; blocked runs: ${blocked.map((r) => `${r.workflowId} (${r.error?.name}: ${r.error?.message})`).join('; ')}` : '';
    return new SkeinError(`run ${run.runId} (${run.workflowId}) cannot finish: nothing is ready and no timer is pending; it waits on ${waits || 'nothing'}${why}`);
  }
}

/** Creates a test environment (see TestEnv). */
export function createTestEnv(options: TestEnvOptions): TestEnv {
  return new TestEnv(options);
}

export async function writeHistoryFile(path: string, history: ExportedHistory): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, JSON.stringify(history, null, 2) + '\n');
}
