/**
 * Shared generators and helpers for the property tests.
 *
 * A *program* is a small JSON tree that the ONE generic workflow `prog` interprets. Children are `child(prog,
 * subprogram)`, so a random program describes a whole random run tree. Programs, barrier shapes and schedules are
 * plain objects, so fast-check prints (and shrinks) counterexamples as readable JSON.
 */
import fc from 'fast-check';
import {
  activity,
  all,
  allSettled,
  child,
  children,
  now,
  random,
  sleep,
  startChild,
  uuid,
  workflow,
  type ChildHandle,
  type Command,
  type Shape,
  type WorkflowDef,
} from '../../src/runtime/commands.js';
import { RunEngine, type EngineOptions } from '../../src/runtime/engine.js';
import { ApplicationError, CancelledError, serializeError, type SerializedError } from '../../src/runtime/errors.js';
import type { JournalEvent } from '../../src/runtime/events.js';
import type { RunRecord } from '../../src/journal/journal.js';
import { Simulation, type ActivityOutcome, type SimAction } from '../../src/testing/simulator.js';

/** numRuns for every property: 200 by default, `SKEIN_PROPERTY_RUNS` overrides. */
export const RUNS = (() => {
  const n = Number(process.env.SKEIN_PROPERTY_RUNS);
  return Number.isInteger(n) && n > 0 ? n : 200;
})();

/** Per-test timeout: generous, because a failing property spends time shrinking. */
export const PROPERTY_TIMEOUT = Math.max(120_000, RUNS * 1_000);

// =================================================================================================================
// Programs

/** Something the program can wait on. */
export type Leaf =
  | { t: 'child'; prog: Prog; id?: string } // child(prog, prog, {id})
  | { t: 'act'; label: string; ok: boolean } // activity('act', {label, ok}); fails with message `label` when !ok
  | { t: 'sleep'; ms: number }
  | { t: 'result'; h: number }; // handles[h % handles.length].result() of an earlier startChild (skipped if none)

/** A member of a barrier: a leaf, a plain array/object of members, or a nested all()/allSettled() command. */
export type Member =
  | Leaf
  | { t: 'arr'; items: Member[] }
  | { t: 'obj'; items: Member[] } // keys k0, k1, …
  | { t: 'all' | 'allSettled'; items: Member[] };

export type Step =
  | Leaf
  | { t: 'start'; prog: Prog; id?: string; policy?: 'terminate' | 'abandon' } // startChild: handle goes to `handles`
  | { t: 'all' | 'allSettled'; items: Member[] }
  | { t: 'try'; step: Step }
  | { t: 'now' | 'random' | 'uuid' };

/**
 * Runs `steps` in order, then, with `fail`, throws ApplicationError(fail) (name ProgramFailed); otherwise returns the
 * list of step summaries. An uncaught failure of a step fails the run.
 */
export interface Prog {
  steps: Step[];
  fail?: string;
  /** On CancelledError, run the compensation activity (`act` labelled 'compensate') before rethrowing. */
  compensate?: boolean;
}

const labelArb = fc.constantFrom('a', 'b', 'c', 'd', 'e');
const okArb = fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, { arbitrary: fc.constant(false), weight: 1 });
const msArb = fc.constantFrom(0, 1, 5, 50);
const idArb = fc.constantFrom('k1', 'k2', 'k3');

const memo = new Map<string, fc.Arbitrary<unknown>>();
function memoized<T>(key: string, make: () => fc.Arbitrary<T>): fc.Arbitrary<T> {
  let a = memo.get(key);
  if (!a) memo.set(key, (a = make()));
  return a as fc.Arbitrary<T>;
}

/** A program whose children nest at most `depth` more levels. */
export function progArb(depth: number, minSteps = 0, maxSteps = 4): fc.Arbitrary<Prog> {
  return memoized(`prog${depth}/${minSteps}/${maxSteps}`, () =>
    fc
      .record({
        steps: fc.array(stepArb(depth), { minLength: minSteps, maxLength: maxSteps, size: 'medium' }),
        // A quarter of the programs end by throwing.
        fail: fc.oneof({ arbitrary: fc.constant(undefined), weight: 3 }, { arbitrary: fc.constantFrom('x', 'y'), weight: 1 }),
      })
      .map(({ steps, fail }) => (fail === undefined ? { steps } : { steps, fail })),
  );
}

