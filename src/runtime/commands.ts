/**
 * The authoring API. Everything a workflow asks for is a plain `Command` value; the replay engine alone decides what
 * it means, live or on replay. A command yields itself, so `yield* cmd` returns a precisely typed result while
 * `yield cmd` still works (typed `any`).
 */

import type { ActivityContext } from './activities.js';

export type CommandKind =
  | 'child'
  | 'childResult'
  | 'childSignal'
  | 'all'
  | 'activity'
  | 'sleep'
  | 'sideEffect'
  | 'children'
  | 'waitForSignal'
  | 'continueAsNew'
  | 'patch';

/**
 * Commands are recognised by a registered symbol and their `kind`, not by class identity: a workflow module that
 * imports another copy of skein (a second install in a monorepo, sources next to a build) still yields commands this
 * engine understands. `x instanceof ChildCommand` means "a command of kind 'child'" whichever copy made it.
 */
const COMMAND = Symbol.for('skein.command');

export abstract class Command<T> {
  abstract readonly kind: CommandKind;
  readonly [COMMAND] = true;
  /** The kind a subclass stands for (undefined on Command itself: any command). */
  static readonly commandKind: CommandKind | undefined = undefined;
  static [Symbol.hasInstance](x: unknown): boolean {
    if (typeof x !== 'object' || x === null || (x as Record<symbol, unknown>)[COMMAND] !== true) return false;
    const kind = (this as { commandKind?: CommandKind }).commandKind;
    return kind === undefined || (x as { kind?: unknown }).kind === kind;
  }
  /** Lets `yield* command` return `T` to the workflow: the engine sends the result back through this yield. */
  *[Symbol.iterator](): Generator<Command<T>, T, any> {
    return (yield this) as T;
  }
}

/** What a workflow body may yield. */
export type AnyCommand = Command<unknown>;
export type WorkflowGenerator<O> = Generator<AnyCommand, O, any>;

// ---------------------------------------------------------------------------------------------------------------
// Workflows

export interface WorkflowOptions {
  /** Bumped when the code changes in a way old histories must know about. Recorded for visibility. */
  version?: number;
  /** Default queue for runs of this workflow. */
  queue?: string;
}

export interface WorkflowDef<I = any, O = any> {
  readonly name: string;
  readonly options: WorkflowOptions;
  readonly body: (input: I) => WorkflowGenerator<O>;
  /** Type-only markers so `child(wf, …)` can infer input and output. */
  readonly __types?: { input: I; output: O };
}

export type InputOf<W> = W extends WorkflowDef<infer I, any> ? I : never;
export type OutputOf<W> = W extends WorkflowDef<any, infer O> ? O : never;

/** Declares a workflow. The body is a generator *function* (a factory), so a finished generator is never reused. */
export function workflow<I, O>(name: string, body: (input: I) => WorkflowGenerator<O>): WorkflowDef<I, O>;
export function workflow<I, O>(name: string, options: WorkflowOptions, body: (input: I) => WorkflowGenerator<O>): WorkflowDef<I, O>;
export function workflow<I, O>(
  name: string,
  a: WorkflowOptions | ((input: I) => WorkflowGenerator<O>),
  b?: (input: I) => WorkflowGenerator<O>,
): WorkflowDef<I, O> {
  const body = typeof a === 'function' ? a : b;
  const options = typeof a === 'function' ? {} : a;
  if (typeof name !== 'string' || name.length === 0) throw new TypeError('workflow(name, …): name must be a non-empty string');
  if (typeof body !== 'function') throw new TypeError(`workflow('${name}'): the body must be a function* generator function`);
  return Object.freeze({ name, options: Object.freeze({ ...options }), body });
}

// ---------------------------------------------------------------------------------------------------------------
// Children

export type ParentClosePolicy = 'cancel' | 'terminate' | 'abandon';

