import nodeCrypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { AllCommand, ChildCommand, Command, SideEffectCommand, type AnyCommand, type Shape, type WorkflowDef, type WorkflowGenerator } from '../runtime/commands.js';

/**
 * Control over the ambient sources of non-determinism while workflow code runs in a test host.
 *
 * Two different needs, served by two kinds of "window" around the code:
 *
 *  - **user windows** wrap every step of the workflow body itself (each `next()`/`throw()` of its generator). Inside
 *    one, `Math.random()`, `Date.now()` and `new Date()` answer from a stream owned by the test host. A body that
 *    reads them directly is a bug (its replay can take another path); giving the host the stream lets it make that
 *    bug *visible on purpose*: a replay check answers with a different stream (values near 0, then near 1; the clock
 *    a day off), so any decision that depended on them changes and the engine raises NonDeterminismError. It also
 *    makes a run reproducible from its seed.
 *
 *  - **effect windows** are open while the engine carries out a yielded `random()`, `uuid()` or `sideEffect(fn)`.
 *    Those values are legitimately random, but in a test host they come from a seeded stream, so the same seed
 *    gives the same journals, and a crash-free re-run of a schedule can be compared with the crashed one event by
 *    event. The engine only draws them on live decisions (replays take the journaled value), so the stream is
 *    consumed in the same order by any run of the same schedule.
 *
 * The engine imports `randomUUID` from `node:crypto` as a named binding; the only way to answer it from a stream
 * without changing the engine is to patch the builtin module and re-sync its ESM exports. That costs ~50 µs, so it
 * is done only around yields that can draw a uuid. (A cleaner hook would be an entropy source in EngineOptions.)
 */