function leafArb(depth: number): fc.Arbitrary<Leaf> {
  return memoized(`leaf${depth}`, () => {
    const options: fc.WeightedArbitrary<Leaf>[] = [
      { arbitrary: fc.record({ t: fc.constant('act' as const), label: labelArb, ok: okArb }), weight: 2 },
      { arbitrary: fc.record({ t: fc.constant('sleep' as const), ms: msArb }), weight: 1 },
      { arbitrary: fc.record({ t: fc.constant('result' as const), h: fc.nat(3) }), weight: 1 },
    ];
    if (depth > 0) {
      const c = fc.record({ t: fc.constant('child' as const), prog: progArb(depth - 1), id: idArb }, { requiredKeys: ['t', 'prog'] });
      options.push({ arbitrary: c, weight: 3 });
    }
    return fc.oneof(...options);
  });
}

function memberArb(depth: number, nesting: number): fc.Arbitrary<Member> {
  return memoized(`member${depth}/${nesting}`, () => {
    if (nesting <= 0) return leafArb(depth);
    const items = fc.array(memberArb(depth, nesting - 1), { maxLength: 3, size: 'medium' });
    return fc.oneof(
      { arbitrary: leafArb(depth), weight: 3 },
      fc.record({ t: fc.constantFrom('arr' as const, 'obj' as const, 'all' as const, 'allSettled' as const), items }),
    );
  });
}

function stepArb(depth: number): fc.Arbitrary<Step> {
  return memoized(`step${depth}`, () => {
    const barrier = fc.record({ t: fc.constantFrom('all' as const, 'allSettled' as const), items: fc.array(memberArb(depth, 2), { maxLength: 3, size: 'medium' }) });
    const plain: fc.WeightedArbitrary<Step>[] = [
      { arbitrary: leafArb(depth), weight: 4 },
      { arbitrary: barrier, weight: 3 },
      { arbitrary: fc.record({ t: fc.constantFrom('now' as const, 'random' as const, 'uuid' as const) }), weight: 1 },
    ];
    if (depth > 0) {
      const start = fc.record(
        { t: fc.constant('start' as const), prog: progArb(depth - 1), id: idArb, policy: fc.constantFrom('terminate' as const, 'abandon' as const) },
        { requiredKeys: ['t', 'prog'] },
      );
      plain.push({ arbitrary: start, weight: 2 });
    }
    const base = fc.oneof(...plain);
    return fc.oneof({ arbitrary: base, weight: 4 }, { arbitrary: fc.record({ t: fc.constant('try' as const), step: base }), weight: 1 });
  });
}

/** How many child runs a program can start (an upper bound: every child call succeeds), and its node count. */
export function progSize(p: Prog): { runs: number; nodes: number } {
  let runs = 0;
  let nodes = 0;
  const visitProg = (q: Prog): void => {
    nodes++;
    q.steps.forEach(visitStep);
  };
  const visitStep = (s: Step | Member): void => {
    nodes++;
    switch (s.t) {
      case 'child':
      case 'start':
        runs++;
        visitProg(s.prog);
        return;
      case 'try':
        visitStep(s.step);
        return;
      case 'arr':
      case 'obj':
      case 'all':
      case 'allSettled':
        s.items.forEach(visitStep);
        return;
      default:
        return;
    }
  };
  visitProg(p);
  return { runs, nodes };
}

const MAX_RUNS = 20;
const MAX_NODES = 80;

/** A root program: children nest up to 3 levels, bounded in size so one case stays cheap. */
export const rootProgArb: fc.Arbitrary<Prog> = progArb(3, 2, 6).filter((p) => {
  const s = progSize(p);
  return s.runs <= MAX_RUNS && s.nodes <= MAX_NODES;
});

// ---- the interpreter ----------------------------------------------------------------------------------------------

/** What a run's body did, reported by the interpreter to whoever listens (the replay check). */
export interface Capture {
  ok: boolean;
  value?: unknown;
  error?: SerializedError;
  childRunIds: string[];
}
let captureHook: ((c: Capture) => void) | null = null;

