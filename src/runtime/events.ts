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
    /** Execution timeout: the run closes as timed_out when it is still open at this time. */
    deadline?: number;
    /** The run is an operator's retry of `previousRunId` (same workflow id and input): why, and who asked. */
    retry?: RetryNote;
    /** OpenTelemetry: the span that started the run, written only when tracing is on (docs/observability.md). */
    trace?: RunTrace;
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
    /** Absent means 'cancel'. */
    parentClosePolicy?: 'terminate' | 'abandon';
    /** When the parent stops waiting (child timeout option). */
    deadline?: number;
    /** Retry attempt (absent: 1); a retried child is a new run of the same call. */
    attempt?: number;
    /** A retry starts after its backoff: the run is created now, due at `startAt`. */
    startAt?: number;
  };
  /** The start was refused deterministically (depth bound, duplicate id): the call fails without a child run. */
  ChildStartFailed: {
    path: string;
    workflow: string;
    inputHash: string;
    error: SerializedError;
    /** When the call failed: its close time for barrier failure selection (absent in older journals: recordedAt). */
    closedAt?: number;
  };
  ActivityScheduled: { path: string; name: string; inputHash: string; input: unknown };
  TimerStarted: { path: string; fireAt: number };
  /** now(), random(), uuid(), sideEffect(): the value is recorded once and replayed. */
  SideEffect: { path: string; kind: SideEffectKind; value: unknown };
  /** The barrier at `path` threw the failure of leaf `leafIndex` (earliest close, then lowest leaf index). */
  BarrierFailed: { path: string; leafIndex: number; leafPath: string };
  /** The workflow caught the failure thrown at `path` (the command's path, or the failed leaf's for a barrier). */
  FailureHandled: { path: string; error: SerializedError };
  /** waitForSignal(name): `deadline` is when it gives up (null: never). */
  SignalWaitStarted: { path: string; name: string; deadline: number | null };
  /** handle.signal(): the parent sent `name` to its child; the signal id makes the delivery exactly-once. */
  ChildSignalled: { path: string; callId: string; childRunId: string; signalId: string; name: string; payload: unknown };
  /**
   * patched(patchId) ran live: this run takes the new code's branch (on replay, patched() is true exactly where the
   * journal has this marker). `deprecated`: written by deprecatePatch(patchId), which only keeps such journals valid.
   * A marker takes no call path: adding patched() does not move the paths of the commands after it.
   */
  PatchMarker: { patchId: string; deprecated?: boolean };
  RunCompleted: { result: unknown };
  RunFailed: { error: SerializedError };
  /** The run closed as cancelled: its code finished after CancelledError, or the grace period ran out (`forced`). */
  RunCancelled: { reason: string; forced: boolean; result?: unknown; error?: SerializedError };
  /** The run reached its execution timeout and closed as timed_out. */
  RunTimedOut: { deadline: number };
  /** continueAsNew(input): the run closed and `nextRunId` continues the same workflow id. */
  RunContinued: { input: unknown; nextRunId: string };

  // deliveries
  ChildCompleted: ChildOutcomePayload & { result: unknown };
  ChildFailed: ChildOutcomePayload & { error: SerializedError };
  ChildCancelled: ChildOutcomePayload & { error?: SerializedError };
  ChildTerminated: ChildOutcomePayload & { error?: SerializedError };
  /** `byParent`: the parent's own timeout option expired (the child is then closed per its parent-close policy). */
  ChildTimedOut: ChildOutcomePayload & { error?: SerializedError; byParent?: boolean };
  ActivityCompleted: { path: string; result: unknown; closedAt: number; attempts: number };
  ActivityFailed: { path: string; error: SerializedError; closedAt: number; attempts: number };
  TimerFired: { path: string; closedAt: number };
  /** A signal sent to this run (by a client or its parent), journaled when the run takes it from its inbox. */
  SignalReceived: {
    signalId: string;
    name: string;
    payload: unknown;
    closedAt: number;
    /** OpenTelemetry: the sender's span (W3C traceparent), present only when the sender traced it. */
    traceparent?: string;
  };
  /** Someone asked this run to cancel; its code gets CancelledError at the current yield and may clean up. */
  CancelRequested: { reason: string; deadline: number; closedAt: number };
  /** A child continued as new: its new run id (same call id). */
  ChildStarted: { path: string; callId: string; childRunId: string; closedAt: number };

  /** Written by the journal in the transaction that closes a parent, for each still-open child. */
  ParentClosePolicyApplied: { childRunId: string; callId: string; policy: 'cancel' | 'terminate' | 'abandon' };
  ParentClosePolicyFailed: { childRunId: string; callId: string; policy: 'cancel' | 'terminate' | 'abandon'; error: SerializedError };

  /** Not part of replay: the run was blocked by a NonDeterminismError, a corrupt journal or a bug in its code. */
  RunBlocked: { error: SerializedError };
  /** Not part of replay: an operator resumed the blocked run (it replays with the code the worker has now). */
  RunResumed: { reason: string };
  /**
   * The run was closed from outside without running its code: terminated by a client, or by its parent-close policy
   * (`reason` names the parent's close, e.g. `parent_closed: completed`). Written by the closing transaction.
   */
  RunTerminated: { reason: string };
};

