import type * as fc from 'fast-check';
import { fastCheck, loadFastCheck } from './fast-check.js';
import type { WorkflowDef } from '../runtime/commands.js';
import { describeEvent, type EngineOptions } from '../runtime/engine.js';
import { NonDeterminismError, RemoteError, SkeinError, type SerializedError } from '../runtime/errors.js';
import type { JournalEvent } from '../runtime/events.js';
import { journalValue } from '../runtime/json.js';
import { Registry, type ActivitiesInput, type WorkflowsInput } from '../runtime/registry.js';
import { isOpen, type RunRecord, type RunStatus } from '../journal/journal.js';
import { ManualClock, type MemoryJournal } from '../journal/memory.js';
import { Simulation, type ActivityOutcome, type SimAction } from './simulator.js';
import { Entropy, instrument } from './entropy.js';
import { closingAsJournaled, replayRun } from './replay.js';
import { errorText, formatSchedule, short, type TraceEntry } from './schedule.js';

/**
 * The fuzzer: runs one workflow (and the children it starts, for real) under many generated schedules and checks
 * each one. A schedule ("case") is plain data drawn by fast-check, so a failing case shrinks to a small one and a
 * seed + path reproduces it exactly:
 *
 *  - the workflow's input (the user's arbitrary);
 *  - each activity call's outcome, from a per-activity pool (success value from the user's arbitrary, or a failure);
 *    a call takes the next pool entry the first time it is performed and keeps it, so re-running an activity after
 *    a crash gives the same outcome, as a journaled result would;
 *  - the order things happen: at each step, which ready action goes next (an activation, an activity finishing,
 *    or the clock running ahead to the next timer);
 *  - close times: clock ticks between steps, including 0, so close-time ties happen;
 *  - crash points (the worker loses its cached engines and in-flight activities; runs resume by replay), and
 *    whether the sticky cache is off (every activation rebuilds its run by replay).
 *
 * Every case is then checked, in this order: no run blocked (a replay after a crash diverged), no run left open,
 * every run's final journal replays in a fresh engine to the same close (with ambient reads perturbed, see
 * replay.ts), a crash-free run of the same schedule writes the same journals, and finally the user's `check`.
 */

export interface FuzzError {
  name?: string;
  message: string;
  details?: unknown;
  nonRetryable?: boolean;
}

// The public types below describe fast-check's values structurally, without importing its types: fast-check is an
// optional peer dependency, and a project that uses skein/testing without it must type-check (skipLibCheck: false).

/** A fast-check arbitrary (`fc.integer()`, `fc.record(…)`, …) generating values of type T. */
export interface Arbitrary<T> {
  generate(mrng: any, biasFactor: number | undefined): { readonly value: T };
  shrink(value: T, context: unknown): unknown;
  canShrinkWithoutContext(value: unknown): boolean;
}

/** fast-check's verbosity: false/0 none, true/1 verbose, 2 very verbose. */
export type FuzzVerbosity = boolean | 0 | 1 | 2;

/** fast-check's runner parameters (`fc.Parameters`): `numRuns`, `seed`, `path`, `timeout`, `examples`, … */
export interface FuzzRunnerParameters {
  numRuns?: number;
  seed?: number;
  path?: string;
  timeout?: number;
  endOnFailure?: boolean;
  [parameter: string]: unknown;
}

/** The fuzzer as a fast-check property (an `fc.IAsyncProperty`), for `fc.assert` / `fc.check`. */
export interface FuzzProperty<I> {
  isAsync(): true;
  generate(mrng: any, runId?: number): any;
  shrink(value: any): any;
  run(v: [FuzzCase<I>]): Promise<any>;
  runBeforeEach: () => Promise<void>;
  runAfterEach: () => Promise<void>;
}

/**
 * How one activity's outcomes are drawn. An arbitrary alone means "success values from it, or a generic failure".
 */
export type ActivityFuzz =
  | Arbitrary<unknown>
  | {
      /** Success values. Absent: a success runs the registered implementation. */
      value?: Arbitrary<unknown>;
      /** Failures to choose from: messages (thrown as ApplicationError), error shapes, or an arbitrary of them. */
      errors?: ReadonlyArray<string | FuzzError> | Arbitrary<FuzzError>;
      /** false: this activity never fails. Default true. */
      canFail?: boolean;
      /** Weight of a failure against a success (which weighs 3). Default 1. */
      failureWeight?: number;
    };