/** Makes an error into a short JSON summary: its name and the remote cause's message (or its own message). */
export function summarize(e: unknown): string {
  if (!(e instanceof Error)) return `thrown ${String(e)}`;
  const cause = e.cause instanceof Error ? e.cause : null;
  return cause ? `${e.name}(${cause.name}: ${cause.message})` : `${e.name}: ${e.message}`;
}

/** Barrier results hold Error objects (allSettled reasons): turn them into summaries so results stay JSON. */
function plain(v: unknown): unknown {
  if (v instanceof Error) return { error: summarize(v) };
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

function* runStep(s: Step, handles: ChildHandle<unknown>[]): Generator<Command<unknown>, unknown, any> {
  switch (s.t) {
    case 'try':
      try {
        return { ok: yield* runStep(s.step, handles) };
      } catch (e) {
        // A step's try catches its failures, not the run's own cancellation (that is the program's to handle).
        if (e instanceof CancelledError) throw e;
        return { caught: summarize(e) };
      }
    case 'start': {
      const h = yield* startChild(prog, s.prog, { ...(s.id !== undefined ? { id: s.id } : {}), ...(s.policy ? { parentClosePolicy: s.policy } : {}) });
      handles.push(h);
      return `started ${h.workflowId}`;
    }
    case 'all':
    case 'allSettled': {
      // Typed as Command[]: ResultOf<Shape[]> of the recursive Shape type does not terminate (TS2589).
      const shape = s.items.map((m) => toShape(m, handles)) as Command<unknown>[];
      return plain(s.t === 'all' ? yield* all(shape) : yield* allSettled(shape));
    }
    case 'now':
      return yield* now();
    case 'random': {
      const r = yield* random();
      return r >= 0 && r < 1; // the value itself differs between simulations; its range does not
    }
    case 'uuid':
      return /^[0-9a-f-]{36}$/.test(yield* uuid());
    case 'result':
      if (!handles.length) return 'no handle';
      return yield* handles[s.h % handles.length]!.result();
    default:
      return yield* leafCommand(s, handles);
  }
}

function leafCommand(l: Leaf, handles: ChildHandle<unknown>[]): Command<unknown> {
  switch (l.t) {
    case 'child':
      return child(prog, l.prog, l.id !== undefined ? { id: l.id } : {});
    case 'act':
      return activity('act', { label: l.label, ok: l.ok });
    case 'sleep':
      return sleep(l.ms);
    case 'result':
      // No handle yet: a harmless stand-in, so the barrier keeps its shape.
      return handles.length ? handles[l.h % handles.length]!.result() : sleep(0);
  }
}

function toShape(m: Member, handles: ChildHandle<unknown>[]): Shape {
  switch (m.t) {
    case 'arr':
      return m.items.map((x) => toShape(x, handles));
    case 'obj':
      return Object.fromEntries(m.items.map((x, i) => [`k${i}`, toShape(x, handles)]));
    case 'all':
      return all(m.items.map((x) => toShape(x, handles)) as Command<unknown>[]);
    case 'allSettled':
      return allSettled(m.items.map((x) => toShape(x, handles)) as Command<unknown>[]);
    default:
      return leafCommand(m, handles);
  }
}

/** The one workflow every program runs as. */
export const prog: WorkflowDef<Prog, unknown[]> = workflow('prog', function* (p: Prog) {
  const handles: ChildHandle<unknown>[] = [];
  const out: unknown[] = [];
  try {
    for (const s of p.steps) out.push(yield* runStep(s, handles));
    if (p.fail !== undefined) throw new ApplicationError(p.fail, { name: 'ProgramFailed' });
  } catch (e) {
    if (p.compensate && e instanceof CancelledError) yield* activity('act', { label: 'compensate', ok: true });
    const hs = yield* children();
    captureHook?.({ ok: false, error: serializeError(e), childRunIds: hs.map((h) => h.runId) });
    throw e;
  }
  const hs = yield* children();
  captureHook?.({ ok: true, value: out, childRunIds: hs.map((h) => h.runId) });
  return out;
});

/** Activities never run for real: their outcome is written in their input. Pure, so schedules replay exactly. */
export function scriptedOutcome(call: { name: string; input: unknown }): ActivityOutcome {
  const { label, ok } = call.input as { label: string; ok: boolean };
  return ok ? { ok: true, value: `v:${label}` } : { ok: false, error: { name: 'ActivityBroke', message: label } };
}

export function progSimulation(opts: { cacheCapacity?: number; maxChildDepth?: number } = {}): Simulation {
  return new Simulation({
    workflows: [prog],
    activities: { act: () => null },
    activityOutcome: scriptedOutcome,
    engine: opts.maxChildDepth !== undefined ? { maxChildDepth: opts.maxChildDepth } : {},
    ...(opts.cacheCapacity !== undefined ? { cacheCapacity: opts.cacheCapacity } : {}),
  });
}

// =================================================================================================================
// Schedules

/**
 * A schedule: at step i the driver performs action `choices[i % n] % actions.length`, then moves the clock by
 * `ticks[i % m]` ms (0 makes close times tie). `crashes` are step numbers before which the worker crashes.
 */
export interface Schedule {
  choices: number[];
  ticks: number[];
  crashes: number[];
}

export const scheduleArb: fc.Arbitrary<Schedule> = fc.record({
  choices: fc.array(fc.nat(7), { minLength: 1, maxLength: 12 }),
  ticks: fc.array(fc.constantFrom(0, 0, 1, 3, 20), { minLength: 1, maxLength: 6 }),
  crashes: fc.uniqueArray(fc.nat(40), { maxLength: 3 }),
});

export type CrashMode = 'none' | 'crash' | 'spurious';

/**
 * Runs a simulation to quiescence under a schedule. At each crash point:
 *  - 'crash': the worker crashes (every cached engine and pending activity is lost), then each run that had pending
 *    activities is activated again, as the worker that takes over its expired lease would (rebuilt by replay);
 *  - 'spurious': no crash, but the same runs get the same extra activations (a spurious wake-up, from their
 *    cached engines);
 *  - 'none': crash points are ignored.
 * So 'crash' and 'spurious' differ only in what the crash loses, and must leave the same journals.
 */
export async function drive(sim: Simulation, s: Schedule, mode: CrashMode, maxSteps = 2_000, beforeStep?: (i: number) => Promise<void>): Promise<number> {
  const crashAt = new Set(s.crashes);
  let i = 0;
  for (;;) {
    await beforeStep?.(i);
    let acts = sim.actions();
    if (!acts.length) {
      if (sim.advanceToNextTimer()) continue;
      return i;
    }
    if (i > maxSteps) throw new Error(`simulation did not settle within ${maxSteps} steps`);
    if (mode !== 'none' && crashAt.has(i)) {
      const busy = [...new Set(acts.filter((a) => a.kind === 'activity').map((a) => a.runId))].sort();
      if (mode === 'crash') sim.crash();
      for (const runId of busy) await sim.perform({ kind: 'activate', runId });
      acts = sim.actions();
      if (!acts.length) continue;
    }
    const a: SimAction = acts[s.choices[i % s.choices.length]! % acts.length]!;
    await sim.perform(a);
    sim.clock.advance(s.ticks[i % s.ticks.length]!);
    i++;
  }
}

// =================================================================================================================
// Journal inspection

export interface RunJournal {
  run: RunRecord;
  events: JournalEvent[];
}

export async function journals(sim: Simulation): Promise<Map<string, RunJournal>> {
  const out = new Map<string, RunJournal>();
  for (const run of sim.journal.allRuns().sort((a, b) => (a.runId < b.runId ? -1 : 1))) {
    out.set(run.runId, { run, events: await sim.journal.readEvents(run.runId) });
  }
  return out;
}

/**
 * A journaled error keeps its original stack (for operators); where the code ran differs between a live run, a run
 * rebuilt after a crash and a replay, so journals are compared without stacks.
 */
export function withoutStacks<T>(v: T): T {
  if (Array.isArray(v)) return v.map(withoutStacks) as T;
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (k !== 'stack') out[k] = withoutStacks(x);
    return out as T;
  }
  return v;
}

