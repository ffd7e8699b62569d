import type { RetryPolicy } from './commands.js';
import { ActivityTimeoutError, serializeError, UnknownActivityError } from './errors.js';
import type { NewEvent } from './events.js';
import { deriveId, journalValue } from './json.js';
import type { Registry } from './registry.js';
import type { ActivityTask } from './engine.js';
import type { Clock } from '../journal/journal.js';
import pino, { type Logger } from 'pino';
import { AbortLatch } from './abort-latch.js';

export const DEFAULT_ACTIVITY_RETRY: Required<RetryPolicy> = {
  maximumAttempts: 3,
  initialIntervalMs: 100,
  backoffCoefficient: 2,
  maximumIntervalMs: 10_000,
  nonRetryableErrors: [],
};

/** Delay before attempt `attempt + 1`, after `attempt` failures: exponential, capped. */
export function backoffMs(policy: Required<RetryPolicy>, attempt: number): number {
  return Math.min(policy.maximumIntervalMs, policy.initialIntervalMs * policy.backoffCoefficient ** (attempt - 1));
}

/**
 * Delay before a run stalled on an activity its worker does not register is due again, after `attempts` such
 * releases in a row: 1 s doubling, capped at 60 s, then jittered to between 80% and 120% so that runs stalled together
 * do not all come back at once.
 */
export function unavailableActivityBackoffMs(attempts: number, random: () => number = Math.random): number {
  const base = Math.min(60_000, 1000 * 2 ** Math.min(Math.max(attempts, 1) - 1, 20));
  return Math.round(base * (0.8 + 0.4 * random()));
}

/**
 * The second argument of every activity function: who it runs for, which attempt this is, a signal that says when
 * to stop, a heartbeat and a logger.
 *
 * ```ts
 * const charge = defineActivity('charge', async (o: Order, ctx) => {
 *   ctx.log.info({ amount: o.amount }, 'charging');
 *   return payments.charge(o, { idempotencyKey: ctx.activityId, signal: ctx.signal });
 * });
 * ```
 */
export interface ActivityContext {
  /** The run that scheduled this activity. */
  readonly runId: string;
  readonly workflowId: string;
  /** The activity's name. */
  readonly activity: string;
  /**
   * Stable across attempts, workers and replays: derived from the run id and the call's position in the workflow
   * (its call path), so it is the idempotency key to give a payment or e-mail API.
   */
  readonly activityId: string;
  /** 1 for the first attempt, then 2, 3, … per retry (in this worker; a worker that takes the run over starts at 1). */
  readonly attempt: number;
  /**
   * Aborted when this attempt's result is no longer wanted, with the reason as `signal.reason`: the attempt's
   * `timeoutMs` passed (ActivityTimeoutError); its run is being cancelled (CancelledError); its run was closed from
   * outside (cancel, terminate), closed, or taken over, or the worker shut down past its grace period
   * (ActivityAbortedError). Pass it to `fetch`, database drivers, child processes.
   */
  readonly signal: AbortSignal;
  /**
   * Says the activity is alive: restarts this attempt's `timeoutMs` (so a long activity that heartbeats is not
   * timed out), and keeps `details` (when given) for the next attempt, which reads them as `heartbeatDetails`.
   */
  heartbeat(details?: unknown): void;
  /** The last details the previous attempts heartbeated (e.g. how far a batch got), or undefined. */
  readonly heartbeatDetails: unknown;
  /** A pino logger bound to the run: runId, workflowId, activity, activityId and attempt on every line. */
  readonly log: Logger;
}

/** The idempotency key of the activity at `path` in run `runId` (what `ctx.activityId` is). */
export function activityIdOf(runId: string, path: string): string {
  return deriveId('a_', runId, path);
}