export type FuzzResult<O> =
  | { status: 'completed'; value: O }
  | { status: 'failed'; error: SerializedError }
  | { status: Exclude<RunStatus, 'completed' | 'failed' | 'running' | 'blocked'>; error: SerializedError | null };

export interface ActivityCall {
  runId: string;
  workflowId: string;
  path: string;
  name: string;
  input: unknown;
  /** `open`: scheduled, but the run never journaled an outcome (it closed first). It may or may not have run. */
  status: 'completed' | 'failed' | 'open';
  result?: unknown;
  error?: SerializedError;
  closedAt?: number;
}

export interface FuzzContext<I> {
  input: I;
  rootRunId: string;
  root: RunRecord;
  journal: MemoryJournal;
  /** Every run of the case: the root and all descendants. */
  runs: RunRecord[];
  histories: ReadonlyMap<string, JournalEvent[]>;
  history(runId: string): JournalEvent[];
  children(runId?: string): RunRecord[];
  /** Every activity call of every run, in journal order per run (root first). */
  activities(): ActivityCall[];
  /** How many times the worker crashed during the case. */
  crashes: number;
  /** The case as readable lines (computed on first access). */
  readonly schedule: string[];
}

export interface FuzzOptions<I, O> {
  /** Inputs for the workflow. Default: always `undefined`. */
  input?: Arbitrary<I>;
  /** The workflows it starts as children (they run for real). */
  workflows?: WorkflowsInput;
  /** Real implementations, used for activities without an `outcomes` entry (and for `value`-less successes). */
  activities?: ActivitiesInput;
  /** Fuzzed activity outcomes, by activity name. */
  outcomes?: Record<string, ActivityFuzz>;
  /** Fuzz the activities of child runs too (default true); false runs their real implementations. */
  fuzzChildActivities?: boolean;
  /** Crash points per case: false for none, a number for at most that many. Default 2. */
  crashes?: boolean | number;
  /** Crash points fall before one of the first `crashWindow` steps. Default 24. */
  crashWindow?: number;
  /** Let some cases run with the sticky cache off (every activation replays). Default true. */
  evictions?: boolean;
  /** Largest clock tick between two steps, ms. Ticks range over 0..maxTick. Default 3. */
  maxTick?: number;
  /** Steps whose order is fuzzed; later steps take the first ready action. Default 64. */
  maxChoices?: number;
  /** Size of each activity's outcome pool; calls beyond it cycle through the pool. Default 8. */
  callsPerActivity?: number;
  /** Bound on steps per case (a workflow that never settles fails the case). Default 10_000. */
  maxSteps?: number;
  maxChildDepth?: number;
  /** The root's workflow id. Default `${workflow.name}-1`. */
  workflowId?: string;
  /** Your invariant. Throw (e.g. with expect/assert) or return false to fail the case. */
  check?: (result: FuzzResult<O>, ctx: FuzzContext<I>) => void | boolean | Promise<void | boolean>;

  // fast-check
  numRuns?: number;
  seed?: number;
  path?: string;
  verbose?: FuzzVerbosity;
  endOnFailure?: boolean;
  /** Any other fast-check parameters (the shortcuts above win). */
  fc?: FuzzRunnerParameters;
}

/** One entry of an activity's outcome pool: a success value, a failure, or "run the real implementation". */
export type FuzzOutcome = { kind: 'ok'; value: unknown } | { kind: 'fail'; error: Required<Pick<FuzzError, 'name' | 'message'>> & FuzzError } | { kind: 'real' };

/** One generated case. Plain data: fast-check shrinks it, and it prints compactly in fast-check's own reports. */
export interface FuzzCase<I> {
  input: I;
  picks: number[];
  ticks: number[];
  crashes: number[];
  evict: boolean;
  outcomes: Record<string, FuzzOutcome[]>;
  seed: number;
}

export interface FuzzStats {
  /** Cases executed, shrinking included. */
  cases: number;
  steps: number;
  crashes: number;
  ms: number;
  casesPerSecond: number;
}

/** One case failed: why, and the case as a readable schedule. The message is self-contained. */
export class FuzzCaseError extends Error {
  constructor(
    readonly reason: 'simulation' | 'blocked' | 'open' | 'replay' | 'crash-free' | 'check',
    readonly headline: string,
    readonly input: unknown,
    readonly schedule: string[],
    cause?: unknown,
  ) {
    super(`${headline}\n  input: ${short(input, 200)}\n  schedule (t = virtual ms since the case started):\n${schedule.map((l) => `    ${l}`).join('\n')}`, { cause });
    this.name = 'FuzzCaseError';
  }
}

