/**
 * Typed errors. Every failure that reaches a workflow or a client is an instance of one of these classes, with its
 * data in fields (never only in the message), so callers can `instanceof` and read ids instead of parsing text.
 */

/** The JSON shape an error takes in the journal. `details` is whatever JSON the thrower attached. */
export interface SerializedError {
  name: string;
  message: string;
  details?: unknown;
  stack?: string;
  /** Set when the error was an ApplicationError marked non-retryable. */
  nonRetryable?: boolean;
  cause?: SerializedError;
}

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
 * A failure that happened elsewhere (in an activity, a child run, another worker) rebuilt from its journaled form.
 * `name`, `message` and `details` are the original's.
 */
export class RemoteError extends SkeinError {
  readonly details: unknown;
  constructor(serialized: SerializedError) {
    super(serialized.message, serialized.cause ? { cause: new RemoteError(serialized.cause) } : undefined);
    this.name = serialized.name;
    this.details = serialized.details;
    if (serialized.stack) this.stack = serialized.stack;
  }
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) {
    const out: SerializedError = { name: err.name, message: err.message };
    const details = (err as { details?: unknown }).details;
    if (details !== undefined) out.details = safeJson(details);
    if ((err as { nonRetryable?: boolean }).nonRetryable) out.nonRetryable = true;
    if (err.cause !== undefined) out.cause = serializeError(err.cause);
    return out;
  }
  return { name: 'Error', message: typeof err === 'string' ? err : safeString(err) };
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
      cause ? { cause: new RemoteError(cause) } : undefined,
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
      cause: new RemoteError(cause),
    });
  }
}

/** One attempt of an activity took longer than its `timeoutMs`. */
export class ActivityTimeoutError extends SkeinError {
  constructor(readonly activity: string, readonly timeoutMs: number) {
    super(`activity '${activity}' did not finish within ${timeoutMs} ms`);
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

/** A run closed in failure; what `client.result()` throws. */
export class WorkflowFailedError extends SkeinError {
  constructor(readonly runId: string, readonly status: string, cause?: SerializedError) {
    super(`run ${runId} ${status}${cause ? `: ${cause.name}: ${cause.message}` : ''}`, cause ? { cause: new RemoteError(cause) } : undefined);
  }
}