export interface ActivityRunOptions {
  clock: Clock;
  /** Waits between attempts; tests pass one that does not really sleep. */
  delay?: (ms: number) => Promise<void>;
  /** The run the activity belongs to (its context's ids). */
  run?: { runId: string; workflowId: string };
  /**
   * Aborted when the activity's result is no longer wanted (its run was cancelled or closed, the worker shuts down):
   * the running attempt's `ctx.signal` is aborted with the same reason, runActivity stops waiting for it and retries
   * no more, and resolves at once with the activity failed with that reason.
   */
  signal?: AbortLatch;
  /** The logger activities log to (bound to the run for each attempt). Default: pino at SKEIN_LOG_LEVEL (info). */
  log?: Logger;
  /** Told of each failed attempt that is retried (after `delayMs`): the worker logs it. Must not throw. */
  onRetry?: (retry: { attempt: number; error: unknown; delayMs: number }) => void;
}

const realDelay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let defaultLog: Logger | undefined;
/** One process-wide logger for activities run without one (the test environment): SKEIN_LOG_LEVEL, default info. */
function fallbackLog(): Logger {
  return (defaultLog ??= pino({ level: process.env.SKEIN_LOG_LEVEL ?? 'info' }));
}

/**
 * Runs one activity with its retry policy, in this process, and turns the outcome into the delivery the run will
 * journal. The value is round-tripped through JSON here so the workflow sees the same value live and on replay. A
 * result that cannot be journaled fails the activity (never retried), and so does an unknown activity name here; a
 * worker never gets that far: it does not run an activity it does not register, it stalls the run (run-machine.ts).
 *
 * Each attempt gets an ActivityContext. An attempt that outlives its `timeoutMs` (restarted by each heartbeat) has its
 * signal aborted and fails with ActivityTimeoutError (retryable); one whose `opts.signal` aborts ends the activity at
 * once, failed with the signal's reason (no more retries). JavaScript cannot preempt a function: an attempt that
 * ignores its signal keeps running, and whatever it returns then is ignored.
 */
export async function runActivity(registry: Registry, task: ActivityTask, opts: ActivityRunOptions): Promise<NewEvent> {
  let def;
  try {
    def = registry.activity(task.name);
  } catch (err) {
    return failed(task, err as UnknownActivityError, 1, opts.clock);
  }
  const policy = def.options.retry ? { ...DEFAULT_ACTIVITY_RETRY, ...def.options.retry } : DEFAULT_ACTIVITY_RETRY;
  const delay = opts.delay ?? realDelay;
  const stop = opts.signal;
  const call = new ActivityCall(task, opts, def.options.timeoutMs);
  for (let attempt = 1; ; attempt++) {
    if (stop?.aborted) return failed(task, stop.reason, Math.max(1, attempt - 1), opts.clock);
    try {
      const value = await new AttemptContext(call, attempt).run(def.fn);
      let result: unknown;
      try {
        result = journalValue(value, `result of activity '${task.name}'`);
      } catch (err) {
        return failed(task, err, attempt, opts.clock);
      }
      return { type: 'ActivityCompleted', payload: { path: task.path, result, closedAt: opts.clock.now(), attempts: attempt } };
    } catch (err) {
      if (stop?.aborted) return failed(task, stop.reason, attempt, opts.clock);
      const name = err instanceof Error ? err.name : 'Error';
      const nonRetryable = (err as { nonRetryable?: boolean })?.nonRetryable === true || policy.nonRetryableErrors.includes(name);
      if (nonRetryable || attempt >= policy.maximumAttempts) return failed(task, err, attempt, opts.clock);
      const delayMs = backoffMs(policy, attempt);
      opts.onRetry?.({ attempt, error: err, delayMs });
      await untilAborted(delay(delayMs), stop);
    }
  }
}