/** What `fuzzWorkflow` throws: the shrunk counterexample, readable, with the seed and path to reproduce it. */
export class FuzzFailure extends SkeinError {
  constructor(
    readonly workflow: string,
    readonly caseError: FuzzCaseError,
    readonly seed: number,
    readonly path: string,
    readonly numRuns: number,
    readonly numShrinks: number,
    readonly counterexample: FuzzCase<unknown>,
    extra = '',
  ) {
    super(
      `fuzzWorkflow('${workflow}') found a failing case after ${numRuns} case(s), shrunk ${numShrinks} time(s).\n\n` +
        `Failure: ${indentRest(caseError.headline)}\n\n` +
        `Counterexample:\n  input: ${short(caseError.input, 400)}\n  schedule (t = virtual ms since the case started):\n` +
        caseError.schedule.map((l) => `    ${l}`).join('\n') +
        `\n\nReproduce: fuzzWorkflow(${workflow}, { ...the same options, seed: ${seed}, path: ${JSON.stringify(path)} })` +
        extra,
      { cause: caseError.cause ?? caseError },
    );
  }

  get schedule(): string[] {
    return this.caseError.schedule;
  }
}

function indentRest(s: string): string {
  return s.replace(/\n/g, '\n  ');
}

const START = 1_700_000_000_000;
const MAX_PICK = 1023;
const TIMER_PICK = 896;
const HINT =
  'A workflow body must not read Math.random(), Date.now(), new Date() or other changing state directly; use random(), now(), uuid(), sideEffect() or an activity.';

interface CaseRun {
  failure: FuzzCaseError | null;
  steps: number;
  crashes: number;
}

class Fuzzer<I, O> {
  readonly defs = new Map<string, WorkflowDef>();
  private readonly registry: Registry;
  private readonly engineOptions: EngineOptions;
  private readonly rootWorkflowId: string;
  private readonly rootRunId: string;

  constructor(
    readonly root: WorkflowDef<I, O>,
    readonly o: FuzzOptions<I, O>,
  ) {
    const add = (wf: WorkflowDef) => {
      const prev = this.defs.get(wf.name);
      if (prev && prev !== wf) throw new TypeError(`fuzzWorkflow: two different workflows are named '${wf.name}'`);
      this.defs.set(wf.name, wf);
    };
    add(root as WorkflowDef);
    const more = o.workflows ?? [];
    for (const wf of Array.isArray(more) ? more : Object.values(more)) add(wf as WorkflowDef);
    this.registry = new Registry([], o.activities ?? []);
    for (const [name, spec] of Object.entries(o.outcomes ?? {})) {
      if (!isArbitrary(spec) && !spec.value && !this.hasActivity(name)) {
        throw new TypeError(`fuzzWorkflow: outcomes.${name} has no \`value\` arbitrary and '${name}' is not in \`activities\`, so a success has nothing to return`);
      }
    }
    this.engineOptions = o.maxChildDepth !== undefined ? { maxChildDepth: o.maxChildDepth } : {};
    this.rootWorkflowId = o.workflowId ?? `${root.name}-1`;
    this.rootRunId = `run-${this.rootWorkflowId}`;
  }

  /**
   * Every known workflow, instrumented for one simulation. A child workflow nobody listed is learned from the
   * command that starts it (its definition travels with the command) and registered before its run activates.
   */
  private instrumentAll(entropy: Entropy, sim: () => Simulation): WorkflowDef[] {
    const wrap = (d: WorkflowDef): WorkflowDef =>
      instrument(d, entropy, {
        onChild: (c) => {
          if (sim().registry.hasWorkflow(c.name)) return;
          if (!this.defs.has(c.name)) this.defs.set(c.name, c);
          sim().registry.addWorkflow(wrap(c));
        },
      });
    return [...this.defs.values()].map(wrap);
  }

  private hasActivity(name: string): boolean {
    try {
      this.registry.activity(name);
      return true;
    } catch {
      return false;
    }
  }