/**
 * A comparable form of every run's journal: seq, type, payload, and recordedAt when `withTime`. random()/uuid()
 * values are masked: they are live randomness, different in two independent simulations (replay of one journal
 * reproduces them, which property (a) checks).
 */
export function comparable(js: Map<string, RunJournal>, withTime: boolean): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const [runId, j] of js) {
    out[runId] = j.events.map((e) => {
      let payload: unknown = withoutStacks(e.payload);
      if (e.type === 'SideEffect' && (e.payload.kind === 'random' || e.payload.kind === 'uuid')) payload = { ...e.payload, value: '<masked>' };
      return withTime ? { seq: e.seq, type: e.type, payload, recordedAt: e.recordedAt } : { seq: e.seq, type: e.type, payload };
    });
    out[`${runId}#status`] = [j.run.status, j.run.depth, j.run.parentRunId];
  }
  return out;
}

/**
 * Replays one run's journal from scratch with a fresh engine and reports what the code did: no throw, no new output,
 * and what the body returned/threw with the child run ids it saw.
 */
export function replayFresh(
  def: WorkflowDef,
  j: RunJournal,
  options: EngineOptions,
  nowMs: number,
): { newEvents: number; capture: Capture | null; engine: RunEngine } {
  const { run, events } = j;
  const engine = new RunEngine(def, { runId: run.runId, workflowId: run.workflowId, depth: run.depth, queue: run.queue }, options);
  let capture: Capture | null = null;
  captureHook = (c) => (capture = c);
  try {
    engine.replay(events, nowMs);
  } finally {
    captureHook = null;
  }
  return { newEvents: engine.takeOutput().events.length, capture, engine };
}