export interface ChildOptions<O = unknown> {
  /** Parent-scoped key: the child's workflow id becomes `${parentWorkflowId}/${id}`. */
  id?: string;
  queue?: string;
  /** What happens to this child when the parent closes while it is still open. Default 'cancel'. */
  parentClosePolicy?: ParentClosePolicy;
  /**
   * Milliseconds the parent waits for the result. On expiry the child is closed per its parent-close policy
   * (cancel by default) and the wait returns `timeoutValue` if given, else throws ChildTimeoutError.
   */
  timeout?: number;
  timeoutValue?: O;
  /**
   * Retry a failed child (ChildFailed, or a child's own execution timeout) as a new run of the same call, after an
   * exponential backoff. Default: no retry. Attempt n > 1 gets workflow id `${workflowId}~${n}`.
   */
  retry?: RetryPolicy;
  /**
   * Wait until the child has really stopped before the parent goes on after cancelling it (timeout, close). skein
   * always does: a child closed by its parent is closed in the same transaction that decides it, and its worker's
   * later writes are refused (fenced), so the parent never resumes before the child's workflow has stopped. An
   * activity function the child was running has its `ctx.signal` aborted; whatever it still returns is dropped.
   */
  waitForCancellation?: boolean;
}

/** A started child. `result()` waits for it; the ids are stable across replays. */
export interface ChildHandle<O = unknown> {
  readonly workflow: string;
  /** The child's current run: follows its continue-as-new chain. */
  readonly runId: string;
  readonly workflowId: string;
  /** Stays the same across the child's continue-as-new chain. */
  readonly callId: string;
  result(): Command<O>;
  /**
   * Sends a signal to the child, exactly once (journaled by the parent): a `defineSignal` definition and its typed
   * payload, or a name and any payload.
   */
  signal<T>(signal: SignalDef<T>, payload: T): Command<void>;
  signal(signal: SignalDef<void>): Command<void>;
  signal(name: string, payload?: unknown): Command<void>;
}

export class ChildCommand<T> extends Command<T> {
  readonly kind = 'child' as const;
  static override readonly commandKind = 'child' as const;
  constructor(
    readonly def: WorkflowDef,
    readonly input: unknown,
    readonly options: ChildOptions,
    /** true for `child()` (start and wait), false for `startChild()` (result is a handle). */
    readonly awaited: boolean,
  ) {
    super();
  }
}

export class ChildSignalCommand extends Command<void> {
  readonly kind = 'childSignal' as const;
  static override readonly commandKind = 'childSignal' as const;
  constructor(
    readonly handle: ChildHandle<unknown>,
    readonly name: string,
    readonly payload: unknown,
  ) {
    super();
  }
}

export class ChildResultCommand<T> extends Command<T> {
  readonly kind = 'childResult' as const;
  static override readonly commandKind = 'childResult' as const;
  constructor(readonly handle: ChildHandle<T>) {
    super();
  }
}

/** Starts a child workflow and waits for its result. */
export function child<W extends WorkflowDef>(wf: W, input: InputOf<W>, options: ChildOptions<OutputOf<W>> = {}): Command<OutputOf<W>> {
  assertWorkflowDef(wf, 'child');
  return new ChildCommand<OutputOf<W>>(wf, input, options, true);
}

/** Starts a child workflow; resolves to its handle once the start is journaled. */
export function startChild<W extends WorkflowDef>(
  wf: W,
  input: InputOf<W>,
  options: ChildOptions<OutputOf<W>> = {},
): Command<ChildHandle<OutputOf<W>>> {
  assertWorkflowDef(wf, 'startChild');
  return new ChildCommand<ChildHandle<OutputOf<W>>>(wf, input, options, false);
}

/** The handles of every child this run has started so far, in step order. */
export class ChildrenCommand extends Command<ChildHandle<unknown>[]> {
  readonly kind = 'children' as const;
  static override readonly commandKind = 'children' as const;
}
export function children(): Command<ChildHandle<unknown>[]> {
  return new ChildrenCommand();
}

