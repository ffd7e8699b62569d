/**
 * Typed errors. Every failure that reaches a workflow or a client is an instance of one of these classes, with its
 * data in fields (never only in the message), so callers can `instanceof` and read ids instead of parsing text.
 */

// This module's own exports: errorClasses() is every error class it exports.
import * as self from './errors.js';

/**
 * The JSON shape an error takes in the journal. `details` is whatever JSON the thrower attached.
 *
 * Round trip (serializeError / deserializeError): an instance of one of skein's classes (or of a user's subclass of
 * one) keeps its own data fields in `fields` and comes back as the same class (errorClasses(), looked up by `class`,
 * else `name`) with the same name, message, fields, details, stack and cause. Any other error (a TypeError, a user's
 * own class) comes back as a RemoteError with the original's name, message, details and stack. Journals written
 * before `fields`, `class` and `stack` existed still revive: without `fields`, a class's fields are absent (a
 * CancelledError / TerminatedError takes its `reason` from the message, as the journals write them).
 */
export interface SerializedError {
  name: string;
  message: string;
  details?: unknown;
  /** The original stack (at most MAX_STACK_CHARS), so operators see where it was thrown, not where it was revived. */
  stack?: string;
  /** Set when the error was an ApplicationError marked non-retryable. */
  nonRetryable?: boolean;
  cause?: SerializedError;
  /**
   * The skein class to revive as, when it is not `name` (an ApplicationError given its own name, or an instance of a
   * user's subclass of a skein class, which comes back as the nearest skein class with the user's name).
   */
  class?: string;
  /** The error's own data fields (skein classes and subclasses of them), e.g. an ActivityFailedError's `activity`. */
  fields?: Record<string, unknown>;
}

/** Longest stack text kept in the journal (the rest is cut, marked with an ellipsis). */
export const MAX_STACK_CHARS = 8000;

/** Nested causes kept in the journal (deeper ones, and cycles, are cut). */
const MAX_CAUSE_DEPTH = 8;

/** Base class for every error skein defines. */
export class SkeinError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * An error thrown by user code (activity or workflow) that carries JSON details across the journal. Users may throw
 * it to attach data or to mark a failure as not worth retrying.
 */