// =================================================================================================================
// Barriers (barrier-failure.test.ts)

/** A barrier leaf: a child that sleeps `ms` then returns `v:label` or throws Error(label); or an activity. */
export type BLeaf = { t: 'child'; label: string; ok: boolean; ms: number } | { t: 'act'; label: string; ok: boolean };
/** A barrier member: a leaf, a plain array or object of members, or a nested all() / allSettled() command. */
export type BShape = BLeaf | { t: 'arr' | 'obj' | 'all' | 'allSettled'; items: BShape[] };
/** The barrier: `all(items)`, or `allSettled(items)` when `settled`. */
export interface Barrier {
  settled: boolean;
  items: BShape[];
}

export function barrierArb(opts: { activities: boolean; nestedSettled: boolean; topSettled?: boolean; okBias?: number }): fc.Arbitrary<Barrier> {
  const ok =
    opts.okBias === Infinity
      ? fc.constant(true)
      : fc.oneof({ arbitrary: fc.constant(true), weight: opts.okBias ?? 1 }, { arbitrary: fc.constant(false), weight: 1 });
  const leaves: fc.Arbitrary<BLeaf>[] = [fc.record({ t: fc.constant('child' as const), label: fc.constant(''), ok, ms: fc.constantFrom(0, 0, 1, 2, 10) })];
  if (opts.activities) leaves.push(fc.record({ t: fc.constant('act' as const), label: fc.constant(''), ok }));
  const kinds = opts.nestedSettled ? (['arr', 'obj', 'all', 'allSettled'] as const) : (['arr', 'obj', 'all'] as const);
  const { shape } = fc.letrec<{ shape: BShape; group: BShape }>((tie) => ({
    shape: fc.oneof({ depthSize: 'small', maxDepth: 3 }, { arbitrary: fc.oneof(...leaves), weight: 3 }, { arbitrary: tie('group'), weight: 1 }),
    group: fc.record({ t: fc.constantFrom(...kinds), items: fc.array(tie('shape'), { maxLength: 3 }) }),
  }));
  return fc
    .record({ settled: opts.topSettled === undefined ? fc.boolean() : fc.constant(opts.topSettled), items: fc.array(shape, { minLength: 1, maxLength: 4 }) })
    .map((b) => ({ settled: b.settled, items: labelLeaves(b.items) }))
    .filter((b) => bleaves(b.items).length <= 10);
}

/** Labels are the leaf indices (depth-first, left to right), so a counterexample reads directly: L3 is leaf 3. */
function labelLeaves(s: BShape[]): BShape[] {
  let n = 0;
  const go = (x: BShape): BShape => (x.t === 'child' || x.t === 'act' ? { ...x, label: `L${n++}` } : { ...x, items: x.items.map(go) });
  return s.map(go);
}

/** The leaves in leaf-index order. */
export function bleaves(s: BShape[]): BLeaf[] {
  const out: BLeaf[] = [];
  const go = (x: BShape): void => {
    if (x.t === 'child' || x.t === 'act') out.push(x);
    else x.items.forEach(go);
  };
  s.forEach(go);
  return out;
}

