import type { SerializedError } from './errors.js';

/**
 * The typed events of a run's journal. A run's state is a pure function of this sequence.
 *
 * Two families:
 *  - **decisions** are written when the workflow code issues a command (or closes, or picks a barrier failure). On
 *    replay the code must issue the same decision at the same point, or the run is blocked as non-deterministic.
 *  - **deliveries** bring news from outside (a child closed, an activity finished, a timer fired). They are written
 *    by the run itself, under its own lease, in the activation that observes them.
 */
export type EventPayloads = {
  /** Always seq 1. Written by whoever creates the run (a client, or the parent's activation). */
  RunStarted: {
    workflow: string;
    workflowId: string;
    input: unknown;
    parentRunId?: string;
    callId?: string;
    depth: number;
  };

  // decisions
  ChildScheduled: {
    path: string;
    callId: string;
    workflow: string;
    inputHash: string;
    childRunId: string;
    childWorkflowId: string;
    /** Present when the user passed `id`. */
    id?: string;
    awaited: boolean;
    queue?: string;
  };
  /** The start was refused deterministically (depth bound, duplicate id): the call fails without a child run. */
  ChildStartFailed: { path: string; workflow: string; inputHash: string; error: SerializedError };
  ActivityScheduled: { path: string; name: string; inputHash: string; input: unknown };
  TimerStarted: { path: string; fireAt: number };
  /** now(), random(), uuid(), sideEffect(): the value is recorded once and replayed. */
  SideEffect: { path: string; kind: SideEffectKind; value: unknown };
  /** The barrier at `path` threw the failure of leaf `leafIndex` (earliest close, then lowest leaf index). */
  BarrierFailed: { path: string; leafIndex: number; leafPath: string };
  /** The workflow caught the failure thrown at the command `path`. */
  FailureHandled: { path: string; error: SerializedError };
  RunCompleted: { result: unknown };
  RunFailed: { error: SerializedError };

  // deliveries
  ChildCompleted: ChildOutcomePayload & { result: unknown };
  ChildFailed: ChildOutcomePayload & { error: SerializedError };
  ChildCancelled: ChildOutcomePayload & { error?: SerializedError };
  ChildTerminated: ChildOutcomePayload & { error?: SerializedError };
  ChildTimedOut: ChildOutcomePayload & { error?: SerializedError };
  ActivityCompleted: { path: string; result: unknown; closedAt: number; attempts: number };
  ActivityFailed: { path: string; error: SerializedError; closedAt: number; attempts: number };
  TimerFired: { path: string; closedAt: number };

  /** Not part of replay: the run was blocked by a NonDeterminismError (or a corrupt journal). */
  RunBlocked: { error: SerializedError };
};

export interface ChildOutcomePayload {
  path: string;
  callId: string;
  childRunId: string;
  closedAt: number;
}

export type SideEffectKind = 'now' | 'random' | 'uuid' | 'sideEffect';
export type EventType = keyof EventPayloads;

/** An event as the engine produces it, before the journal gives it a seq. */
export type NewEvent = { [K in EventType]: { type: K; payload: EventPayloads[K] } }[EventType];

/** An event as stored: gap-free `seq` per run, starting at 1, and the journal clock's time of the append. */
export type JournalEvent = NewEvent & { seq: number; recordedAt: number };

export const DECISION_TYPES: ReadonlySet<EventType> = new Set<EventType>([
  'ChildScheduled',
  'ChildStartFailed',
  'ActivityScheduled',
  'TimerStarted',
  'SideEffect',
  'BarrierFailed',
  'FailureHandled',
  'RunCompleted',
  'RunFailed',
]);

export const CHILD_OUTCOME_TYPES = ['ChildCompleted', 'ChildFailed', 'ChildCancelled', 'ChildTerminated', 'ChildTimedOut'] as const;
export type ChildOutcomeType = (typeof CHILD_OUTCOME_TYPES)[number];

export const EVENT_TYPES: ReadonlySet<string> = new Set<EventType>([
  'RunStarted',
  ...DECISION_TYPES,
  ...CHILD_OUTCOME_TYPES,
  'ActivityCompleted',
  'ActivityFailed',
  'TimerFired',
  'RunBlocked',
]);