function assertWorkflowDef(wf: unknown, fn: string): void {
  if (!wf || typeof (wf as WorkflowDef).name !== 'string' || typeof (wf as WorkflowDef).body !== 'function') {
    throw new TypeError(`${fn}(wf, …): wf must be a workflow declared with workflow(name, function* …)`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Activities

export interface RetryPolicy {
  /** Total attempts, first included. Default 3 for activities. */
  maximumAttempts?: number;
  initialIntervalMs?: number;
  backoffCoefficient?: number;
  maximumIntervalMs?: number;
  /** Error names that are never retried. */
  nonRetryableErrors?: string[];
}

export interface ActivityOptions {
  retry?: RetryPolicy;
  /** Longest one attempt may take (ms); on expiry it fails with ActivityTimeoutError, which is retried. */
  timeoutMs?: number;
}

export interface ActivityDef<I = any, O = any> {
  readonly name: string;
  readonly fn: (input: I, ctx: ActivityContext) => O | Promise<O>;
  readonly options: ActivityOptions;
}

/**
 * Declares an activity: a plain (async) function whose result is journaled, so it never runs again on replay. It gets
 * its input and an `ActivityContext` (`runId`, `workflowId`, `activityId` — the idempotency key —, `attempt`,
 * `signal`, `heartbeat`, `heartbeatDetails`, `log`).
 */
export function defineActivity<I, O>(
  name: string,
  fn: (input: I, ctx: ActivityContext) => O | Promise<O>,
  options: ActivityOptions = {},
): ActivityDef<I, Awaited<O>> {
  if (typeof name !== 'string' || name.length === 0) throw new TypeError('defineActivity(name, fn): name must be a non-empty string');
  if (typeof fn !== 'function') throw new TypeError(`defineActivity('${name}', fn): fn must be a function`);
  return Object.freeze({ name, fn: fn as (input: I, ctx: ActivityContext) => Promise<Awaited<O>>, options });
}

export class ActivityCommand<T> extends Command<T> {
  readonly kind = 'activity' as const;
  static override readonly commandKind = 'activity' as const;
  constructor(
    readonly name: string,
    readonly input: unknown,
    readonly options: ActivityOptions,
  ) {
    super();
  }
}

/** Runs an activity by definition (typed) or by registered name. */
export function activity<A extends ActivityDef>(def: A, input: Parameters<A['fn']>[0]): Command<Awaited<ReturnType<A['fn']>>>;
export function activity<T = unknown>(name: string, input?: unknown): Command<T>;
export function activity(def: ActivityDef | string, input?: unknown): Command<unknown> {
  if (typeof def === 'string') return new ActivityCommand(def, input, {});
  if (!def || typeof def.name !== 'string') throw new TypeError('activity(def, input): def must come from defineActivity() or be a name');
  return new ActivityCommand(def.name, input, def.options);
}

// ---------------------------------------------------------------------------------------------------------------
// Timers and replay-safe values

export class SleepCommand extends Command<void> {
  readonly kind = 'sleep' as const;
  static override readonly commandKind = 'sleep' as const;
  constructor(readonly ms: number) {
    super();
  }
}

/** A durable timer. */
export function sleep(ms: number): Command<void> {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`sleep(ms): ms must be a finite number >= 0, got ${ms}`);
  return new SleepCommand(ms);
}

export class SideEffectCommand<T> extends Command<T> {
  readonly kind = 'sideEffect' as const;
  static override readonly commandKind = 'sideEffect' as const;
  constructor(
    readonly effect: 'now' | 'random' | 'uuid' | 'sideEffect',
    readonly fn?: () => T,
  ) {
    super();
  }
}

/** The current time in epoch ms, recorded on first execution and replayed. */
export const now = (): Command<number> => new SideEffectCommand<number>('now');
/** A random number in [0, 1), recorded and replayed. */
export const random = (): Command<number> => new SideEffectCommand<number>('random');
/** A random UUID v4, recorded and replayed. */
export const uuid = (): Command<string> => new SideEffectCommand<string>('uuid');
/** Runs `fn` once and journals its (JSON) result; replay returns the journaled value without calling `fn`. */
export function sideEffect<T>(fn: () => T): Command<T> {
  if (typeof fn !== 'function') throw new TypeError('sideEffect(fn): fn must be a function');
  return new SideEffectCommand<T>('sideEffect', fn);
}

// ---------------------------------------------------------------------------------------------------------------
// Signals and continue-as-new

/**
 * A signal's name and payload type, declared once and shared by the workflow that waits for it and the code that
 * sends it, so that a misspelt signal or a payload of the wrong type does not compile:
 *
 * ```ts
 * export const approve = defineSignal<{ by: string }>('approve');
 * const who = yield* waitForSignal(approve);            // { by: string }
 * await client.signal(runId, approve, { by: 'ada' });   // the payload is checked
 * ```
 */
export interface SignalDef<T = unknown> {
  readonly kind: 'signal';
  readonly name: string;
  /** Type-only marker (invariant in T), so that a payload of another type is refused. */
  readonly __payload?: (payload: T) => T;
}

/** The payload type of a signal definition. */
export type PayloadOf<S> = S extends SignalDef<infer T> ? T : never;

/** Declares a signal: its name, and (type-only) its payload type. `defineSignal('ping')` carries no payload. */
export function defineSignal<T = void>(name: string): SignalDef<T> {
  if (typeof name !== 'string' || !name) throw new TypeError('defineSignal(name): name must be a non-empty string');
  return Object.freeze({ kind: 'signal' as const, name });
}

/** The name of a signal given by definition or by name (what the journal records). */
export function signalName(signal: SignalDef<any> | string): string {
  return typeof signal === 'string' ? signal : signal?.name;
}

export class WaitForSignalCommand<T> extends Command<T> {
  readonly kind = 'waitForSignal' as const;
  static override readonly commandKind = 'waitForSignal' as const;
  constructor(
    readonly name: string,
    readonly timeout: number | null,
  ) {
    super();
  }
}

/**
 * Waits durably for the next signal named `name` and returns its payload. Signals sent before the wait are
 * buffered; each is delivered once, in send order. With `timeout` (ms), throws SignalTimeoutError when none came.
 */
export function waitForSignal<T>(signal: SignalDef<T>, options?: { timeout?: number }): Command<T>;
export function waitForSignal<T = unknown>(name: string, options?: { timeout?: number }): Command<T>;
export function waitForSignal<T = unknown>(signal: SignalDef<T> | string, options: { timeout?: number } = {}): Command<T> {
  const name = signalName(signal);
  if (typeof name !== 'string' || !name) throw new TypeError('waitForSignal(name): name must be a non-empty string or a defineSignal() definition');
  const t = options.timeout;
  if (t !== undefined && (!Number.isFinite(t) || t < 0)) throw new RangeError(`waitForSignal: timeout must be a finite number >= 0, got ${t}`);
  return new WaitForSignalCommand<T>(name, t ?? null);
}

export class ContinueAsNewCommand extends Command<never> {
  readonly kind = 'continueAsNew' as const;
  static override readonly commandKind = 'continueAsNew' as const;
  constructor(readonly input: unknown) {
    super();
  }
}

/**
 * Closes this run as `continued` and starts the next run of the same workflow id with `input`. Open children and
 * undelivered signals move to the new run. Use as `return yield* continueAsNew(next)`.
 */
export function continueAsNew<I>(input: I): Command<never> {
  return new ContinueAsNewCommand(input);
}

// ---------------------------------------------------------------------------------------------------------------
// Versioning (docs/versioning.md)

export class PatchCommand<T> extends Command<T> {
  readonly kind = 'patch' as const;
  static override readonly commandKind = 'patch' as const;
  constructor(
    readonly patchId: string,
    /** deprecatePatch(): the old branch is gone; only the journals keep the marker. */
    readonly deprecated: boolean,
  ) {
    super();
  }
}

function assertPatchId(patchId: unknown, fn: string): asserts patchId is string {
  if (typeof patchId !== 'string' || patchId.length === 0) throw new TypeError(`${fn}(patchId): patchId must be a non-empty string`);
}

/**
 * Whether this run takes the code changed under `patchId`: `if (yield* patched('id')) { new } else { old }`.
 *
 * Reached live (a new run, or a run that got here only after the deploy), it journals a PatchMarker and is true. On
 * replay it is true exactly where the journal has that marker, and false where the journal went on without one (the
 * run passed this point under the old code), so every run keeps to its own history. It takes no call path: adding
 * it moves no other command. Once no open run was started before the change, replace it with deprecatePatch(id).
 */
export function patched(patchId: string): Command<boolean> {
  assertPatchId(patchId, 'patched');
  return new PatchCommand<boolean>(patchId, false);
}

/**
 * The second step of removing a patch: the old branch is deleted and this call stays where `patched(id)` was, so
 * journals that recorded the marker still replay (it takes their marker; live it records one, marked deprecated, so
 * a rollback to the patched() code still replays). Remove it once no open run has the marker.
 */
export function deprecatePatch(patchId: string): Command<void> {
  assertPatchId(patchId, 'deprecatePatch');
  return new PatchCommand<void>(patchId, true);
}

// ---------------------------------------------------------------------------------------------------------------
// Barriers

/** What `all()` accepts: commands, arrays and plain objects of them, nested to any depth. */
export type Shape = Command<any> | readonly Shape[] | { readonly [key: string]: Shape };

/** True when S is the open `Shape` type itself (an array typed `Shape[]`, not a literal): its result is unknown. */
type IsOpenShape<S> = [Shape] extends [S] ? true : false;

export type ResultOf<S> = IsOpenShape<S> extends true
  ? unknown
  : S extends Command<infer T>
  ? T
  : S extends readonly unknown[]
    ? { -readonly [K in keyof S]: ResultOf<S[K]> }
    : S extends object
      ? { -readonly [K in keyof S]: ResultOf<S[K]> }
      : never;

export type Settled<T> = { status: 'fulfilled'; value: T } | { status: 'rejected'; reason: Error };

export type SettledOf<S> = IsOpenShape<S> extends true
  ? unknown
  : S extends Command<infer T>
  ? Settled<T>
  : S extends readonly unknown[]
    ? { -readonly [K in keyof S]: SettledOf<S[K]> }
    : S extends object
      ? { -readonly [K in keyof S]: SettledOf<S[K]> }
      : never;

export class AllCommand<T> extends Command<T> {
  readonly kind = 'all' as const;
  static override readonly commandKind = 'all' as const;
  constructor(
    readonly shape: Shape,
    readonly settled: boolean,
  ) {
    super();
  }
}

/**
 * Fans out over every command in `shape` and fans back in with the results in the same shape. Throws the failure
 * with the earliest close time (ties: lowest leaf index) as soon as one member fails.
 */
export function all<const S extends readonly Shape[] | { readonly [key: string]: Shape }>(shape: S): Command<ResultOf<S>> {
  validateShape(shape, 'all');
  return new AllCommand<ResultOf<S>>(shape, false);
}

/** Like `all`, but waits for every member and returns each outcome instead of throwing. */
export function allSettled<const S extends readonly Shape[] | { readonly [key: string]: Shape }>(shape: S): Command<SettledOf<S>> {
  validateShape(shape, 'allSettled');
  return new AllCommand<SettledOf<S>>(shape, true);
}

function validateShape(shape: unknown, fn: string): void {
  if (shape instanceof Command) return;
  if (Array.isArray(shape)) {
    for (const s of shape) validateShape(s, fn);
    return;
  }
  if (shape && typeof shape === 'object' && Object.getPrototypeOf(shape) === Object.prototype) {
    for (const s of Object.values(shape)) validateShape(s, fn);
    return;
  }
  throw new TypeError(`${fn}(…): members must be commands, arrays or plain objects of commands; got ${describeValue(shape)}`);
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return `an instance of ${(v as object).constructor?.name ?? 'Object'}`;
  return typeof v;
}