  arbitrary(): fc.Arbitrary<FuzzCase<I>> {
    const maxChoices = this.o.maxChoices ?? 64;
    const maxCrashes = this.o.crashes === false ? 0 : this.o.crashes === true || this.o.crashes === undefined ? 2 : this.o.crashes;
    const poolSize = Math.max(1, this.o.callsPerActivity ?? 8);
    const pools: Record<string, fc.Arbitrary<FuzzOutcome[]>> = {};
    for (const [name, spec] of Object.entries(this.o.outcomes ?? {})) {
      pools[name] = fastCheck().array(entryArbitrary(name, spec), { minLength: poolSize, maxLength: poolSize });
    }
    return fastCheck()
      .record({
        input: (this.o.input ?? fastCheck().constant(undefined)) as fc.Arbitrary<I>,
        // size 'max': fast-check otherwise keeps arrays short, and every step past the end would take the
        // canonical order. Shrinking still shortens them, toward that canonical order.
        picks: fastCheck().array(fastCheck().nat({ max: MAX_PICK }), { maxLength: maxChoices, size: 'max' }),
        // Ticks of 0 half of the time: close-time ties are where barrier failure selection gets interesting.
        ticks: fastCheck().array(fastCheck().oneof(fastCheck().constant(0), fastCheck().nat({ max: this.o.maxTick ?? 3 }), fastCheck().nat({ max: this.o.maxTick ?? 3 })), {
          maxLength: maxChoices,
          size: 'max',
        }),
        crashes: maxCrashes > 0 ? fastCheck().uniqueArray(fastCheck().nat({ max: Math.max(0, (this.o.crashWindow ?? 24) - 1) }), { maxLength: maxCrashes }) : fastCheck().constant([] as number[]),
        evict: this.o.evictions === false ? fastCheck().constant(false) : fastCheck().boolean(),
        outcomes: fastCheck().record(pools) as fc.Arbitrary<Record<string, FuzzOutcome[]>>,
        seed: fastCheck().nat(),
      })
      .map((c) => Object.assign(c, { [fastCheck().toStringMethod]: () => caseText(c) }));
  }

