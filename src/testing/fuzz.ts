import type * as fc from 'fast-check';
import { fastCheck, loadFastCheck } from './fast-check.js';
import type { WorkflowDef } from '../runtime/commands.js';
import type { EngineOptions } from '../runtime/engine.js';
import { SkeinError, type SerializedError } from '../runtime/errors.js';
import type { JournalEvent } from '../runtime/events.js';
import { Registry, type ActivitiesInput, type WorkflowsInput } from '../runtime/registry.js';
import type { RunRecord, RunStatus } from '../journal/journal.js';
import type { MemoryJournal } from '../journal/memory.js';
import { caseArbitrary, fullCase, isArbitrary, type ActivityFuzzSpec, type ArbitraryLike, type FullCase, type FuzzCase } from './fuzz-case.js';
import { driveCase, twinOf, runIdOf, type Drive, type DriveSetup } from './fuzz-drive.js';
import * as oracles from './fuzz-oracles.js';
import type { FuzzReason, Verdict } from './fuzz-oracles.js';
import { formatSchedule, short } from './schedule.js';
import { closest } from './suggest.js';

export type { FuzzCase, FuzzOutcome, FuzzSignal } from './fuzz-case.js';
export type { FuzzReason } from './fuzz-oracles.js';

/**
 * The fuzzer: runs one workflow (and the children it starts, for real) under many generated cases and checks each.
 * Three modules do the work, this one ties them to fast-check and to the user's options:
 *
 *  - fuzz-case.ts    what a case is (input, schedule, outcomes, crashes, eager activities and inline children,
 *                    clock start, a twin run, signals, patches) and how fast-check draws and shrinks it;
 *  - fuzz-drive.ts   runs a case on the simulator, which runs the worker's own activation (actors/activation.ts);
 *  - fuzz-oracles.ts what every case must satisfy: no direct ambient reads, no blocked run, no acknowledged start
 *                    or signal lost, no reported result changed, no activity effect contradicting the journal, every
 *                    run finished once faults stop, replay determinism, crash-free equivalence.
 *
 * Then the user's `check` runs on the root's result.
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
  /** This case treats every run as started before each patch: patched() reached live answered false. */
  prePatch: boolean;
  /** The root's twin (a second run of the workflow, same input, interleaved in the same process), if the case had one. */
  twin: RunRecord | null;
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
  /**
   * Signals to send to the root run at random points, by name: an arbitrary of payloads, or `true` (payload null).
   * Signals the code waits for are sent too, with payload null, even when not listed. `false`: send none.
   */
  signals?: Record<string, Arbitrary<unknown> | true> | false;
  /** Explore children run inline in their parent's activation, as a worker runs them. Default true. */
  inlineChildren?: boolean;
  /** Explore eager activities (finished within the activation that started them, as a worker does). Default true. */
  eagerActivities?: boolean;
  /** Start each case at another time of day, day and month (over two years). Default true. */
  clockShifts?: boolean;
  /** Run a twin of the root (same input) interleaved with it in one process, so state kept at module scope shows. Default true. */
  twin?: boolean;
  /** Explore the old branch of every patched() (runs started before the patch). Default true. */
  patches?: boolean;
  /**
   * Let workflow code read Date.now(), new Date(), Math.random() or crypto.randomUUID() directly: the case then fails
   * only if a replay diverges. Default false: the first direct read fails the case, with the line that did it.
   */
  allowAmbientReads?: boolean;
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
    readonly reason: FuzzReason,
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

interface CaseRun {
  failure: FuzzCaseError | null;
  steps: number;
  crashes: number;
}

