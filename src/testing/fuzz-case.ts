import { fastCheck } from './fast-check.js';
import { short } from './schedule.js';

/**
 * A fuzz case: plain data drawn by fast-check, so a failing one shrinks toward a small, canonical schedule and a seed
 * + path reproduces it. What each part means is decided by the driver (fuzz-drive.ts); this module says how it is
 * drawn and what it shrinks toward:
 *
 *  - `input`: the user's arbitrary;
 *  - `picks`: at each step, which ready action goes next (shrinks to 0: the first, canonical order); a pick in the
 *    top eighth lets the clock run ahead to the next timer;
 *  - `ticks`: the clock's move after each step (0 half of the time, so close times tie; shrinks to 0);
 *  - `crashes`: steps before which the worker dies (shrinks to none); `evict`: the sticky cache is off;
 *  - `outcomes`: per activity, a pool of outcomes; a call takes the entry its input hashes to (the next one for each
 *    further call with the same input), so removing an element of the input leaves the others' outcomes as they
 *    were and a failing case shrinks to the smallest input (shrinks to successes);
 *  - `quick`: per activity execution, whether it finishes within the activation that started it (the worker's eager
 *    activities; shrinks to no: each finishes as its own step); `inline`: children run inline in their parent's
 *    activation, as a worker runs them (shrinks to off);
 *  - `clock`: minutes after the base time the virtual clock starts at, over two years (time of day, day and month
 *    vary; shrinks to 0);
 *  - `twin`: a second run of the same workflow, same input, interleaved with the first in one process (state kept at
 *    module scope shows; shrinks to off);
 *  - `signals`: signals sent to the root run before a step (a name, a payload from the user's arbitrary or null);
 *  - `prePatch`: every patched() reached live answers false, as for runs started before each patch (shrinks to off);
 *  - `seed`: random()/uuid() values and the ambient streams.
 */

/** One entry of an activity's outcome pool: a success value, a failure, or "run the real implementation". */
export type FuzzOutcome =
  | { kind: 'ok'; value: unknown }
  | { kind: 'fail'; error: { name: string; message: string; details?: unknown; nonRetryable?: boolean } }
  | { kind: 'real' };

/** A signal the case sends to the root run before step `at`: name `name` (an index into the known names), payload `payload` (an index into its pool). */
export interface FuzzSignal {
  at: number;
  name: number;
  payload: number;
}

/** One generated case. Plain data: fast-check shrinks it, and it prints compactly in fast-check's own reports. */
export interface FuzzCase<I> {
  input: I;
  picks: number[];
  ticks: number[];
  crashes: number[];
  evict: boolean;
  outcomes: Record<string, FuzzOutcome[]>;
  seed: number;
  // (the explorations below are optional, so a case written by hand needs only the parts above)
  clock?: number;
  inline?: boolean;
  quick?: boolean[];
  twin?: boolean;
  signals?: FuzzSignal[];
  signalPayloads?: Record<string, unknown[]>;
  prePatch?: boolean;
}

/** A case with every optional part filled in (off). */
export type FullCase<I> = Required<FuzzCase<I>>;

export function fullCase<I>(c: FuzzCase<I>): FullCase<I> {
  return { clock: 0, inline: false, quick: [], twin: false, signals: [], signalPayloads: {}, prePatch: false, ...c };
}

/** The base of the virtual clock (2023-11-14T22:13:20Z); a case starts `clock` minutes later. */
export const START = 1_700_000_000_000;
export const MINUTE = 60_000;
/** Two years of days: every day of the week and month. */
const CLOCK_DAYS = 2 * 366;
export const MAX_PICK = 1023;
export const TIMER_PICK = 896;

/** Structural arbitrary (fast-check's types are not imported: it is an optional peer dependency). */
export interface ArbitraryLike<T> {
  generate(mrng: any, biasFactor: number | undefined): { readonly value: T };
  shrink(value: T, context: unknown): unknown;
  canShrinkWithoutContext(value: unknown): boolean;
}

export interface ActivityFuzzSpec {
  value?: ArbitraryLike<unknown>;
  errors?: ReadonlyArray<string | { name?: string; message: string; details?: unknown; nonRetryable?: boolean }> | ArbitraryLike<{ name?: string; message: string }>;
  canFail?: boolean;
  failureWeight?: number;
}

export interface CaseShape {
  input?: ArbitraryLike<unknown>;
  outcomes: Record<string, ArbitraryLike<unknown> | ActivityFuzzSpec>;
  /** User-given signal payloads by name (`true`: the name, payload null). */
  signals: Record<string, ArbitraryLike<unknown> | true>;
  maxChoices: number;
  maxTick: number;
  maxCrashes: number;
  crashWindow: number;
  evictions: boolean;
  poolSize: number;
  /** Which of the case's explorations are on (each off draws a constant). */
  explore: { inline: boolean; eager: boolean; clock: boolean; twin: boolean; signals: boolean; patches: boolean };
}

export function isArbitrary(x: unknown): x is ArbitraryLike<unknown> {
  // Duck-typed: an arbitrary from another copy of fast-check is not `instanceof` this one's.
  return !!x && typeof (x as ArbitraryLike<unknown>).generate === 'function' && typeof (x as ArbitraryLike<unknown>).shrink === 'function';
}

