import type { Logger } from 'pino';
import type { FreshRun, StepResult } from '../actors/activation.js';
import type { RunObserver } from '../actors/observer.js';
import type { ActivityTask, RunEngine } from '../runtime/engine.js';
import { WorkflowCodeError, type SerializedError } from '../runtime/errors.js';
import type { Lease, RunIdentity } from '../journal/journal.js';
import type { WorkerMetrics } from './metrics.js';

/** The ids on every operator log line about a run. */
type RunIds = { runId: string } & { [K in keyof RunIdentity]: RunIdentity[K] | null };

/**
 * The worker's operator log lines about runs, and the run metrics that go with them. One line per event, each with
 * the run's ids (runId, workflowId, workflow, parentRunId, rootRunId):
 *
 *   info  run started      its first activation ran here (inline children too: `inline: true`)
 *   info  run closed       it closed here: `status`, and `error` (name, message) unless it completed
 *   info  run taken over   claimed after its lease expired in another worker's hands: `previousOwner`
 *   info  run resumed      loaded after an operator resumed it: `reason`
 *   error run blocked      its code no longer replays its journal, or has a bug: `error` (an operator must act)
 *   warn  activity retry   an attempt failed and is retried: `activity`, `path`, `attempt`, `error`, `delayMs`
 *
 * Runs closed from outside (cancel, terminate) are not logged here: the client that did it journaled why.
 */
export class WorkerObserver implements RunObserver {
  /** Who each run active here is (from its lease, or its creation by a run here), forgotten when its actor ends. */
  private readonly ids = new Map<string, RunIds>();

  constructor(
    private readonly log: Logger,
    private readonly metrics: WorkerMetrics,
    private readonly workerId: string,
  ) {}

  // ---- from the worker ----

  /** A run was handed to an actor here (claimed, acquired, or created by a commit of ours). */
  leased(lease: Lease, fresh?: FreshRun): void {
    const r = lease.run;
    const parent = fresh ? this.ids.get(fresh.parentRunId) : undefined;
    const ids: RunIds | undefined = r
      ? { runId: lease.runId, ...r }
      : fresh
        ? { runId: lease.runId, workflowId: fresh.workflowId, workflow: fresh.workflow, parentRunId: fresh.parentRunId, rootRunId: fresh.rootRunId ?? parent?.rootRunId ?? null }
        : undefined;
    if (ids) {
      if (this.ids.size > 100_000) this.ids.clear(); // a bound, should runs ever be handed over and not ended here
      this.ids.set(lease.runId, ids);
    }
    if (lease.previousOwner && lease.previousOwner !== this.workerId) {
      this.metrics.runsTakenOver.inc();
      this.log.info({ ...(ids ?? { runId: lease.runId }), previousOwner: lease.previousOwner }, 'run taken over');
    }
  }

  /** The run's actor here ended (suspended, closed, lost, ...): its next holder brings its ids again. */
  ended(runId: string): void {
    this.ids.delete(runId);
  }

  // ---- from the run actors (RunObserver) ----

  activating(): void {
    this.metrics.activations.inc();
  }

  activated(runId: string, engine: RunEngine, result: StepResult, first: boolean): void {
    const ids = this.identify(runId, engine);
    if (first) this.started(ids);
    if (result.kind === 'blocked') {
      this.blocked(ids, result.error);
      return;
    }
    // children that ran to their close inside this activation, committed with it
    for (const c of result.output.children) {
      if (!c.completed) continue;
      const kid: RunIds = { runId: c.runId, workflowId: c.workflowId, workflow: c.workflow, parentRunId: runId, rootRunId: ids.rootRunId };
      this.started(kid, true);
      this.closed(kid, c.completed.status, c.completed.error ?? null, true);
    }
    const close = result.output.close;
    if (close) this.closed(ids, close.status, 'error' in close ? close.error : null);
  }

  blockedOnLoad(runId: string, error: unknown): void {
    this.blocked(this.ids.get(runId) ?? { runId, workflowId: null, workflow: null, parentRunId: null, rootRunId: null }, error);
  }

  resumed(runId: string, engine: RunEngine, reason: string): void {
    this.metrics.runsResumed.inc();
    this.log.info({ ...this.identify(runId, engine), reason }, 'run resumed');
  }

  activityRetry(runId: string, engine: RunEngine, task: ActivityTask, retry: { attempt: number; error: unknown; delayMs: number }): void {
    this.metrics.activityRetries.inc();
    this.log.warn(
      { ...this.identify(runId, engine), activity: task.name, path: task.path, attempt: retry.attempt, error: brief(retry.error), delayMs: retry.delayMs },
      'activity retry',
    );
  }

  // ---------------------------------------------------------------------------------------------------------------

  private started(ids: RunIds, inline = false): void {
    this.metrics.runsStarted.inc();
    // (checked first: a fan-out of thousands of inline children would build two line objects each at any level)
    if (this.log.isLevelEnabled('info')) this.log.info({ ...ids, ...(inline ? { inline } : {}) }, 'run started');
  }

  private closed(ids: RunIds, status: string, error: SerializedError | null, inline = false): void {
    this.metrics.runsClosed.inc({ status });
    if (this.log.isLevelEnabled('info')) this.log.info({ ...ids, status, ...(error ? { error: brief(error) } : {}), ...(inline ? { inline } : {}) }, 'run closed');
  }

  private blocked(ids: RunIds, error: unknown): void {
    this.metrics.runsBlocked.inc();
    // a bug in the workflow code is logged as the code's own error (as the journal records it), with its stack
    const err = error instanceof WorkflowCodeError && error.cause instanceof Error ? error.cause : error;
    this.log.error({ ...ids, err }, 'run blocked: its code no longer replays its journal, or throws a programming error (resume it after a fix)');
  }

  /** The run's ids: as handed over, else from its journal's RunStarted (a child being run inline by its parent). */
  private identify(runId: string, engine: RunEngine): RunIds {
    const known = this.ids.get(runId);
    if (known) return known;
    const first = engine.events[0];
    const started = first?.type === 'RunStarted' ? first.payload : undefined;
    const parentRunId = started?.parentRunId ?? null;
    return {
      runId,
      workflowId: engine.run.workflowId,
      workflow: started?.workflow ?? null,
      parentRunId,
      rootRunId: parentRunId ? (this.ids.get(parentRunId)?.rootRunId ?? null) : runId,
    };
  }
}

/** An error as a log line shows it: its name and message (the journal keeps the rest). */
function brief(err: unknown): { name: string; message: string } {
  if (err && typeof err === 'object' && 'message' in err) {
    const e = err as { name?: unknown; message?: unknown };
    return { name: typeof e.name === 'string' ? e.name : 'Error', message: String(e.message) };
  }
  return { name: 'Error', message: String(err) };
}