/** mulberry32: a tiny, fast, well-mixed 32-bit PRNG. Returns floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A v4-shaped uuid from a random source (so seeded runs get seeded uuids). */
export function uuidFrom(rand: () => number): string {
  const b = Array.from({ length: 16 }, () => Math.floor(rand() * 256));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const PATCHED = Symbol('skein.testing.patched');
type Marked = { [PATCHED]?: true };
const mark = <T extends object>(f: T): T => Object.assign(f, { [PATCHED]: true as const });

const RealDate = Date;

/** What `Date.now()` / `new Date()` read while a window is open (one class for all windows: cheap to install). */
let windowNow: (what: AmbientSource) => number = () => RealDate.now();

class TestDate extends RealDate {
  constructor(...args: unknown[]) {
    if (args.length === 0) super(windowNow('new Date()'));
    else super(...(args as [string]));
  }
  static override now(): number {
    return windowNow('Date.now()');
  }
}
mark(TestDate);

/** The ambient sources a workflow body must not read (it must use now(), random(), uuid()). */
export type AmbientSource = 'Math.random()' | 'Date.now()' | 'new Date()' | 'crypto.randomUUID()';

/** A direct read of an ambient source by workflow code, and where it happened (the first frame outside this module). */
export interface AmbientRead {
  what: AmbientSource;
  /** `file:line:column` of the code that read it, when the stack says. */
  at: string | null;
}

interface Saved {
  random: () => number;
  date: DateConstructor;
  now: (what: AmbientSource) => number;
  uuid: (() => string) | undefined;
}

const webCrypto = globalThis.crypto as { randomUUID?: () => string } | undefined;
const realWebUUID = webCrypto?.randomUUID;

/** Where the code that called into this module is: the first stack frame that is not this file's. */
function callerFrame(): string | null {
  const stack = new Error().stack?.split('\n').slice(1) ?? [];
  for (const line of stack) {
    if (line.includes('/testing/entropy.') || line.includes('node:internal')) continue;
    const m = /\(?((?:file:\/\/)?[^()\s]+:\d+:\d+)\)?\s*$/.exec(line.trim());
    if (m) {
      const at = m[1]!.replace(/^file:\/\//, '');
      const cwd = `${process.cwd()}/`;
      return at.startsWith(cwd) ? at.slice(cwd.length) : at;
    }
  }
  return null;
}

export interface EntropyOptions {
  /** Seeds both streams. */
  seed: number;
  /** The host's virtual clock: what `Date.now()` reads inside workflow code and inside `sideEffect` functions. */
  clock: { now(): number };
  /** How direct `Math.random()` calls in workflow code are answered. Default: a stream seeded from `seed`. */
  userRandom?: () => number;
  /** Added to what direct `Date.now()` / `new Date()` calls in workflow code read. Default 0. */
  userClockOffsetMs?: number;
}

export interface EffectCounts {
  random: number;
  uuid: number;
  sideEffect: number;
}

/** One host's ambient streams (see the module comment). Windows never nest in practice; each restores what it found. */
export class Entropy {
  private readonly userRandom: () => number;
  private readonly effectRandom: () => number;
  private readonly userNow: (what?: AmbientSource) => number;
  private readonly effectNow: () => number;
  private readonly patchedUserRandom: () => number;
  private readonly patchedEffectRandom: () => number;
  private effectSaved: Saved | null = null;
  private uuidSaved: ((...a: unknown[]) => string) | null = null;
  /** Direct Math.random()/Date.now()/new Date()/crypto.randomUUID() calls seen inside user windows. */
  ambientReads = 0;
  /** The first of them, with the line that made it (the fuzzer fails a case with it). */
  firstAmbient: AmbientRead | null = null;
  private readonly patchedUserUUID: () => string;

  constructor(readonly options: EntropyOptions) {
    this.userRandom = options.userRandom ?? prng(options.seed ^ 0x5bd1e995);
    this.effectRandom = prng(options.seed);
    const offset = options.userClockOffsetMs ?? 0;
    this.userNow = (what: AmbientSource = 'Date.now()') => {
      this.noteAmbient(what);
      return options.clock.now() + offset;
    };
    this.effectNow = () => options.clock.now();
    this.patchedUserRandom = mark(() => {
      this.noteAmbient('Math.random()');
      return this.userRandom();
    });
    this.patchedUserUUID = mark(() => {
      this.noteAmbient('crypto.randomUUID()');
      return uuidFrom(this.userRandom);
    });
    this.patchedEffectRandom = mark(() => this.effectRandom());
  }

  private noteAmbient(what: AmbientSource): void {
    this.ambientReads++;
    if (!this.firstAmbient) this.firstAmbient = { what, at: callerFrame() };
  }

  /** Runs a step of workflow code with the ambient sources answered by the user stream. */
  user<T>(fn: () => T): T {
    const saved = install(this.patchedUserRandom, this.userNow, this.patchedUserUUID);
    try {
      return fn();
    } finally {
      restore(saved);
    }
  }

  /** Opens an effect window for a yielded command that will draw `counts` values. */
  openEffects(counts: EffectCounts): void {
    this.closeEffects();
    this.effectSaved = install(this.patchedEffectRandom, this.effectNow);
    if (counts.uuid > 0 || counts.sideEffect > 0) {
      this.uuidSaved = nodeCrypto.randomUUID as (...a: unknown[]) => string;
      (nodeCrypto as { randomUUID: unknown }).randomUUID = mark(() => uuidFrom(this.effectRandom));
      syncBuiltinESMExports();
    }
  }

  /**
   * Closes the effect window. Called when the generator is resumed, and by the host after every action: a yield
   * that blocks (an `all` mixing a `now()` with an activity) would otherwise leave the window open across awaits.
   */
  closeEffects(): void {
    if (this.effectSaved) {
      restore(this.effectSaved);
      this.effectSaved = null;
    }
    if (this.uuidSaved) {
      (nodeCrypto as { randomUUID: unknown }).randomUUID = (this.uuidSaved as Marked)[PATCHED] ? realRandomUUID : this.uuidSaved;
      this.uuidSaved = null;
      syncBuiltinESMExports();
    }
  }
}

function install(random: () => number, now: (what: AmbientSource) => number, uuid?: () => string): Saved {
  const saved: Saved = { random: Math.random, date: globalThis.Date, now: windowNow, uuid: webCrypto?.randomUUID };
  Math.random = random;
  globalThis.Date = TestDate as unknown as DateConstructor;
  windowNow = now;
  // globalThis.crypto.randomUUID() (a property: cheap to swap). A named `import { randomUUID } from 'node:crypto'`
  // in workflow code is not seen here; the replay check still catches what it changes.
  if (uuid && webCrypto) webCrypto.randomUUID = uuid;
  return saved;
}

function restore(saved: Saved): void {
  // Never restore one of our own patches over the real thing: a window left open by a thrown engine error must not
  // become permanent because another window saved it as "the original".
  Math.random = (saved.random as Marked)[PATCHED] ? realRandom : saved.random;
  globalThis.Date = (saved.date as Marked)[PATCHED] ? RealDate : saved.date;
  windowNow = saved.now;
  if (webCrypto && saved.uuid) webCrypto.randomUUID = (saved.uuid as Marked)[PATCHED] ? realWebUUID! : saved.uuid;
}

const realRandom = Math.random;
const realRandomUUID = nodeCrypto.randomUUID;

/** How many replay-safe values a yielded command (or barrier shape) will draw. */
export function countEffects(cmd: unknown): EffectCounts | null {
  const c: EffectCounts = { random: 0, uuid: 0, sideEffect: 0 };
  const walk = (s: unknown): void => {
    if (s instanceof SideEffectCommand) {
      if (s.effect === 'random') c.random++;
      else if (s.effect === 'uuid') c.uuid++;
      else if (s.effect === 'sideEffect') c.sideEffect++;
    } else if (s instanceof AllCommand) walk(s.shape);
    else if (s instanceof Command) return;
    else if (Array.isArray(s)) s.forEach(walk);
    else if (s && typeof s === 'object' && Object.getPrototypeOf(s) === Object.prototype) Object.values(s as Record<string, Shape>).forEach(walk);
  };
  walk(cmd);
  return c.random + c.uuid + c.sideEffect > 0 ? c : null;
}

export type Closing = { ok: true; value: unknown } | { ok: false; error: unknown };

/**
 * Wraps a workflow so that its code runs inside user windows and its side-effect yields inside effect windows. The
 * engine sees exactly the commands the original body yields (the wrapper forwards every value and error), so the
 * journal is the same as without it.
 */
export interface InstrumentHooks {
  /** How the body itself ended (replay checks compare it with the journaled result). */
  onClose?: (c: Closing) => void;
  /** Every child workflow the body starts, so a test host can register children nobody listed. */
  onChild?: (def: WorkflowDef) => void;
}

export function instrument<I, O>(def: WorkflowDef<I, O>, entropy: Entropy, hooks: InstrumentHooks = {}): WorkflowDef<I, O> {
  const { onClose, onChild } = hooks;
  const body = function* (input: I): WorkflowGenerator<O> {
    const inner = entropy.user(() => def.body(input));
    if (!inner || typeof (inner as WorkflowGenerator<O>).next !== 'function') {
      // The same refusal the engine gives an unwrapped body, so wrapping changes nothing observable.
      throw new TypeError(`workflow '${def.name}' must be declared with function* (its body returned ${typeof inner})`);
    }
    let resume: Closing = { ok: true, value: undefined };
    let finished = false;
    try {
      for (;;) {
        let r: IteratorResult<AnyCommand, O>;
        try {
          r = entropy.user(() => (resume.ok ? inner.next(resume.value) : inner.throw(resume.error)));
        } catch (error) {
          finished = true;
          onClose?.({ ok: false, error });
          throw error;
        }
        if (r.done) {
          finished = true;
          onClose?.({ ok: true, value: r.value });
          return r.value;
        }
        if (onChild) childDefs(r.value, onChild);
        const effects = countEffects(r.value);
        if (effects) entropy.openEffects(effects);
        try {
          resume = { ok: true, value: yield r.value };
        } catch (error) {
          resume = { ok: false, error };
        } finally {
          if (effects) entropy.closeEffects();
        }
      }
    } finally {
      // Closed early (RunEngine.dispose): the body's own finally blocks run too.
      if (!finished) entropy.user(() => inner.return(undefined as O));
    }
  };
  return Object.freeze({ name: def.name, options: def.options, body });
}

/** Calls `fn` with the workflow of every child command in a yielded command or barrier shape. */
function childDefs(cmd: unknown, fn: (def: WorkflowDef) => void): void {
  if (cmd instanceof ChildCommand) fn(cmd.def);
  else if (cmd instanceof AllCommand) childDefs(cmd.shape, fn);
  else if (cmd instanceof Command) return;
  else if (Array.isArray(cmd)) for (const c of cmd) childDefs(c, fn);
  else if (cmd && typeof cmd === 'object' && Object.getPrototypeOf(cmd) === Object.prototype) for (const c of Object.values(cmd)) childDefs(c, fn);
}