export const leafIndexOf = (label: string): number => Number(label.slice(1));

/** A leaf's outcome as the model sees it: when it closed and whether it succeeded. */
export interface LeafClose {
  ok: boolean;
  closedAt: number;
}

export type ModelResult = { ok: unknown } | { failed: string };

/**
 * The reference model of SPEC section 4 with every leaf closed and visible: an `all` (and the plain arrays and
 * objects in it) fails with its failed leaf of earliest close, then lowest leaf index, ignoring leaves inside nested
 * allSettled groups; otherwise it returns the values in the same shape. `allSettled` (and the plain arrays and
 * objects in it) returns each leaf's outcome, and one outcome for each nested all().
 */
export function barrierModel(b: Barrier, close: (leafIndex: number) => LeafClose): ModelResult {
  const failures = (x: BShape): string[] => {
    switch (x.t) {
      case 'child':
      case 'act':
        return close(leafIndexOf(x.label)).ok ? [] : [x.label];
      case 'allSettled':
        return [];
      default:
        return x.items.flatMap(failures);
    }
  };
  const earliest = (labels: string[]): string =>
    labels
      .map((l) => ({ l, ...close(leafIndexOf(l)) }))
      .sort((a, b) => a.closedAt - b.closedAt || leafIndexOf(a.l) - leafIndexOf(b.l))[0]!.l;
  const shaped = (x: { t: string; items: BShape[] }, f: (m: BShape) => unknown): unknown =>
    x.t === 'obj' ? Object.fromEntries(x.items.map((m, i) => [`k${i}`, f(m)])) : x.items.map(f);
  const value = (x: BShape): unknown => {
    switch (x.t) {
      case 'child':
      case 'act':
        return `v:${x.label}`;
      case 'allSettled':
        return shaped(x, settled);
      default:
        return shaped(x, value);
    }
  };
  const allOf = (items: BShape[]): ModelResult => {
    const f = items.flatMap(failures);
    return f.length ? { failed: earliest(f) } : { ok: items.map(value) };
  };
  const settled = (x: BShape): unknown => {
    switch (x.t) {
      case 'child':
      case 'act':
        return close(leafIndexOf(x.label)).ok ? { status: 'fulfilled', value: `v:${x.label}` } : { status: 'rejected', reason: x.label };
      case 'all': {
        const r = allOf(x.items);
        return 'ok' in r ? { status: 'fulfilled', value: r.ok } : { status: 'rejected', reason: r.failed };
      }
      default:
        return shaped(x, settled);
    }
  };
  return b.settled ? { ok: b.items.map(settled) } : allOf(b.items);
}

export const bleaf = workflow('bleaf', function* (x: { label: string; ok: boolean; ms: number }) {
  yield* sleep(x.ms);
  if (!x.ok) throw new ApplicationError(x.label, { name: 'LeafFailed' });
  return `v:${x.label}`;
});

function bShape(x: BShape): Shape {
  switch (x.t) {
    case 'child':
      return child(bleaf, { label: x.label, ok: x.ok, ms: x.ms });
    case 'act':
      return activity('act', { label: x.label, ok: x.ok });
    case 'arr':
      return x.items.map(bShape);
    case 'obj':
      return Object.fromEntries(x.items.map((m, i) => [`k${i}`, bShape(m)]));
    case 'all':
      return all(x.items.map(bShape) as Command<unknown>[]);
    case 'allSettled':
      return allSettled(x.items.map(bShape) as Command<unknown>[]);
  }
}

/** The failed leaf's label, read from a failure's remote cause (ChildFailedError / ActivityFailedError). */
function causeLabel(e: unknown): string {
  return e instanceof Error && e.cause instanceof Error ? e.cause.message : `?${String(e)}`;
}

/** Errors (allSettled reasons) become their leaf label, so results compare with the model. */
function labelize(v: unknown): unknown {
  if (v instanceof Error) return causeLabel(v);
  if (Array.isArray(v)) return v.map(labelize);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, labelize(x)]));
  return v;
}

