import type { ParentClosePolicy } from './commands.js';
import type { SerializedError } from './errors.js';
import type { ChildOutcomeType, NewEvent, RunTrace } from './events.js';
import { deriveId } from './json.js';

/**
 * What the runtime says about runs, independent of where they are stored: statuses, what a new run needs, how a
 * child's close becomes its parent's delivery. Design boundary: the runtime (engine, activation) owns these types;
 * the journals (memory, PostgreSQL) import them and store what they describe (journal/journal.ts re-exports them for
 * compatibility). Nothing here imports from a journal.
 */

export type RunStatus = 'running' | 'completed' | 'failed' | 'cancelled' | 'terminated' | 'timed_out' | 'continued' | 'blocked';
export type ClosedStatus = Exclude<RunStatus, 'running' | 'blocked'>;
/** A child's close its parent journals as an outcome (a continued child is followed along its chain instead). */
export type OutcomeStatus = Exclude<ClosedStatus, 'continued'>;

export type OpenStatus = Exclude<RunStatus, ClosedStatus>;

export const OPEN_STATUSES: ReadonlySet<RunStatus> = new Set<OpenStatus>(['running', 'blocked']);
export const isOpen = (s: RunStatus): s is OpenStatus => OPEN_STATUSES.has(s);

/** Maps a closed child's status to the event its parent journals. */
export const OUTCOME_EVENT: { readonly [S in OutcomeStatus]: ChildOutcomeType } = {
  completed: 'ChildCompleted',
  failed: 'ChildFailed',
  cancelled: 'ChildCancelled',
  terminated: 'ChildTerminated',
  timed_out: 'ChildTimedOut',
};

/** A source of time. The in-memory journal's clock can be advanced by tests; the Postgres journal uses wall time. */
export interface Clock {
  now(): number;
}

/** The run id of the run that continues `runId` (continue-as-new): derived, so every host computes the same. */
export function continuedRunId(runId: string): string {
  return deriveId('r_', runId, 'continued');
}

/** What a new run row needs; its RunStarted event is written with it, atomically. */
export interface NewRun {
  runId: string;
  workflowId: string;
  workflow: string;
  input: unknown;
  queue: string;
  parentRunId?: string;
  callId?: string;
  rootRunId?: string;
  depth?: number;
  parentClosePolicy?: ParentClosePolicy;
  /** Created now, due at this time (a retried child after its backoff). Default: due at once. */
  startAt?: number;
  /** Execution timeout: written into RunStarted; the run closes as timed_out when still open then. */
  deadline?: number;
  /** OpenTelemetry trace context, written into RunStarted (set by the tracing hooks only, see telemetry/otel.ts). */
  trace?: RunTrace;
  /**
   * A child that ran to its close inside its parent's activation (an inline child: it needed nothing but quick
   * activities). It is created closed, with its journal after RunStarted, in the parent's commit, which also journals
   * its outcome in the parent: nobody is woken, nothing is leased.
   */
  completed?: { events: NewEvent[]; status: ClosedStatus; result?: unknown; error?: SerializedError };
}

/**
 * A child run that has closed or moved on (continue-as-new), as its parent reads it to journal the outcome.
 * `childRunId` is the id asked about; `currentRunId` is the newest run of its chain, whose status this is.
 */
export interface ChildOutcome {
  childRunId: string;
  currentRunId: string;
  callId: string;
  status: RunStatus;
  result: unknown;
  error: SerializedError | null;
  closedAt: number;
}

/**
 * The deliveries a parent journals for a child that moved on: ChildStarted when its chain has a newer run than the
 * parent knows (continue-as-new), then its outcome once that run has closed.
 */
export function outcomeDeliveries(path: string, knownRunId: string, o: ChildOutcome): NewEvent[] {
  const out: NewEvent[] = [];
  if (o.currentRunId !== knownRunId) {
    // One ChildStarted per run of the chain. Successor run ids are derived (continuedRunId), so the intermediate runs
    // are known without reading them.
    const chain: string[] = [];
    for (let id = knownRunId; id !== o.currentRunId && chain.length < 10_000; ) {
      id = continuedRunId(id);
      chain.push(id);
    }
    if (chain[chain.length - 1] !== o.currentRunId) chain.splice(0, chain.length, o.currentRunId);
    for (const id of chain) out.push({ type: 'ChildStarted', payload: { path, callId: o.callId, childRunId: id, closedAt: o.closedAt || 0 } });
  }
  const delivery = outcomeDelivery(path, { ...o, childRunId: o.currentRunId });
  if (delivery) out.push(delivery);
  return out;
}

/** The delivery a parent journals for a closed child (null while the child is open or has continued). */
export function outcomeDelivery(path: string, o: ChildOutcome): NewEvent | null {
  if (isOpen(o.status) || o.status === 'continued') return null;
  const base = { path, callId: o.callId, childRunId: o.childRunId, closedAt: o.closedAt };
  const status: OutcomeStatus = o.status;
  switch (OUTCOME_EVENT[status]) {
    case 'ChildCompleted':
      return { type: 'ChildCompleted', payload: { ...base, result: o.result } };
    case 'ChildFailed':
      return { type: 'ChildFailed', payload: { ...base, error: o.error ?? { name: 'Error', message: 'child failed' } } };
    case 'ChildCancelled':
      return { type: 'ChildCancelled', payload: { ...base, ...(o.error ? { error: o.error } : {}) } };
    case 'ChildTerminated':
      return { type: 'ChildTerminated', payload: { ...base, ...(o.error ? { error: o.error } : {}) } };
    case 'ChildTimedOut':
      return { type: 'ChildTimedOut', payload: { ...base, ...(o.error ? { error: o.error } : {}) } };
  }
}