  /** Runs one case and checks it. */
  async run(c: FuzzCase<I>): Promise<CaseRun> {
    const clock = new ManualClock(START);
    const entropy = new Entropy({ seed: c.seed, clock });
    const memo = new Map<string, FuzzOutcome>();
    const drawn = new Map<string, number>();
    const fuzzChildren = this.o.fuzzChildActivities !== false;
    const outcome = (call: { runId: string; path: string; name: string }): ActivityOutcome | undefined => {
      if (!fuzzChildren && call.runId !== this.rootRunId) return undefined;
      const pool = c.outcomes[call.name];
      if (!pool?.length) return undefined;
      const key = `${call.runId}\u0000${call.path}`;
      let e = memo.get(key);
      if (!e) {
        const i = drawn.get(call.name) ?? 0;
        drawn.set(call.name, i + 1);
        e = pool[i % pool.length]!;
        memo.set(key, e);
      }
      if (e.kind === 'real') return undefined;
      // The same JSON round trip a real activity result gets, so live code sees what replay will see.
      if (e.kind === 'ok') return { ok: true, value: journalValue(e.value, `fuzzed result of activity '${call.name}'`) };
      return { ok: false, error: e.error };
    };
    const sim: Simulation = new Simulation({
      workflows: this.instrumentAll(entropy, () => sim),
      activities: this.o.activities ?? [],
      engine: this.engineOptions,
      clock,
      cacheCapacity: c.evict ? 0 : 10_000,
      activityOutcome: outcome,
    });

    const trace: TraceEntry[] = [];
    const crashAt = new Set(c.crashes);
    const maxSteps = this.o.maxSteps ?? 10_000;
    let step = 0;
    let simError: unknown = null;
    try {
      await sim.start(sim.registry.workflow(this.root.name) as WorkflowDef<I, unknown>, c.input, { workflowId: this.rootWorkflowId, runId: this.rootRunId });
      for (;;) {
        if (step >= maxSteps) throw new SkeinError(`the case did not settle within ${maxSteps} steps (a workflow that never stops?)`);
        if (crashAt.has(step)) {
          const { engines, inflight } = sim.live;
          trace.push({ kind: 'crash', step, at: clock.now(), engines, inflight });
          sim.crash();
        }
        const acts = sim.actions();
        if (!acts.length) {
          const timer = sim.nextTimer();
          if (timer === null) break;
          clock.set(timer);
          trace.push({ kind: 'timer', step, at: timer, chosen: false });
          continue;
        }
        const pick = c.picks[step] ?? 0;
        // One pick in eight (the top of the range, so shrinking toward 0 removes it) lets the clock run ahead to the
        // next timer while other work is ready: a timer then races activities and children.
        if (pick >= TIMER_PICK) {
          const timer = sim.nextTimer();
          if (timer !== null) {
            clock.set(timer);
            trace.push({ kind: 'timer', step, at: timer, chosen: true });
            step++;
            continue;
          }
        }
        const a = acts[pick % acts.length]!;
        const at = clock.now();
        const before = (await sim.journal.getRun(a.runId))?.lastSeq ?? 0;
        try {
          await sim.perform(a);
        } finally {
          entropy.closeEffects();
        }
        const after = (await sim.journal.getRun(a.runId))?.lastSeq ?? 0;
        trace.push(a.kind === 'activity' ? { kind: 'activity', step, at, runId: a.runId, path: a.path, before, after } : { kind: 'activate', step, at, runId: a.runId, before, after });
        clock.advance(c.ticks[step] ?? 1);
        step++;
      }
    } catch (err) {
      simError = err;
    }

    const runs = sim.journal.allRuns();
    const histories = new Map<string, JournalEvent[]>();
    for (const r of runs) histories.set(r.runId, await sim.journal.readEvents(r.runId));
    let schedule: string[] | null = null;
    const lines = () => (schedule ??= formatSchedule({ trace, histories, runs, t0: START }));
    const fail = (reason: FuzzCaseError['reason'], headline: string, cause?: unknown): CaseRun => ({
      failure: new FuzzCaseError(reason, headline, c.input, lines(), cause),
      steps: step,
      crashes: sim.crashes,
    });
    const ambient = entropy.ambientReads
      ? ` (the workflow code read Math.random()/Date.now()/new Date() directly ${entropy.ambientReads} time(s) in this case)`
      : '';

    if (simError) {
      const e = simError as Error;
      return fail('simulation', `the simulation threw ${e?.name ?? 'Error'}: ${e?.message ?? String(e)}`, simError);
    }
    for (const r of runs) {
      if (r.status === 'blocked') {
        return fail('blocked', `run ${r.workflowId} was blocked by ${errorText(r.error, 1000)} when it was rebuilt by replay${ambient}. ${HINT}`, rebuildError(r.error));
      }
    }
    for (const r of runs) {
      if (isOpen(r.status)) return fail('open', `run ${r.workflowId} is still ${r.status} after the simulation went idle (nothing could wake it)`);
    }

    // Replay determinism: every run's final journal, in a fresh engine, reaches the same close.
    for (const r of runs) {
      const def = this.defs.get(r.workflow);
      if (!def) return fail('simulation', `run ${r.workflowId} is of workflow '${r.workflow}', which the fuzzer does not know`);
      const rep = replayRun(def, { runId: r.runId, workflowId: r.workflowId, depth: r.depth, queue: r.queue }, histories.get(r.runId)!, this.engineOptions, c.seed, (x) => {
        // Only these closes come from the body itself; a cancelled or continued run's ending is the engine's.
        if (r.status !== 'completed' && r.status !== 'failed') return null;
        if (!x.closing) return new SkeinError('the replay did not reach the end of the workflow');
        const got = closingAsJournaled(x.closing, r.workflow);
        const want = r.status === 'completed' ? { status: 'completed', result: r.result } : { status: r.status, error: r.error };
        if (got.status !== want.status) return new SkeinError(`the replay ${got.status === 'completed' ? 'completed' : 'failed'}, the journal says ${want.status}`);
        if (got.status === 'completed' && JSON.stringify(got.result) !== JSON.stringify(r.result)) {
          return new SkeinError(`the replay returned ${short(got.result)}, the journal recorded ${short(r.result)}`);
        }
        if (got.status === 'failed' && (got.error.name !== r.error?.name || got.error.message !== r.error?.message)) {
          return new SkeinError(`the replay failed with ${errorText(got.error)}, the journal recorded ${errorText(r.error)}`);
        }
        return null;
      });
      if (rep.error) {
        return fail('replay', `replaying run ${r.workflowId} with a fresh engine (${rep.profile}) gave ${rep.error.name}: ${rep.error.message}${ambient}. ${HINT}`, rep.error);
      }
    }

    // Crash-free: the same schedule without crashes (and with the cache on) must write the same journals. When
    // nothing was replayed during the case, the two runs are the same computation, so it is skipped.
    if (sim.crashes > 0 || c.evict) {
      const diff = await this.crashFree(c, trace, histories, runs);
      if (diff) return fail('crash-free', `${diff}${ambient}`);
    }

    if (this.o.check) {
      // The instance's outcome is its last run's: follow a continue-as-new chain to its end.
      let root = runs.find((r) => r.runId === this.rootRunId)!;
      for (let next = root.continuedTo; next; ) {
        const r = runs.find((x) => x.runId === next);
        if (!r) break;
        root = r;
        next = r.continuedTo;
      }
      const result = (
        root.status === 'completed' ? { status: 'completed', value: root.result } : root.status === 'failed' ? { status: 'failed', error: root.error! } : { status: root.status, error: root.error }
      ) as FuzzResult<O>;
      const ctx = makeContext(c.input, this.rootRunId, root, sim, runs, histories, lines);
      let verdict: void | boolean;
      try {
        verdict = await this.o.check(result, ctx);
      } catch (err) {
        return fail('check', `the check failed: ${(err as Error)?.message ?? String(err)}`, err);
      }
      if (verdict === false) return fail('check', 'the check returned false');
    }
    return { failure: null, steps: step, crashes: sim.crashes };
  }

