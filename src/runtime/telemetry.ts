import { EventEmitter } from 'node:events';
import type { SerializedError } from './errors.js';
import { CHILD_OUTCOME_TYPES, type EventPayloads, type NewEvent } from './events.js';

/**
 * What every child.* event carries: the parent's and the child's run ids, the call, the child's workflow id and
 * workflow name, its call path in the parent and its attempt (1 unless the child is retried).
 */
export interface ChildTelemetry {
  parentRunId: string;
  childRunId: string;
  callId: string;
  childWorkflowId: string;
  workflow: string;
  path: string;
  attempt: number;
}

/**
 * Telemetry events (SPEC section 10), with the ids a dashboard or tracer needs.
 *
 * The child.* events are emitted by the process that commits the parent's activation, right after the commit, from
 * the events that commit wrote: `child.started` for each ChildScheduled (a retry is a new child.started with its
 * `attempt`), and one outcome event per journaled child outcome: ChildCompleted -> `child.completed`, ChildFailed ->
 * `child.failed`, ChildCancelled -> `child.cancelled`, ChildTerminated -> `child.terminated`, ChildTimedOut ->
 * `child.timedOut`. Replayed events never emit; a commit that is lost (crash between commit and emit) emits nothing.
 */
export interface TelemetryEvents {
  'child.started': ChildTelemetry;
  'child.completed': ChildTelemetry;
  /** The child run failed (each failed attempt of a retried child, too). */
  'child.failed': ChildTelemetry & { error: SerializedError };
  'child.cancelled': ChildTelemetry & { error?: SerializedError };
  'child.terminated': ChildTelemetry & { error?: SerializedError };
  /** `byParent`: the parent's `timeout` option expired; otherwise the child reached its own execution timeout. */
  'child.timedOut': ChildTelemetry & { error?: SerializedError; byParent: boolean };
  'cancel.truncated': { runId: string; truncated: string[]; maxChildDepth: number };
  'run.blocked': { runId: string; error: string };
}

export type TelemetryName = keyof TelemetryEvents;

/** A process-wide, typed event emitter for skein's telemetry. Listeners must not throw. */
class Telemetry extends EventEmitter {
  emitEvent<K extends TelemetryName>(name: K, data: TelemetryEvents[K]): void {
    if (this.listenerCount(name)) this.emit(name, data);
  }
  onEvent<K extends TelemetryName>(name: K, listener: (data: TelemetryEvents[K]) => void): () => void {
    this.on(name, listener);
    return () => this.off(name, listener);
  }
}

export const telemetry = new Telemetry();

const CHILD_EVENTS: readonly TelemetryName[] = ['child.started', 'child.completed', 'child.failed', 'child.cancelled', 'child.terminated', 'child.timedOut'];

type Scheduled = EventPayloads['ChildScheduled'];

/**
 * Emits the child.* events for what a run's activation has just committed (`committed`, in journal order).
 * `history` is the run's journal as its engine holds it, of which the first `committedBefore` events were committed
 * earlier: it names the children whose outcomes this commit journals. Costs nothing when nobody listens; a throwing
 * listener cannot undo or fail the commit.
 */
export function emitChildEvents(parentRunId: string, committed: readonly NewEvent[], history: readonly NewEvent[], committedBefore: number): void {
  if (!CHILD_EVENTS.some((n) => telemetry.listenerCount(n))) return;
  const byPath = new Map<string, Scheduled>();
  const byRunId = new Map<string, Scheduled>();
  const note = (e: NewEvent) => {
    if (e.type === 'ChildScheduled') {
      byPath.set(e.payload.path, e.payload);
      byRunId.set(e.payload.childRunId, e.payload);
    } else if (e.type === 'ChildStarted') {
      const s = byPath.get(e.payload.path); // continue-as-new: the same child, a newer run
      if (s) byRunId.set(e.payload.childRunId, s);
    }
  };
  // Outcomes of children scheduled in earlier commits: index those commits' child events (only when needed).
  if (committed.some((e) => e.type === 'ChildStarted' || (CHILD_OUTCOME_TYPES as readonly string[]).includes(e.type))) {
    for (let i = 0; i < Math.min(committedBefore, history.length); i++) note(history[i]!);
  }
  for (const e of committed) {
    switch (e.type) {
      case 'ChildScheduled':
        note(e);
        safeEmit('child.started', childData(parentRunId, e.payload, e.payload.childRunId));
        break;
      case 'ChildStarted':
        note(e);
        break;
      case 'ChildCompleted':
      case 'ChildFailed':
      case 'ChildCancelled':
      case 'ChildTerminated':
      case 'ChildTimedOut': {
        const p = e.payload;
        const s = byRunId.get(p.childRunId) ?? byPath.get(p.path);
        if (!s) break;
        const data = childData(parentRunId, s, p.childRunId);
        const error = (p as { error?: SerializedError }).error;
        if (e.type === 'ChildCompleted') safeEmit('child.completed', data);
        else if (e.type === 'ChildFailed') safeEmit('child.failed', { ...data, error: e.payload.error });
        else if (e.type === 'ChildCancelled') safeEmit('child.cancelled', { ...data, ...(error ? { error } : {}) });
        else if (e.type === 'ChildTerminated') safeEmit('child.terminated', { ...data, ...(error ? { error } : {}) });
        else safeEmit('child.timedOut', { ...data, ...(error ? { error } : {}), byParent: e.payload.byParent === true });
        break;
      }
    }
  }
}

/** Listeners must not throw; if one does, the commit stands, the run goes on and the other events still fire. */
function safeEmit<K extends TelemetryName>(name: K, data: TelemetryEvents[K]): void {
  try {
    telemetry.emitEvent(name, data);
  } catch {
    // ignored (see above)
  }
}

function childData(parentRunId: string, s: Scheduled, childRunId: string): ChildTelemetry {
  return { parentRunId, childRunId, callId: s.callId, childWorkflowId: s.childWorkflowId, workflow: s.workflow, path: s.path, attempt: s.attempt ?? 1 };
}