export class ApplicationError extends SkeinError {
  readonly details: unknown;
  readonly nonRetryable: boolean;
  constructor(message: string, options: { details?: unknown; nonRetryable?: boolean; name?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.details = options.details;
    this.nonRetryable = options.nonRetryable ?? false;
    if (options.name) this.name = options.name;
  }
}

/**
 * A failure of a class skein does not know (a TypeError, a user's own class) rebuilt from its journaled form, in an
 * activity, a child run or another worker. `name`, `message`, `details` and `stack` are the original's.
 */
export class RemoteError extends SkeinError {
  readonly details: unknown;
  constructor(serialized: SerializedError) {
    super(serialized.message, serialized.cause ? { cause: deserializeError(serialized.cause) } : undefined);
    this.name = serialized.name;
    this.details = serialized.details;
    if (serialized.stack) this.stack = serialized.stack;
  }
}

/** The journal form of any thrown value (see SerializedError for what survives). */
export function serializeError(err: unknown): SerializedError {
  return serializeAt(err, 0);
}

function serializeAt(err: unknown, depth: number): SerializedError {
  if (!(err instanceof Error)) return { name: 'Error', message: typeof err === 'string' ? err : safeString(err) };
  const out: SerializedError = { name: String(err.name), message: String(err.message) };
  if (err instanceof SkeinError && !(err instanceof RemoteError)) {
    const cls = revivalClassOf(err);
    if (cls && cls.name !== out.name) out.class = cls.name;
    const fields = ownFields(err);
    if (fields) out.fields = fields;
  }
  const details = (err as { details?: unknown }).details;
  if (details !== undefined) out.details = safeJson(details);
  if ((err as { nonRetryable?: boolean }).nonRetryable) out.nonRetryable = true;
  if (typeof err.stack === 'string' && err.stack) out.stack = err.stack.length > MAX_STACK_CHARS ? err.stack.slice(0, MAX_STACK_CHARS) + '…' : err.stack;
  if (err.cause !== undefined && err.cause !== err && depth < MAX_CAUSE_DEPTH) out.cause = serializeAt(err.cause, depth + 1);
  return out;
}

/** Keys every error has or that SerializedError carries at its top level: never part of `fields`. */
const NOT_FIELDS = new Set(['name', 'message', 'stack', 'cause', 'details', 'nonRetryable']);

/** Keys a journaled `fields` object must not set on a revived error (JSON may hold an own `__proto__`). */
const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function ownFields(err: Error): Record<string, unknown> | undefined {
  let out: Record<string, unknown> | undefined;
  for (const key of Object.keys(err)) {
    if (NOT_FIELDS.has(key)) continue;
    const v = (err as unknown as Record<string, unknown>)[key];
    if (v === undefined || typeof v === 'function') continue;
    (out ??= {})[key] = safeJson(v);
  }
  return out;
}

/**
 * Rebuilds an error from its journal form: skein's classes (and subclasses of them, as their nearest skein class) as
 * themselves, through errorClasses(); anything else as a RemoteError. The original stack is kept.
 */
export function deserializeError(s: SerializedError): Error {
  const cls = errorClasses().get(s.class ?? s.name);
  if (!cls) return new RemoteError(s);
  const cause = s.cause ? deserializeError(s.cause) : undefined;
  // An instance of the class without running its constructor (whose parameters are not the journal's): a real Error
  // object whose prototype is the class's, so `instanceof` works; then the journaled data goes on it.
  const err = Reflect.construct(Error, cause ? [s.message, { cause }] : [s.message], cls) as Error & Record<string, unknown>;
  err.name = s.name;
  const fields = s.fields ?? LEGACY_FIELDS[cls.name]?.(s);
  if (fields) for (const [k, v] of Object.entries(fields)) if (!NOT_FIELDS.has(k) && !UNSAFE_KEYS.has(k)) err[k] = v;
  if (s.details !== undefined || err instanceof ApplicationError) err.details = s.details;
  if (err instanceof ApplicationError) (err as { nonRetryable: boolean }).nonRetryable = s.nonRetryable ?? false;
  // No journaled stack (older journals): keep this one's frames under the original's header.
  err.stack = s.stack ?? `${s.name}: ${s.message}\n${(err.stack ?? '').split('\n').slice(1).join('\n')}`;
  return err;
}

/** Journals written before `fields` existed (and the journals' own cancel/terminate closes) carry only a message. */
const LEGACY_FIELDS: Record<string, (s: SerializedError) => Record<string, unknown>> = {
  CancelledError: (s) => ({ reason: s.message }),
  TerminatedError: (s) => ({ reason: s.message }),
};

function revivalClassOf(err: Error): ErrorClass | undefined {
  for (let p = Object.getPrototypeOf(err); p && p !== Error.prototype; p = Object.getPrototypeOf(p)) {
    const c = p.constructor as ErrorClass;
    if (errorClasses().get(c.name) === c) return c;
  }
  return undefined;
}

function safeJson(v: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(v));
  } catch {
    return safeString(v);
  }
}