  /** Re-runs the trace with no crashes, activities answering what the first run journaled; returns a difference. */
  private async crashFree(c: FuzzCase<I>, trace: TraceEntry[], histA: Map<string, JournalEvent[]>, runsA: RunRecord[]): Promise<string | null> {
    const clock = new ManualClock(START);
    const entropy = new Entropy({ seed: c.seed, clock });
    const recorded = new Map<string, ActivityOutcome>();
    for (const [runId, evs] of histA) {
      for (const e of evs) {
        if (e.type === 'ActivityCompleted') recorded.set(`${runId}\u0000${e.payload.path}`, { ok: true, value: e.payload.result });
        if (e.type === 'ActivityFailed') recorded.set(`${runId}\u0000${e.payload.path}`, { ok: false, error: e.payload.error });
      }
    }
    const sim: Simulation = new Simulation({
      workflows: this.instrumentAll(entropy, () => sim),
      activities: this.o.activities ?? [],
      engine: this.engineOptions,
      clock,
      cacheCapacity: 10_000,
      activityOutcome: (call) => recorded.get(`${call.runId}\u0000${call.path}`),
    });
    const wfName = (runId: string) => runsA.find((r) => r.runId === runId)?.workflowId ?? runId;
    try {
      await sim.start(sim.registry.workflow(this.root.name) as WorkflowDef<I, unknown>, c.input, { workflowId: this.rootWorkflowId, runId: this.rootRunId });
      for (const t of trace) {
        if (t.kind === 'crash') continue;
        clock.set(t.at);
        if (t.kind === 'timer') continue;
        let a: SimAction | undefined;
        if (t.kind === 'activate') {
          // Performed even when this run would not have been woken here: a crash wakes runs with lost activities, and
          // such an activation may journal news that was already there (a child that closed). An activation nobody
          // asked for is harmless in a real worker too (a poll, an expired lease), so the crash-free run repeats it;
          // what is compared is whether losing the engines and the in-flight work changed any decision.
          a = { kind: 'activate', runId: t.runId };
        } else {
          a = sim.actions().find((x) => x.kind === 'activity' && x.runId === t.runId && x.path === t.path);
          if (!a) {
            if (t.after > t.before) return `a crash-free run of the same schedule has no pending activity at step ${t.step} (${wfName(t.runId)}, path ${t.path}), which the run with crashes performed`;
            continue;
          }
        }
        try {
          await sim.perform(a);
        } finally {
          entropy.closeEffects();
        }
      }
      for (let i = 0; i < (this.o.maxSteps ?? 10_000); i++) {
        const acts = sim.actions();
        if (!acts.length && !sim.advanceToNextTimer()) break;
        if (acts.length) {
          try {
            await sim.perform(acts[0]!);
          } finally {
            entropy.closeEffects();
          }
        }
      }
    } catch (err) {
      return `a crash-free run of the same schedule threw ${(err as Error)?.name}: ${(err as Error)?.message}`;
    }
    const runsB = sim.journal.allRuns();
    const idsA = new Set(runsA.map((r) => r.runId));
    const idsB = new Set(runsB.map((r) => r.runId));
    for (const id of idsA) if (!idsB.has(id)) return `run ${wfName(id)} exists in the run with crashes but not in a crash-free run of the same schedule`;
    for (const r of runsB) if (!idsA.has(r.runId)) return `run ${r.workflowId} exists in a crash-free run of the same schedule but not in the run with crashes`;
    for (const r of runsA) {
      const a = histA.get(r.runId)!;
      const b = await sim.journal.readEvents(r.runId);
      for (let i = 0; i < Math.max(a.length, b.length); i++) {
        const ea = a[i];
        const eb = b[i];
        if (ea && eb && JSON.stringify(normalize(ea)) === JSON.stringify(normalize(eb))) continue;
        const d = (e: JournalEvent | undefined) => (e ? `${describeEvent(e)} ${short(e.payload, 120)} at t=${e.recordedAt - START}` : 'nothing');
        return `a crash-free run of the same schedule wrote a different journal for run ${r.workflowId}: at seq ${i + 1} the run with crashes has ${d(ea)}, the crash-free run has ${d(eb)}`;
      }
    }
    return null;
  }
}

