import type { ActivityTask, RunEngine } from '../runtime/engine.js';
import type { StepResult } from './activation.js';

/**
 * What a host wants to know about the runs it drives, beyond the journal: the worker turns these into its operator
 * log lines (run started, closed, blocked, resumed, activity retried) and its metrics. The run actor and the
 * activation call it at the few points where those things happen; it must not throw (a throwing observer cannot fail
 * a run: callers catch).
 */
export interface RunObserver {
  /** An activation of `runId` begins. */
  activating(runId: string): void;
  /**
   * An activation of `runId` ended in a commit (`committed`) or blocked the run (`blocked`). `first`: it was the run's
   * first activation (its journal held only RunStarted before).
   */
  activated(runId: string, engine: RunEngine, result: StepResult, first: boolean): void;
  /** Loading the run (replay) blocked it: its code no longer replays its journal, or throws a programming error. */
  blockedOnLoad(runId: string, error: unknown): void;
  /** The run was loaded right after an operator resumed it (its journal ends with RunResumed). */
  resumed(runId: string, engine: RunEngine, reason: string): void;
  /** An activity attempt failed and is retried after `delayMs`. */
  activityRetry(runId: string, engine: RunEngine, task: ActivityTask, retry: { attempt: number; error: unknown; delayMs: number }): void;
}

/** Calls an observer method, swallowing what it throws (observers must not fail runs). */
export function observe(observer: RunObserver | undefined, call: (o: RunObserver) => void): void {
  if (!observer) return;
  try {
    call(observer);
  } catch {
    // an observer's bug is not the run's problem
  }
}