function safeString(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Ids that identify one child invocation, carried by every child failure. */
export interface ChildRef {
  workflow: string;
  callId: string;
  childRunId: string;
  childWorkflowId: string;
}

abstract class ChildError extends SkeinError implements ChildRef {
  readonly workflow: string;
  readonly callId: string;
  readonly childRunId: string;
  readonly childWorkflowId: string;
  constructor(verb: string, ref: ChildRef, cause?: SerializedError) {
    super(
      `child workflow '${ref.workflow}' (${ref.childWorkflowId}) ${verb}${cause ? `: ${cause.name}: ${cause.message}` : ''}`,
      cause ? { cause: deserializeError(cause) } : undefined,
    );
    this.workflow = ref.workflow;
    this.callId = ref.callId;
    this.childRunId = ref.childRunId;
    this.childWorkflowId = ref.childWorkflowId;
  }
}

export class ChildFailedError extends ChildError {
  constructor(ref: ChildRef, cause: SerializedError) {
    super('failed', ref, cause);
  }
}
export class ChildCancelledError extends ChildError {
  constructor(ref: ChildRef, cause?: SerializedError) {
    super('was cancelled', ref, cause);
  }
}
export class ChildTerminatedError extends ChildError {
  constructor(ref: ChildRef, cause?: SerializedError) {
    super('was terminated', ref, cause);
  }
}
export class ChildTimeoutError extends ChildError {
  constructor(ref: ChildRef, cause?: SerializedError) {
    super('timed out', ref, cause);
  }
}

/** Starting a child would put it deeper than `maxChildDepth`. Deterministic: replay throws it at the same call. */
export class ChildDepthExceededError extends SkeinError {
  constructor(
    readonly workflow: string,
    readonly depth: number,
    readonly maxChildDepth: number,
  ) {
    super(`cannot start child '${workflow}' at depth ${depth}: maxChildDepth is ${maxChildDepth}`);
  }
}

/** Two child calls in one run used the same `id` option. */
export class DuplicateChildIdError extends SkeinError {
  constructor(readonly id: string, readonly childWorkflowId: string) {
    super(`child id '${id}' is already used by another child of this run (workflow id ${childWorkflowId})`);
  }
}

export class ActivityFailedError extends SkeinError {
  constructor(
    readonly activity: string,
    readonly callPath: string,
    readonly attempts: number,
    cause: SerializedError,
  ) {
    super(`activity '${activity}' failed after ${attempts} attempt(s): ${cause.name}: ${cause.message}`, {
      cause: deserializeError(cause),
    });
  }
}

/** One attempt of an activity took longer than its `timeoutMs`. */
export class ActivityTimeoutError extends SkeinError {
  constructor(readonly activity: string, readonly timeoutMs: number) {
    super(`activity '${activity}' did not finish within ${timeoutMs} ms`);
  }
}

/**
 * The `reason` of an activity's `ctx.signal` when its result is no longer wanted in this process: its run was closed
 * from outside (cancelled or terminated), closed by its own code, taken over by another worker, or the worker shut
 * down past its grace period. (A timeout aborts with ActivityTimeoutError, a graceful cancel of the run with
 * CancelledError.) The activity's result, if it still produces one, is dropped.
 */
export class ActivityAbortedError extends SkeinError {
  constructor(readonly reason: string) {
    super(`activity aborted: ${reason}`);
  }
}

/** A run reached its execution timeout (client.start's `executionTimeoutMs`). */
export class RunTimeoutError extends SkeinError {
  constructor(readonly runId: string, readonly deadline: number) {
    super(`run ${runId} reached its execution timeout`);
  }
}

/** Delivered at the current `yield` of a run being cancelled. */
export class CancelledError extends SkeinError {
  constructor(readonly reason: string) {
    super(`run cancelled: ${reason}`);
  }
}

/** A run was terminated (client.terminate, or a parent-close policy `terminate`): the error of its close. */
export class TerminatedError extends SkeinError {
  constructor(readonly reason: string) {
    super(`run terminated: ${reason}`);
  }
}

/** `waitForSignal(name, { timeout })` saw no signal in time. */
export class SignalTimeoutError extends SkeinError {
  constructor(readonly signal: string, readonly timeoutMs: number) {
    super(`no signal '${signal}' arrived within ${timeoutMs} ms`);
  }
}

/** A signal was sent to a run that has closed. */
export class RunClosedError extends SkeinError {
  constructor(readonly runId: string, readonly status: string, what = 'signal') {
    super(`cannot ${what} run ${runId}: it is ${status}`);
  }
}

/** The run's code issued a different command than its journal recorded. The run is blocked, not failed. */
export class NonDeterminismError extends SkeinError {
  constructor(
    readonly seq: number,
    readonly journaled: string,
    readonly issued: string,
  ) {
    super(`non-deterministic workflow: journal event seq ${seq} recorded ${journaled}, but the code now issued ${issued}`);
  }
}

/** A writer tried to append to a run whose lease it no longer holds. */
export class LeaseLostError extends SkeinError {
  constructor(readonly runId: string, detail = 'the lease token no longer matches') {
    super(`lease lost on run ${runId}: ${detail}`);
  }
}

export class UnknownWorkflowError extends SkeinError {
  constructor(readonly workflow: string) {
    super(`unknown workflow '${workflow}': it is not registered with this worker or client`);
  }
}

export class UnknownActivityError extends SkeinError {
  constructor(readonly activity: string) {
    super(`unknown activity '${activity}': it is not registered with this worker`);
  }
}

export class UnknownRunError extends SkeinError {
  constructor(readonly runId: string) {
    super(`unknown run '${runId}'`);
  }
}

export class DuplicateWorkflowIdError extends SkeinError {
  constructor(readonly workflowId: string, readonly existingRunId: string, readonly existingWorkflow: string) {
    super(`workflow id '${workflowId}' is already used by run ${existingRunId} of workflow '${existingWorkflow}'`);
  }
}

/** A value that must cross the journal is not JSON-serializable, or is larger than the size limit. */
export class PayloadError extends SkeinError {
  constructor(readonly what: string, detail: string) {
    super(`${what} cannot be journaled: ${detail}`);
  }
}

/** The journal read back for a run is not a valid history (gap in seq, unknown event type, missing start). */
export class CorruptJournalError extends SkeinError {
  constructor(readonly runId: string, detail: string) {
    super(`journal of run ${runId} is corrupt: ${detail}`);
  }
}

/** A run closed in failure; what `client.result()` throws. Its cause is the run's error, revived. */
export class WorkflowFailedError extends SkeinError {
  constructor(readonly runId: string, readonly status: string, cause?: SerializedError) {
    super(`run ${runId} ${status}${cause ? `: ${cause.name}: ${cause.message}` : ''}`, cause ? { cause: deserializeError(cause) } : undefined);
  }
}

/** `client.result(ref, { timeoutMs })` gave up waiting: the run is still open. */
export class ResultTimeoutError extends SkeinError {
  constructor(readonly runId: string, readonly timeoutMs: number) {
    super(`timed out after ${timeoutMs} ms waiting for run ${runId}`);
  }
}

/** An argument of a client call is not valid (e.g. an empty or non-string `workflowId`). Nothing was written. */
export class InvalidArgumentError extends SkeinError {
  constructor(readonly argument: string, detail: string) {
    super(`invalid ${argument}: ${detail}`);
  }
}

type ErrorClass = abstract new (...args: never[]) => Error;

let table: Map<string, ErrorClass> | undefined;

/**
 * The one table of skein's error classes that revive as themselves, by class name: every class this module exports
 * that is (or extends) SkeinError, so a class added here is in it without being listed. RemoteError is not: it stands
 * for a foreign class and revives as a RemoteError named after the original.
 */
export function errorClasses(): ReadonlyMap<string, ErrorClass> {
  if (!table) {
    table = new Map();
    for (const v of Object.values(self)) {
      if (typeof v === 'function' && (v === SkeinError || v.prototype instanceof SkeinError) && v !== RemoteError) table.set(v.name, v as ErrorClass);
    }
  }
  return table;
}

/**
 * Workflow code threw a programming error (TypeError, ReferenceError, RangeError, SyntaxError, EvalError, URIError)
 * that it did not catch. Such a run is blocked, not failed: once the code is fixed an operator resumes it and it
 * replays with the new code. `cause` is the original error, with its stack.
 */
export class WorkflowCodeError extends SkeinError {
  constructor(readonly workflow: string, cause: Error) {
    super(`workflow '${workflow}' threw ${cause.name}: ${cause.message} (a bug in the workflow code: the run is blocked until it is resumed)`, { cause });
  }
}

/** The error classes that mean "a bug in the code", not "the workflow decided to fail". */
export function isProgrammingError(err: unknown): err is Error {
  return (
    err instanceof TypeError ||
    err instanceof ReferenceError ||
    err instanceof RangeError ||
    err instanceof SyntaxError ||
    err instanceof EvalError ||
    err instanceof URIError
  );
}

/** An operator action needs the run in another state (e.g. resume of a run that is not blocked). */
export class RunStateError extends SkeinError {
  constructor(readonly runId: string, readonly status: string, readonly action: string, detail = '') {
    super(`cannot ${action} run ${runId}: it is ${status}${detail ? ` (${detail})` : ''}`);
  }
}

/**
 * A setting skein cannot use, so retrying does not help: a malformed DATABASE_URL, a database that refuses the
 * credentials or does not exist, a bad command-line value. `setting` names it (e.g. 'DATABASE_URL', '--lease-ms');
 * `value` is what was given, any password in it replaced by '***'.
 */
export class ConfigError extends SkeinError {
  constructor(readonly setting: string, readonly value: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * The database did not answer (connection refused or cut, host unreachable, server starting up or shutting down):
 * worth retrying. `url` is the connection URL, its password replaced by '***'; `cause` the driver's error.
 */
export class DatabaseUnreachableError extends SkeinError {
  constructor(readonly url: string, options?: { cause?: unknown }) {
    const cause = options?.cause as { message?: string; code?: string } | undefined;
    const reason = cause?.message || cause?.code || 'no answer';
    super(`database unreachable at ${url}: ${reason}`, options);
  }
}