/** The blocking error as a typed error again (a NonDeterminismError keeps its seq and both commands). */
function rebuildError(e: SerializedError | null): Error {
  if (!e) return new SkeinError('blocked');
  const m = e.name === 'NonDeterminismError' ? /journal event seq (\d+) recorded (.*), but the code now issued (.*)$/s.exec(e.message) : null;
  return m ? new NonDeterminismError(Number(m[1]), m[2]!, m[3]!) : new RemoteError(e);
}

/** Journal events compared without what legitimately differs between re-executions (attempt counts, error chains). */
function normalize(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalize);
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (k !== 'attempts' && k !== 'cause' && k !== 'stack') o[k] = normalize(x);
    return o;
  }
  return v;
}

function makeContext<I>(
  input: I,
  rootRunId: string,
  root: RunRecord,
  sim: Simulation,
  runs: RunRecord[],
  histories: Map<string, JournalEvent[]>,
  lines: () => string[],
): FuzzContext<I> {
  return {
    input,
    rootRunId,
    root,
    journal: sim.journal,
    runs,
    histories,
    history: (runId) => histories.get(runId) ?? [],
    children: (runId = rootRunId) => runs.filter((r) => r.parentRunId === runId),
    activities: () => {
      const out: ActivityCall[] = [];
      const ordered = [...runs].sort((a, b) => a.depth - b.depth);
      for (const r of ordered) {
        const calls = new Map<string, ActivityCall>();
        for (const e of histories.get(r.runId) ?? []) {
          if (e.type === 'ActivityScheduled') {
            const call: ActivityCall = { runId: r.runId, workflowId: r.workflowId, path: e.payload.path, name: e.payload.name, input: e.payload.input, status: 'open' };
            calls.set(e.payload.path, call);
            out.push(call);
          } else if (e.type === 'ActivityCompleted' || e.type === 'ActivityFailed') {
            const call = calls.get(e.payload.path);
            if (!call || call.status !== 'open') continue;
            call.closedAt = e.payload.closedAt;
            if (e.type === 'ActivityCompleted') {
              call.status = 'completed';
              call.result = e.payload.result;
            } else {
              call.status = 'failed';
              call.error = e.payload.error;
            }
          }
        }
      }
      return out;
    },
    crashes: sim.crashes,
    get schedule() {
      return lines();
    },
  };
}

function isArbitrary(x: unknown): x is Arbitrary<unknown> {
  // Duck-typed: an arbitrary from another copy of fast-check is not `instanceof` this one's.
  return !!x && typeof (x as Arbitrary<unknown>).generate === 'function' && typeof (x as Arbitrary<unknown>).shrink === 'function';
}

/** A structural Arbitrary is a fast-check one (that is how the user made it). */
const fcArb = <T>(a: Arbitrary<T>): fc.Arbitrary<T> => a as unknown as fc.Arbitrary<T>;

