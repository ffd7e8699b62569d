import type { RetryPolicy } from './commands.js';
import { ActivityTimeoutError, serializeError, UnknownActivityError } from './errors.js';
import type { NewEvent } from './events.js';
import { journalValue } from './json.js';
import type { Registry } from './registry.js';
import type { ActivityTask } from './engine.js';
import type { Clock } from '../journal/journal.js';

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

export interface ActivityRunOptions {
  clock: Clock;
  /** Waits between attempts; tests pass one that does not really sleep. */
  delay?: (ms: number) => Promise<void>;
}

const realDelay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Runs one activity with its retry policy, in this process, and turns the outcome into the delivery the run will
 * journal. The value is round-tripped through JSON here so the workflow sees the same value live and on replay. A
 * result that cannot be journaled fails the activity (never retried), and so does an unknown activity name here; a
 * worker never gets that far: it does not run an activity it does not register, it stalls the run (run-machine.ts).
 */
export async function runActivity(registry: Registry, task: ActivityTask, opts: ActivityRunOptions): Promise<NewEvent> {
  let def;
  try {
    def = registry.activity(task.name);
  } catch (err) {
    return failed(task, err as UnknownActivityError, 1, opts.clock);
  }
  const policy = { ...DEFAULT_ACTIVITY_RETRY, ...def.options.retry };
  const delay = opts.delay ?? realDelay;
  const timeoutMs = def.options.timeoutMs;
  for (let attempt = 1; ; attempt++) {
    try {
      const value = timeoutMs === undefined ? await def.fn(task.input) : await withTimeout(() => def.fn(task.input), timeoutMs, task.name);
      let result: unknown;
      try {
        result = journalValue(value, `result of activity '${task.name}'`);
      } catch (err) {
        return failed(task, err, attempt, opts.clock);
      }
      return { type: 'ActivityCompleted', payload: { path: task.path, result, closedAt: opts.clock.now(), attempts: attempt } };
    } catch (err) {
      const name = err instanceof Error ? err.name : 'Error';
      const nonRetryable = (err as { nonRetryable?: boolean })?.nonRetryable === true || policy.nonRetryableErrors.includes(name);
      if (nonRetryable || attempt >= policy.maximumAttempts) return failed(task, err, attempt, opts.clock);
      await delay(backoffMs(policy, attempt));
    }
  }
}

/** Races one attempt against its timeout. The attempt itself cannot be aborted; its late result is ignored. */
async function withTimeout<T>(fn: () => T | Promise<T>, ms: number, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      Promise.resolve().then(fn),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new ActivityTimeoutError(name, ms)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function failed(task: ActivityTask, err: unknown, attempts: number, clock: Clock): NewEvent {
  return { type: 'ActivityFailed', payload: { path: task.path, error: serializeError(err), closedAt: clock.now(), attempts } };
}