/** The parent: one barrier at path 0; returns its values, or the failed leaf's label taken from the error's cause. */
export const bparent = workflow('bparent', function* (b: Barrier) {
  const shape = b.items.map(bShape) as Command<unknown>[];
  try {
    return { ok: labelize(b.settled ? yield* allSettled(shape) : yield* all(shape)) };
  } catch (e) {
    return { failed: causeLabel(e), error: e instanceof Error ? e.name : '?' };
  }
});

export function barrierSimulation(): Simulation {
  return new Simulation({ workflows: [bparent, bleaf], activities: { act: () => null }, activityOutcome: scriptedOutcome });
}

// =================================================================================================================
// Nesting (depth-bound.test.ts)

/**
 * A run tree: the run starts each of `kids` as a child (one after the other, or all at once in an all() when
 * `all`), catching a failure when `catch` (then it goes on), and finally sleeps 1 ms and returns what it saw.
 */
export interface Nest {
  kids: Nest[];
  catch: boolean;
  all: boolean;
}

function nestCount(n: Nest): number {
  return 1 + n.kids.reduce((s, k) => s + nestCount(k), 0);
}

const nestFlags = { catch: fc.boolean(), all: fc.boolean() };
/** A small side tree (at most 2 levels). */
const sideNestArb: fc.Arbitrary<Nest> = fc.letrec<{ n: Nest }>((tie) => ({
  n: fc.record({ kids: fc.oneof({ depthSize: 'small', maxDepth: 2 }, fc.constant<Nest[]>([]), fc.array(tie('n'), { maxLength: 2 })), ...nestFlags }),
})).n;

/** A spine of 1-8 nested runs (so trees reach past any bound up to 6), with small side trees hanging off it. */
export const nestArb: fc.Arbitrary<Nest> = fc
  .tuple(
    fc.array(fc.record({ side: fc.array(sideNestArb, { maxLength: 1 }), spineFirst: fc.boolean(), ...nestFlags }), { minLength: 1, maxLength: 8 }),
  )
  .map(([levels]) =>
    levels.reduceRight<Nest | null>((inner, l) => {
      const kids = inner ? (l.spineFirst ? [inner, ...l.side] : [...l.side, inner]) : l.side;
      return { kids, catch: l.catch, all: l.all };
    }, null)!,
  )
  .filter((n) => nestCount(n) <= 16);

export const nest: WorkflowDef<Nest, unknown[]> = workflow('nest', function* (n: Nest) {
  const seen: unknown[] = [];
  const attempt = function* (cmd: Command<unknown>) {
    try {
      seen.push(yield* cmd);
    } catch (e) {
      if (!n.catch) throw e;
      seen.push({ caught: e instanceof Error ? e.name : String(e) });
    }
  };
  if (n.all && n.kids.length) yield* attempt(all(n.kids.map((k) => child(nest, k))));
  else for (const k of n.kids) yield* attempt(child(nest, k));
  yield* sleep(1); // it goes on after a caught failure
  seen.push('after');
  return seen;
});

/**
 * The model: what a run at `depth` returns, or the name of the error it fails with. A child deeper than
 * maxChildDepth fails at once with ChildDepthExceededError; a failed child reaches the parent as ChildFailedError.
 */
export function nestModel(n: Nest, depth: number, max: number): { ok: unknown[] } | { fail: string } {
  const kidOutcome = (k: Nest): { ok: unknown } | { fail: string } => {
    if (depth + 1 > max) return { fail: 'ChildDepthExceededError' };
    const r = nestModel(k, depth + 1, max);
    return 'ok' in r ? r : { fail: 'ChildFailedError' };
  };
  const seen: unknown[] = [];
  const outcomes = n.kids.map(kidOutcome);
  const steps: ({ ok: unknown } | { fail: string })[] = [];
  if (n.all && n.kids.length) {
    // The refusals close at once, all at the same time, so the barrier throws the first; a failed child throws
    // ChildFailedError (which one is a matter of close times; the name is the same).
    const failed = outcomes.find((o) => 'fail' in o);
    steps.push(failed ?? { ok: outcomes.map((o) => (o as { ok: unknown }).ok) });
  } else steps.push(...outcomes);
  for (const s of steps) {
    if ('ok' in s) seen.push(s.ok);
    else if (n.catch) seen.push({ caught: s.fail });
    else return { fail: s.fail };
  }
  seen.push('after');
  return { ok: seen };
}