function entryArbitrary(name: string, spec: ActivityFuzz): fc.Arbitrary<FuzzOutcome> {
  const o = isArbitrary(spec) ? { value: spec } : spec;
  const success: fc.Arbitrary<FuzzOutcome> = o.value ? fcArb(o.value).map((value): FuzzOutcome => ({ kind: 'ok', value })) : fastCheck().constant<FuzzOutcome>({ kind: 'real' });
  if (o.canFail === false) return success;
  const norm = (e: string | FuzzError) => (typeof e === 'string' ? { name: 'ApplicationError', message: e } : { ...e, name: e.name ?? 'ApplicationError' });
  const errors: fc.Arbitrary<ReturnType<typeof norm>> =
    o.errors === undefined
      ? fastCheck().constant(norm(`${name} failed (fuzzed)`))
      : isArbitrary(o.errors)
        ? fcArb(o.errors as Arbitrary<FuzzError>).map(norm)
        : fastCheck().constantFrom(...(o.errors as ReadonlyArray<string | FuzzError>).map(norm));
  const failure = errors.map((error): FuzzOutcome => ({ kind: 'fail', error }));
  // Success first: fast-check shrinks a oneof toward its first member, so a shrunk case fails only where it must.
  return fastCheck().oneof({ arbitrary: success, weight: 3 }, { arbitrary: failure, weight: o.failureWeight ?? 1 });
}

function caseText(c: FuzzCase<unknown>): string {
  const pools = Object.entries(c.outcomes)
    .map(([n, p]) => `${n}: [${p.map((e) => (e.kind === 'ok' ? short(e.value, 20) : e.kind === 'fail' ? `✗${e.error.message}` : 'real')).join(', ')}]`)
    .join('; ');
  return `{input: ${short(c.input, 200)}, picks: [${c.picks.join(',')}], ticks: [${c.ticks.join(',')}], crashes: [${c.crashes.join(',')}], evict: ${c.evict}, outcomes: {${pools}}, seed: ${c.seed}}`;
}

/**
 * The fuzzer as a fast-check property, for use with your own `fc.assert`/`fc.check`. A failing case throws a
 * FuzzCaseError whose message holds the readable schedule.
 */
export function fuzzProperty<I, O>(wf: WorkflowDef<I, O>, options: FuzzOptions<I, O> = {}): FuzzProperty<I> {
  const fz = new Fuzzer(wf, options);
  return fastCheck().asyncProperty(fz.arbitrary(), async (c) => {
    const r = await fz.run(c);
    if (r.failure) throw r.failure;
  });
}

/**
 * Fuzzes a workflow (see the module comment) with `fastCheck().assert`, so it fits in any test. Resolves with statistics
 * when every case passes; rejects with a FuzzFailure holding the shrunk counterexample as a readable schedule and
 * the seed and path that reproduce it.
 */
export async function fuzzWorkflow<I, O>(wf: WorkflowDef<I, O>, options: FuzzOptions<I, O> = {}): Promise<FuzzStats> {
  await loadFastCheck();
  const fz = new Fuzzer(wf, options);
  const stats = { cases: 0, steps: 0, crashes: 0 };
  const t0 = performance.now();
  const property = fastCheck().asyncProperty(fz.arbitrary(), async (c) => {
    const r = await fz.run(c);
    stats.cases++;
    stats.steps += r.steps;
    stats.crashes += r.crashes;
    if (r.failure) throw r.failure;
  });
  const params: fc.Parameters<[FuzzCase<I>]> = {
    numRuns: 100,
    ...options.fc,
    ...(options.numRuns !== undefined ? { numRuns: options.numRuns } : {}),
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
    ...(options.path !== undefined ? { path: options.path } : {}),
    ...(options.verbose !== undefined ? { verbose: options.verbose } : {}),
    ...(options.endOnFailure !== undefined ? { endOnFailure: options.endOnFailure } : {}),
  };
  if (!params.reporter && !params.asyncReporter) {
    params.asyncReporter = async (d) => {
      if (!d.failed) return;
      if (!d.counterexample) throw new SkeinError(fastCheck().defaultReportMessage(d) ?? `fuzzWorkflow('${wf.name}') failed`);
      const [c] = d.counterexample;
      let caseError = d.errorInstance instanceof FuzzCaseError ? d.errorInstance : null;
      if (!caseError) caseError = (await fz.run(c)).failure;
      if (!caseError) {
        // The property failed outside the case runner (a fast-check timeout, say): report fast-check's own message.
        throw new SkeinError(fastCheck().defaultReportMessage(d) ?? `fuzzWorkflow('${wf.name}') failed`);
      }
      const extra = d.verbose ? `\n\n${fastCheck().defaultReportMessage(d) ?? ''}` : '';
      throw new FuzzFailure(wf.name, caseError, d.seed, d.counterexamplePath ?? '', d.numRuns, d.numShrinks, c as FuzzCase<unknown>, extra);
    };
  }
  await fastCheck().assert(property, params);
  const ms = performance.now() - t0;
  return { ...stats, ms, casesPerSecond: stats.cases / (ms / 1000) };
}