/** What every attempt of one activity call shares: who it runs for, its timeout, the details it heartbeated. */
class ActivityCall {
  readonly runId: string;
  readonly workflowId: string;
  private id: string | undefined;
  details: unknown;
  constructor(
    readonly task: ActivityTask,
    readonly opts: ActivityRunOptions,
    readonly timeoutMs: number | undefined,
  ) {
    this.runId = opts.run?.runId ?? '';
    this.workflowId = opts.run?.workflowId ?? '';
  }

  /** (derived on first read: hashing it for every trivial activity is measurable in large fan-outs) */
  get activityId(): string {
    return (this.id ??= activityIdOf(this.runId, this.task.path));
  }
}

/**
 * One attempt, and the ActivityContext its function gets. A class with its accessors on the prototype, because this
 * runs once per activity: a fan-out of 1,000 trivial children paid measurably for an object literal's closures, an
 * AbortController per attempt and a listener on it (see AbortLatch).
 */
class AttemptContext implements ActivityContext {
  private latch: AbortLatch | null = null;
  private timer: NodeJS.Timeout | undefined;
  private done = false;
  private logger: Logger | undefined;
  private beat: ((details?: unknown) => void) | undefined;
  readonly heartbeatDetails: unknown;

  constructor(
    private readonly call: ActivityCall,
    readonly attempt: number,
  ) {
    this.heartbeatDetails = call.details;
  }

  get runId(): string {
    return this.call.runId;
  }
  get workflowId(): string {
    return this.call.workflowId;
  }
  get activity(): string {
    return this.call.task.name;
  }
  get activityId(): string {
    return this.call.activityId;
  }
  get signal(): AbortSignal {
    return this.abortLatch().signal;
  }
  /** (a function value, so `const { heartbeat } = ctx` works) */
  get heartbeat(): (details?: unknown) => void {
    return (this.beat ??= (details?: unknown) => {
      if (details !== undefined) this.call.details = details;
      this.arm();
    });
  }
  get log(): Logger {
    const { runId, workflowId, task, opts } = this.call;
    return (this.logger ??= (opts.log ?? fallbackLog()).child({ runId, workflowId, activity: task.name, activityId: this.activityId, attempt: this.attempt }));
  }

  /**
   * Calls the activity and races it against its timeout (restarted by each heartbeat) and the call's outer latch;
   * either aborts this attempt's latch (so its `ctx.signal`), with its reason, and rejects with that reason.
   */
  async run(fn: (input: any, ctx: ActivityContext) => unknown): Promise<unknown> {
    const { task, opts, timeoutMs } = this.call;
    const stop = opts.signal;
    if (timeoutMs === undefined && !stop) return await fn(task.input, this);
    const latch = this.abortLatch();
    const unlink = stop?.onAbort((reason) => latch.abort(reason));
    this.arm();
    try {
      return await new Promise<unknown>((resolve, reject) => {
        latch.onAbort(reject);
        Promise.resolve()
          .then(() => fn(task.input, this))
          .then(resolve, reject);
      });
    } finally {
      this.done = true;
      clearTimeout(this.timer);
      unlink?.();
    }
  }

  private abortLatch(): AbortLatch {
    return (this.latch ??= new AbortLatch());
  }

  private arm(): void {
    const { timeoutMs, task } = this.call;
    if (timeoutMs === undefined || this.done) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.abortLatch().abort(new ActivityTimeoutError(task.name, timeoutMs)), timeoutMs);
  }
}

/** Waits for `p`, or until `latch` aborts. */
async function untilAborted(p: Promise<void>, latch: AbortLatch | undefined): Promise<void> {
  if (!latch) return p;
  if (latch.aborted) return;
  let unlink: () => void = () => {};
  try {
    await Promise.race([p, new Promise<void>((r) => (unlink = latch.onAbort(() => r())))]);
  } finally {
    unlink();
  }
}

function failed(task: ActivityTask, err: unknown, attempts: number, clock: Clock): NewEvent {
  return { type: 'ActivityFailed', payload: { path: task.path, error: serializeError(err), closedAt: clock.now(), attempts } };
}