/** Why a run was started as a retry (RunStarted.retry): an operator's action, journaled with its reason. */
export interface RetryNote {
  previousRunId: string;
  reason: string;
  /** Who asked (the client's identity), when known. */
  by?: string;
}

/** What a RunStarted carries for tracing: the W3C traceparent of the span that started the run, and its root's id. */
export interface RunTrace {
  /** `00-<trace id>-<span id>-<flags>` */
  traceparent: string;
  rootRunId: string;
}

export interface ChildOutcomePayload {
  path: string;
  callId: string;
  childRunId: string;
  closedAt: number;
}

/**
 * The RunStarted payload of a run, built in one place: both journals write it and a worker that creates a run builds
 * its engine from it without reading it back, so all three must agree key for key.
 */
export function runStartedPayload(
  run: {
    workflow: string;
    workflowId: string;
    parentRunId?: string | null;
    callId?: string | null;
    deadline?: number | undefined;
    retry?: RetryNote | undefined;
    trace?: RunTrace | undefined;
  },
  input: unknown,
  depth: number,
): EventPayloads['RunStarted'] {
  // (assigned one by one rather than spread: one of these is built for every child a fan-out starts)
  const p: EventPayloads['RunStarted'] = { workflow: run.workflow, workflowId: run.workflowId, input, depth };
  if (run.deadline !== undefined) p.deadline = run.deadline;
  if (run.parentRunId) p.parentRunId = run.parentRunId;
  if (run.callId) p.callId = run.callId;
  if (run.retry) p.retry = run.retry;
  if (run.trace) p.trace = run.trace;
  return p;
}

export type SideEffectKind = 'now' | 'random' | 'uuid' | 'sideEffect';
export type EventType = keyof EventPayloads;

/** An event as the engine produces it, before the journal gives it a seq. */
export type NewEvent = { [K in EventType]: { type: K; payload: EventPayloads[K] } }[EventType];

/** An event as stored: gap-free `seq` per run, starting at 1, and the journal clock's time of the append. */
export type JournalEvent = NewEvent & { seq: number; recordedAt: number };

/**
 * What each event is to replay, one entry per type (a mapped type over EventType: a new event type does not compile
 * until it is classified here, and the engine's tables over deliveries and decisions follow from it):
 *  - `start`: RunStarted, seq 1;
 *  - `decision`: what the code did; replay must issue the same at the same point;
 *  - `close`: a decision that closes the run;
 *  - `delivery`: news from outside, applied when the cursor reaches it;
 *  - `note`: an operator's note (blocked, resumed); replay steps over it, between decisions;
 *  - `closing`: written by a transaction that closes the run from outside (terminate, parent-close policies).
 */
export type EventFamily = 'start' | 'decision' | 'close' | 'delivery' | 'note' | 'closing';

export const EVENT_FAMILY = {
  RunStarted: 'start',
  ChildScheduled: 'decision',
  ChildStartFailed: 'decision',
  ActivityScheduled: 'decision',
  TimerStarted: 'decision',
  SideEffect: 'decision',
  BarrierFailed: 'decision',
  FailureHandled: 'decision',
  SignalWaitStarted: 'decision',
  ChildSignalled: 'decision',
  PatchMarker: 'decision',
  RunCompleted: 'close',
  RunFailed: 'close',
  RunCancelled: 'close',
  RunContinued: 'close',
  RunTimedOut: 'close',
  ChildCompleted: 'delivery',
  ChildFailed: 'delivery',
  ChildCancelled: 'delivery',
  ChildTerminated: 'delivery',
  ChildTimedOut: 'delivery',
  ActivityCompleted: 'delivery',
  ActivityFailed: 'delivery',
  TimerFired: 'delivery',
  SignalReceived: 'delivery',
  CancelRequested: 'delivery',
  ChildStarted: 'delivery',
  ParentClosePolicyApplied: 'closing',
  ParentClosePolicyFailed: 'closing',
  RunTerminated: 'closing',
  RunBlocked: 'note',
  RunResumed: 'note',
} as const satisfies { readonly [K in EventType]: EventFamily };

type TypesOf<F extends EventFamily> = { [K in EventType]: (typeof EVENT_FAMILY)[K] extends F ? K : never }[EventType];
/** Decisions, closing decisions included. */
export type DecisionType = TypesOf<'decision' | 'close'>;
export type DeliveryType = TypesOf<'delivery'>;

const ofFamily = (...f: EventFamily[]): ReadonlySet<EventType> =>
  new Set((Object.keys(EVENT_FAMILY) as EventType[]).filter((k) => f.includes(EVENT_FAMILY[k])));

/** Decisions, closing decisions included. */
export const DECISION_TYPES: ReadonlySet<EventType> = ofFamily('decision', 'close');
/** Decisions that close the run. */
export const CLOSE_TYPES: ReadonlySet<EventType> = ofFamily('close');

export const CHILD_OUTCOME_TYPES = ['ChildCompleted', 'ChildFailed', 'ChildCancelled', 'ChildTerminated', 'ChildTimedOut'] as const;
export type ChildOutcomeType = (typeof CHILD_OUTCOME_TYPES)[number];