class Fuzzer<I, O> {
  readonly defs = new Map<string, WorkflowDef>();
  /** Activity names some run of some case called (an outcomes entry no case used is a typo, see fuzzWorkflow). */
  readonly called = new Set<string>();
  private readonly registry: Registry;
  private readonly engineOptions: EngineOptions;
  private readonly setup: DriveSetup;
  private readonly rootWorkflowId: string;

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
      if (!isArbitrary(spec) && !spec.value && !this.registry.hasActivity(name)) {
        throw new TypeError(`fuzzWorkflow: outcomes.${name} has no \`value\` arbitrary and '${name}' is not in \`activities\`, so a success has nothing to return`);
      }
    }
    this.engineOptions = o.maxChildDepth !== undefined ? { maxChildDepth: o.maxChildDepth } : {};
    this.rootWorkflowId = o.workflowId ?? `${root.name}-1`;
    this.setup = {
      defs: this.defs,
      root: root.name,
      rootWorkflowId: this.rootWorkflowId,
      activities: o.activities ?? [],
      engineOptions: this.engineOptions,
      fuzzChildActivities: o.fuzzChildActivities !== false,
      maxSteps: o.maxSteps ?? 10_000,
      signalNames: o.signals ? Object.keys(o.signals) : [],
    };
  }

  arbitrary(): fc.Arbitrary<FuzzCase<I>> {
    const o = this.o;
    const maxCrashes = o.crashes === false ? 0 : o.crashes === true || o.crashes === undefined ? 2 : o.crashes;
    return caseArbitrary<I>({
      ...(o.input ? { input: o.input } : {}),
      outcomes: (o.outcomes ?? {}) as Record<string, ArbitraryLike<unknown> | ActivityFuzzSpec>,
      signals: o.signals || {},
      maxChoices: o.maxChoices ?? 64,
      maxTick: o.maxTick ?? 3,
      maxCrashes,
      crashWindow: o.crashWindow ?? 24,
      evictions: o.evictions !== false,
      poolSize: Math.max(1, o.callsPerActivity ?? 8),
      explore: {
        inline: o.inlineChildren !== false,
        eager: o.eagerActivities !== false,
        clock: o.clockShifts !== false,
        twin: o.twin !== false,
        signals: o.signals !== false,
        patches: o.patches !== false,
      },
    }) as unknown as fc.Arbitrary<FuzzCase<I>>;
  }

  /** Runs one case and checks it: the oracles every case must satisfy (fuzz-oracles.ts), then the user's check. */
  async run(c0: FuzzCase<I>): Promise<CaseRun> {
    const c = fullCase(c0);
    const d = await driveCase(this.setup, c as FullCase<unknown>);
    for (const evs of d.histories.values()) for (const e of evs) if (e.type === 'ActivityScheduled') this.called.add(e.payload.name);
    let schedule: string[] | null = null;
    const lines = () => (schedule ??= formatSchedule({ trace: d.trace, histories: d.histories, runs: d.runs, t0: d.t0 }));
    const fail = (v: Verdict): CaseRun => ({ failure: new FuzzCaseError(v.reason, v.headline, c.input, lines(), v.cause), steps: d.steps, crashes: d.sim.crashes });
    if (d.simError) {
      const e = d.simError as Error;
      return fail({ reason: 'simulation', headline: `the simulation threw ${e?.name ?? 'Error'}: ${e?.message ?? String(e)}`, cause: d.simError });
    }
    const engineOptions: EngineOptions = { ...this.engineOptions, ...(c.prePatch ? { prePatch: () => true } : {}) };
    const verdict =
      (this.o.allowAmbientReads ? null : oracles.ambientReads(d)) ??
      oracles.blocked(d) ??
      oracles.lost(d) ??
      oracles.resultChanged(d) ??
      oracles.activityEffects(d) ??
      oracles.unfinished(d) ??
      oracles.replayDeterminism(d, this.defs, engineOptions, c.seed) ??
      // When nothing was replayed during the case, the crash-free run is the same computation: skipped.
      (d.sim.crashes > 0 || c.evict ? await oracles.crashFree(this.setup, c as FullCase<unknown>, d) : null);
    if (verdict) return fail(verdict);

    if (this.o.check) {
      const rootRunId = runIdOf(this.rootWorkflowId);
      const twin = twinOf(this.rootWorkflowId);
      // The user's view is the root's tree: the twin and its descendants are the fuzzer's own.
      const mine = (r: RunRecord) => r.workflowId !== twin && !r.workflowId.startsWith(`${twin}/`);
      const runs = d.runs.filter(mine);
      // The instance's outcome is its last run's: follow a continue-as-new chain to its end.
      let root = runs.find((r) => r.runId === rootRunId)!;
      for (let next = root.continuedTo; next; ) {
        const r = runs.find((x) => x.runId === next);
        if (!r) break;
        root = r;
        next = r.continuedTo;
      }
      const result = (
        root.status === 'completed' ? { status: 'completed', value: root.result } : root.status === 'failed' ? { status: 'failed', error: root.error! } : { status: root.status, error: root.error }
      ) as FuzzResult<O>;
      const ctx = makeContext(c, rootRunId, root, d, runs, d.runs.find((r) => r.runId === runIdOf(twin)) ?? null, lines);
      let ok: void | boolean;
      try {
        ok = await this.o.check(result, ctx);
      } catch (err) {
        return fail({ reason: 'check', headline: `the check failed: ${(err as Error)?.message ?? String(err)}`, cause: err });
      }
      if (ok === false) return fail({ reason: 'check', headline: 'the check returned false' });
    }
    return { failure: null, steps: d.steps, crashes: d.sim.crashes };
  }
}

function makeContext<I>(c: FullCase<I>, rootRunId: string, root: RunRecord, d: Drive, runs: RunRecord[], twin: RunRecord | null, lines: () => string[]): FuzzContext<I> {
  const histories = new Map(runs.map((r) => [r.runId, d.histories.get(r.runId) ?? []]));
  return {
    input: c.input,
    rootRunId,
    root,
    journal: d.sim.journal,
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
    crashes: d.sim.crashes,
    prePatch: c.prePatch,
    twin,
    get schedule() {
      return lines();
    },
  };
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
  // An outcomes entry for an activity no case ever called is a typo (or dead configuration): its real implementation
  // ran instead, or nothing did, and every case "passed" without the outcomes meant for it.
  const unused = Object.keys(options.outcomes ?? {}).filter((n) => !fz.called.has(n));
  if (unused.length) {
    const lines = unused.map((n) => {
      const near = closest(n, [...fz.called]);
      return `outcomes.${n}: no run called an activity '${n}' in ${stats.cases} case(s)${near ? ` (did you mean '${near}'?)` : ''}`;
    });
    throw new SkeinError(`fuzzWorkflow('${wf.name}'): ${lines.join('; ')}. Fix the name, or remove the entry.`);
  }
  const ms = performance.now() - t0;
  return { ...stats, ms, casesPerSecond: stats.cases / (ms / 1000) };
}