/** The arbitrary of cases of one fuzz run. */
export function caseArbitrary<I>(s: CaseShape): ArbitraryLike<FuzzCase<I>> {
  const fc = fastCheck();
  const pools: Record<string, any> = {};
  for (const [name, spec] of Object.entries(s.outcomes)) pools[name] = fc.array(entryArbitrary(name, spec) as any, { minLength: s.poolSize, maxLength: s.poolSize });
  const payloads: Record<string, any> = {};
  for (const [name, spec] of Object.entries(s.signals)) payloads[name] = fc.array(spec === true ? fc.constant(null) : (spec as any), { minLength: 3, maxLength: 3 });
  const off = <T>(on: boolean, arb: unknown, none: T): any => (on ? arb : fc.constant(none));
  return fc
    .record({
      input: (s.input ?? fc.constant(undefined)) as any,
      // size 'max': fast-check otherwise keeps arrays short, and every step past the end would take the
      // canonical order. Shrinking still shortens them, toward that canonical order.
      picks: fc.array(fc.nat({ max: MAX_PICK }), { maxLength: s.maxChoices, size: 'max' }),
      // Ticks of 0 half of the time: close-time ties are where barrier failure selection gets interesting.
      ticks: fc.array(fc.oneof(fc.constant(0), fc.nat({ max: s.maxTick }), fc.nat({ max: s.maxTick })), { maxLength: s.maxChoices, size: 'max' }),
      crashes: s.maxCrashes > 0 ? fc.uniqueArray(fc.nat({ max: Math.max(0, s.crashWindow - 1) }), { maxLength: s.maxCrashes }) : fc.constant([] as number[]),
      evict: s.evictions ? fc.boolean() : fc.constant(false),
      outcomes: fc.record(pools),
      seed: fc.nat(),
      // Days and the minute of the day apart, so each shrinks on its own: to day 0, and to the first failing minute.
      clock: off(s.explore.clock, fc.tuple(fc.nat({ max: CLOCK_DAYS }), fc.nat({ max: 24 * 60 - 1 })).map(([d, m]) => d * 24 * 60 + m), 0),
      inline: off(s.explore.inline, fc.boolean(), false),
      quick: off(s.explore.eager, fc.array(fc.boolean(), { maxLength: 16 }), [] as boolean[]),
      twin: off(s.explore.twin, fc.boolean(), false),
      signals: off(
        s.explore.signals,
        fc.array(fc.record({ at: fc.nat({ max: Math.max(0, s.maxChoices - 1) }), name: fc.nat({ max: 7 }), payload: fc.nat({ max: 2 }) }), { maxLength: 3 }),
        [] as FuzzSignal[],
      ),
      signalPayloads: fc.record(payloads),
      prePatch: off(s.explore.patches, fc.boolean(), false),
    })
    .map((c: any) => Object.assign(c as FuzzCase<I>, { [fc.toStringMethod]: () => caseText(c as FuzzCase<I>) })) as unknown as ArbitraryLike<FuzzCase<I>>;
}

function entryArbitrary(name: string, spec: ArbitraryLike<unknown> | ActivityFuzzSpec): unknown {
  const fc = fastCheck();
  const o: ActivityFuzzSpec = isArbitrary(spec) ? { value: spec } : spec;
  const success = o.value ? (o.value as any).map((value: unknown): FuzzOutcome => ({ kind: 'ok', value })) : fc.constant<FuzzOutcome>({ kind: 'real' });
  if (o.canFail === false) return success;
  const norm = (e: string | { name?: string; message: string }) => (typeof e === 'string' ? { name: 'ApplicationError', message: e } : { ...e, name: e.name ?? 'ApplicationError' });
  const errors =
    o.errors === undefined
      ? fc.constant(norm(`${name} failed (fuzzed)`))
      : isArbitrary(o.errors)
        ? (o.errors as any).map(norm)
        : fc.constantFrom(...(o.errors as ReadonlyArray<string | { name?: string; message: string }>).map(norm));
  const failure = errors.map((error: Extract<FuzzOutcome, { kind: 'fail' }>['error']): FuzzOutcome => ({ kind: 'fail', error }));
  // Success first: fast-check shrinks a oneof toward its first member, so a shrunk case fails only where it must.
  return fc.oneof({ arbitrary: success, weight: 3 }, { arbitrary: failure, weight: o.failureWeight ?? 1 });
}

export function caseText(c0: FuzzCase<unknown>): string {
  const c = fullCase(c0);
  const pools = Object.entries(c.outcomes)
    .map(([n, p]) => `${n}: [${p.map((e) => (e.kind === 'ok' ? short(e.value, 20) : e.kind === 'fail' ? `✗${e.error.message}` : 'real')).join(', ')}]`)
    .join('; ');
  const extra = [
    c.clock ? `clock: +${c.clock}min` : '',
    c.inline ? 'inline' : '',
    c.quick.some(Boolean) ? `quick: [${c.quick.map((q) => (q ? 1 : 0)).join('')}]` : '',
    c.twin ? 'twin' : '',
    c.signals.length ? `signals: [${c.signals.map((s) => `${s.at}:${s.name}/${s.payload}`).join(',')}]` : '',
    c.prePatch ? 'prePatch' : '',
  ].filter(Boolean);
  return (
    `{input: ${short(c.input, 200)}, picks: [${c.picks.join(',')}], ticks: [${c.ticks.join(',')}], crashes: [${c.crashes.join(',')}], ` +
    `evict: ${c.evict}, outcomes: {${pools}}, seed: ${c.seed}${extra.length ? `, ${extra.join(', ')}` : ''}}`
  );
}
