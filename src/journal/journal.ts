import type { ParentClosePolicy } from '../runtime/commands.js';
import type { SerializedError } from '../runtime/errors.js';
import type { JournalEvent, NewEvent } from '../runtime/events.js';
import type { StoredWaits, WaitSpec } from '../runtime/waits.js';
import type { ChildOutcome, ClosedStatus, Clock, NewRun, RunStatus } from '../runtime/runs.js';
import { deriveId } from '../runtime/json.js';

/**
 * The journal contract. Every journal (in-memory, PostgreSQL) implements it and passes the same contract test suite
 * (`test/journal-contract.ts`). The journal is the only source of truth: the engine never trusts anything it did not
 * read back from here or write here in a committed activation.
 */

// The runtime owns what runs are, what wakes them and how a child's close reaches its parent (runtime/runs.ts,
// runtime/waits.ts); the journal stores them. Re-exported here for the journals and for compatibility.
export { isOpen, OPEN_STATUSES, OUTCOME_EVENT, type ChildOutcome, type ClosedStatus, type Clock, type NewRun, type OpenStatus, type OutcomeStatus, type RunStatus } from '../runtime/runs.js';
export { NO_WAIT, type WaitSpec } from '../runtime/waits.js';

/**
 * Why a child closed by its parent's close is closed (its error message and the reason in its closing events): the
 * parent's close, e.g. `parent_closed: completed`. Client cancels and terminates cascade as `parent_cancelled` /
 * `parent_terminated`.
 */
export const parentClosed = (status: string): string => `parent_closed: ${status}`;

/** Why a child (and its subtree) closed when its parent stopped waiting for it (the child's timeout option). */
export const PARENT_STOPPED_WAITING = 'parent_stopped_waiting: timeout';

export interface RunRecord {
  runId: string;
  workflowId: string;
  workflow: string;
  status: RunStatus;
  input: unknown;
  parentRunId: string | null;
  /** The call id under which the parent started this run (null for roots). */
  callId: string | null;
  rootRunId: string;
  depth: number;
  queue: string;
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
  /** When the run is due for an activation; null when it waits only on other runs' news. */
  nextWakeupAt: number | null;
  createdAt: number;
  closedAt: number | null;
  result: unknown;
  error: SerializedError | null;
  continuedFrom: string | null;
  continuedTo: string | null;
  /** The seq of the last event in the run's journal. */
  lastSeq: number;
  /** What happens to this run when its parent closes while it is open. */
  parentClosePolicy: ParentClosePolicy;
  /** Set while a graceful cancel is under way: the run gets CancelledError and must close by `deadline`. */
  cancelRequest: CancelRequest | null;
  /**
   * What the run's code waits on, as its engine said at its last commit (null: never activated, or closed). A run
   * that is due and unleased with no waits has not been started by any worker yet.
   */
  waits: StoredWaits | null;
  /** What keeps the run from going on where it is (set by the worker that released it for that reason), or null. */
  stall: RunStall | null;
  /** The run this one retries (an operator's `retry` of a closed root run), or null. */
  retryOf: string | null;
  /** The run that retries this one (same workflow id, created by `retry`), or null. */
  retriedTo: string | null;
}

/**
 * A run released because the worker holding it could not do what it needs: `activity_unavailable`, an activity the
 * worker does not register. Written in the fenced commit that releases the run; cleared by the commit that journals
 * that activity's result, and by the run's close. `attempts` counts the releases in a row (it survives a hand-over
 * between workers: the next holder reads it from its lease); the run is due again at `nextAttemptAt`.
 */
export interface RunStall {
  reason: 'activity_unavailable';
  activity: string;
  path: string;
  workerId: string;
  attempts: number;
  since: number;
  nextAttemptAt: number;
}

export interface CancelRequest {
  reason: string;
  deadline: number;
  requestedAt: number;
}

export interface Lease {
  runId: string;
  owner: string;
  token: string;
  expiresAt: number;
  /**
   * What the journal knew when it granted the lease (claimDue, acquire), so the new holder need not read the run
   * again: its journal head, its queue, and whether signals or a cancel request wait in its inbox.
   */
  lastSeq?: number;
  queue?: string;
  inboxPending?: boolean;
  /** The run's stall, if it has one (so the next holder continues its backoff count). */
  stall?: RunStall | null;
  /**
   * Who held the run's lease before this grant (claimDue, acquire): an owner other than the claimer means the run was
   * taken over (its lease expired in someone else's hands); null when it was free (released, or never leased).
   */
  previousOwner?: string | null;
  /** Who the run is, for the holder's log lines (claimDue, acquire). */
  run?: RunIdentity;
  /** The run's pending inbox when the lease was granted (acquireMany; claimDue on PostgreSQL), read in the same statement. */
  inbox?: Inbox;
  /**
   * The run's journal when the lease was granted, read in the same statement, so its holder builds the engine without
   * another read: for the runs acquireMany's caller asked it for (`withHistory`: runs it has no engine of), and on
   * PostgreSQL for the short journals claimDue leases.
   */
  history?: { depth: number; events: JournalEvent[] };
}

/** The ids every log line about a run carries (besides its run id). */
export interface RunIdentity {
  workflowId: string;
  workflow: string;
  parentRunId: string | null;
  rootRunId: string;
}

/** One activation's writes, committed atomically or not at all. */
export interface Commit {
  /** The seq of the last event the writer has read; the first new event gets afterSeq + 1. */
  afterSeq: number;
  events: NewEvent[];
  /** Child runs to create (rows + their RunStarted events). A child that already exists is left as it is. */
  children: NewRun[];
  /** How the run waits after this activation. Ignored when `close` is set. */
  wait: WaitSpec;
  /** What the code waits on (RunEngine.openWaits()), stored for describe(). Ignored when `close` or `block` is set. */
  waits?: StoredWaits;
  /**
   * Closing the run. Its open children are then closed per their parent-close policy in the same transaction
   * (ParentClosePolicyApplied journaled here for each). `continued` also creates the next run of the same workflow
   * id (`next`) and moves open children and undelivered signals to it.
   */
  close?: { status: ClosedStatus; result?: unknown; error?: SerializedError; next?: NewRun };
  /**
   * The run has never started a child, so its close has no open children to look for (the writer knows it from the
   * journal; on PostgreSQL the search is a scan the planner may misjudge when one parent has most rows as children).
   * A run that continued from another still has the children it inherited: the journal looks for them anyway.
   */
  childless?: boolean;
  /** Signals to other runs (a parent to its children), exactly once by signal id. A closed target drops them. */
  signals?: { runId: string; signalId: string; name: string; payload: unknown }[];
  /** Children this run stopped waiting for (timeouts), closed per policy in this transaction. */
  closeChildren?: { runId: string; policy: ParentClosePolicy }[];
  /** Bound for the cascades this commit starts (parent-close policies). Default 10. */
  maxChildDepth?: number;
  /** Set the run to blocked (NonDeterminismError, corrupt journal). */
  block?: SerializedError;
  /** Give up the lease after the commit (the run is suspended or closed). */
  release?: boolean;
  /**
   * Record (or, with null, clear) what the run is stuck on. Left out: kept as it is, except that a commit journaling
   * the stalled activity's result (ActivityCompleted/ActivityFailed at its path) clears it, and so does a close.
   */
  stall?: RunStall | null;
  /**
   * Lease new children to this lease's owner, for the same duration (the worker runs them directly): every new child
   * due now (true), or those of them in the set (a worker leases no more than it has room for: the others are
   * announced to every worker at once, rather than leased here and given back one by one).
   */
  leaseChildren?: boolean | ReadonlySet<string>;
}

/** Whether a commit leases its new child `runId` to its own worker (Commit.leaseChildren). */
export function leasesChild(c: Pick<Commit, 'leaseChildren'>, runId: string): boolean {
  const l = c.leaseChildren;
  return l === true || (typeof l === 'object' && l.has(runId));
}

export interface CommitResult {
  lastSeq: number;
  /** Leases on new children, when `leaseChildren` was set (a child that already existed gets none). */
  childLeases: Lease[];
  /** Parents this commit woke (closing a child), so a worker can route the wake without waiting for a notify. */
  wokeParent: string | null;
}

export interface SignalInput {
  name: string;
  payload?: unknown;
  /** Makes the send idempotent: the same id is delivered once. Default: a random id. */
  signalId?: string;
  /** OpenTelemetry: the W3C traceparent of the sender's span, journaled with SignalReceived (a span link). */
  traceparent?: string;
}

export interface InboxSignal {
  signalId: string;
  name: string;
  payload: unknown;
  sentAt: number;
  /** The sender's traceparent (SignalInput.traceparent), when it sent one. */
  traceparent?: string;
}

/** What waits for a run outside its journal: signals not yet journaled, a cancel request. */
export interface Inbox {
  signals: InboxSignal[];
  cancel: CancelRequest | null;
}

export interface CancelOptions {
  reason: string;
  /** `terminate` closes at once without running workflow code; `cancel` lets the code clean up for `graceMs`. */
  mode: 'cancel' | 'terminate';
  /** For `cancel`: how long the run's code may clean up (try/finally, activities). 0 closes it at once. */
  graceMs: number;
  maxChildDepth: number;
}

export interface CancelResult {
  runId: string;
  /** `cancelling` when the run was given a grace period; otherwise its closed status. */
  status: 'cancelling' | 'cancelled' | 'terminated';
  /** Descendants closed by the cascade, generation by generation, parent before child. */
  closed: string[];
  /** Open descendants deeper than maxChildDepth, left alone (and reported). */
  truncated: string[];
}

export interface ClaimOptions {
  owner: string;
  queues: string[];
  limit: number;
  leaseMs: number;
  /** Only runs of these workflows (a worker passes the ones it registered). Default: runs of any workflow. */
  workflows?: string[];
  /**
   * The activities the claimer has. A run stalled on an activity not among them (RunRecord.stall) is left to claimers
   * that have it until `graceMs` after its next attempt was due. Default: no preference.
   */
  activities?: { names: string[]; graceMs: number };
}

/**
 * `wake`: the runs became due. `stop`: the runs were closed from outside (cancel, terminate); drop their actors.
 * `closed`: these root runs closed (their results can be read).
 */
export type WakeListener = (runIds: string[], kind?: 'wake' | 'stop' | 'closed') => void;

export interface Journal {
  readonly clock: Clock;
  /** Creates the schema if needed (idempotent). */
  migrate(): Promise<void>;
  close(): Promise<void>;

  /**
   * Creates a root run. Idempotent by workflow id: starting the same workflow id again returns the existing run
   * (`created: false`); starting it with a different workflow name throws DuplicateWorkflowIdError.
   */
  startRun(run: NewRun): Promise<{ run: RunRecord; created: boolean }>;
  getRun(runId: string): Promise<RunRecord | undefined>;
  getRunByWorkflowId(workflowId: string): Promise<RunRecord | undefined>;
  /** Events with seq > afterSeq, in seq order. */
  readEvents(runId: string, afterSeq?: number): Promise<JournalEvent[]>;
  listChildren(runId: string, filter?: { status?: RunStatus | RunStatus[] }): Promise<RunRecord[]>;
  /** Closed children among `childRunIds` (the parent asks for those whose outcome it has not journaled yet). */
  childOutcomes(parentRunId: string, childRunIds: string[]): Promise<ChildOutcome[]>;

  /**
   * Leases up to `limit` due runs (next wake-up reached, lease free or expired) on the given queues (and of the given
   * workflows, see ClaimOptions).
   */
  claimDue(options: ClaimOptions): Promise<Lease[]>;
  /**
   * Leases one run if it is open and its lease is free or expired, whether due or not (and, with `queues`, only if
   * the run is on one of them; with `workflows`, only if it is a run of one of them).
   */
  acquire(runId: string, owner: string, leaseMs: number, queues?: string[], workflows?: string[]): Promise<Lease | undefined>;
  /**
   * `acquire` for many runs in one round trip (a worker woken about many runs at once: a burst of signals, a wave of
   * child closes). Each lease also carries the run's pending inbox (`Lease.inbox`), so the holder's first activation
   * need not read it; the leases of the runs in `withHistory` also carry their journal (`Lease.history`), so a worker
   * woken about runs it holds no engine of does not read each one's events in a round trip of its own. Runs that are
   * closed, held, or not on the given queues/workflows are left out.
   */
  acquireMany(runIds: string[], owner: string, leaseMs: number, queues?: string[], workflows?: string[], withHistory?: readonly string[]): Promise<Lease[]>;
  /** Extends a held lease; throws LeaseLostError if it was taken over or cleared. */
  renew(lease: Lease, leaseMs: number): Promise<Lease>;
  /**
   * Extends many held leases in one round trip (a worker's lease heartbeat). Returns the new expiry of each lease
   * still held, and the run ids whose token no longer holds (taken over, released, or the run closed).
   */
  renewMany(leases: Lease[], leaseMs: number): Promise<{ expiresAt: number; lost: string[] }>;
  /** Atomically appends an activation, fenced by the lease token; throws LeaseLostError when not held. */
  commit(lease: Lease, commit: Commit): Promise<CommitResult>;
  /** Gives up a lease (no-op if it was already lost). */
  release(lease: Lease): Promise<void>;

  /** Subscribes to wake-ups (runs that became due because of another run). Returns an unsubscribe function. */
  onWake(listener: WakeListener): () => void;

  /** Puts a signal in an open run's inbox and wakes it. Throws RunClosedError for a closed run. */
  signal(runId: string, signal: SignalInput): Promise<{ signalId: string }>;
  /** Signals and cancel request waiting for the run (the run journals them as SignalReceived / CancelRequested). */
  inbox(runId: string): Promise<Inbox>;
  /**
   * Cancels or terminates a run and, in the same transaction, closes its open descendants reachable through
   * non-abandoned links, generation by generation, down to maxChildDepth. Throws UnknownRunError / RunClosedError.
   */
  cancel(runId: string, options: CancelOptions): Promise<CancelResult>;
  /**
   * Resumes a blocked run: journals RunResumed with the reason, sets it running and due now (its next activation
   * replays it with the code the worker has then). Throws UnknownRunError, or RunStateError when it is not blocked.
   */
  resume(runId: string, options: { reason: string }): Promise<RunRecord>;

  // ---- visibility and operating (docs/operating.md) ----

  /**
   * Runs matching `filter`, newest first (created_at, then run id, descending), at most `limit` (default 100, at most
   * 1000) per page. `nextCursor` (opaque) continues after the last run of the page (keyset: a page never skips or
   * repeats a run, whatever is created meanwhile); null when there is no more.
   */
  listRuns(query?: ListRunsQuery): Promise<RunPage>;
  /** How many runs match `filter`, by status. */
  countRuns(filter?: RunFilter): Promise<RunCounts>;
  /**
   * The run's descendants (through parent links), breadth first: by depth, then creation (created_at, run id), at
   * most `maxDepth` levels below it, `limit` per page (default 100, at most 1000), continued with `cursor`. Throws
   * UnknownRunError.
   */
  listDescendants(runId: string, query?: DescendantsQuery): Promise<RunPage>;
  /**
   * Retries a closed root run (failed, cancelled, terminated, timed out) as a new run of the same workflow id, with the
   * same workflow, input and queue: run id `retryRunId(runId)`, its RunStarted carrying `retry` (the reason and who),
   * `retryOf` set on it and `retriedTo` on the retried run, which keeps its journal. The workflow id then names the
   * new run (getRunByWorkflowId). A run already retried returns its retry (`created: false`). Throws UnknownRunError,
   * or RunStateError for an open, completed or continued run, or a child. `trace` goes into the new RunStarted
   * (OpenTelemetry: Client.retry passes its span's context while tracing is on).
   */
  retry(runId: string, options: { reason: string; by?: string; trace?: NewRun['trace'] }): Promise<{ run: RunRecord; created: boolean }>;

  /** Records a worker's heartbeat (creates its row, or refreshes it): last seen now, by the journal's clock. */
  workerHeartbeat(worker: WorkerHeartbeat): Promise<void>;
  /** Marks a worker stopped (graceful shutdown). Unknown ids are ignored. */
  workerStopped(workerId: string): Promise<void>;
  /**
   * The workers that heartbeat into this journal (seen within the last 7 days), alive first, then newest first.
   * `gone`: stopped, or not seen for 3 of its heartbeat intervals.
   */
  listWorkers(): Promise<WorkerInfo[]>;
  /** Resolves when the journal's store answers (a worker's /healthz); rejects otherwise. */
  ping(): Promise<void>;
  /** Where the journal keeps its data, for logs (a URL never shows its password). */
  target?(): JournalTarget;
}

/** Which runs listRuns and countRuns take. Conditions combine with AND; time bounds are [after, before). */
export interface RunFilter {
  status?: RunStatus | RunStatus[];
  workflow?: string;
  queue?: string;
  parentRunId?: string;
  rootRunId?: string;
  /** Every run of exactly this workflow id (a continue-as-new chain, retries). */
  workflowId?: string;
  workflowIdPrefix?: string;
  /** created_at >= startedAfter */
  startedAfter?: number;
  /** created_at < startedBefore */
  startedBefore?: number;
  /** closed_at >= closedAfter (closed runs only) */
  closedAfter?: number;
  /** closed_at < closedBefore (closed runs only) */
  closedBefore?: number;
}

export interface ListRunsQuery extends RunFilter {
  limit?: number;
  cursor?: string | null;
}

export interface DescendantsQuery {
  /** Levels below the run (1: its children). Default: all. */
  maxDepth?: number;
  limit?: number;
  cursor?: string | null;
}

export interface RunPage {
  runs: RunRecord[];
  nextCursor: string | null;
}

export interface RunCounts {
  total: number;
  byStatus: Record<RunStatus, number>;
}

export const RUN_STATUSES: readonly RunStatus[] = ['running', 'blocked', 'completed', 'failed', 'cancelled', 'terminated', 'timed_out', 'continued'];

/** Closed statuses a root run can be retried from. */
export const RETRYABLE_STATUSES: ReadonlySet<RunStatus> = new Set(['failed', 'cancelled', 'terminated', 'timed_out']);

/** Page sizes of listRuns and listDescendants. */
export const DEFAULT_PAGE_LIMIT = 100;
export const MAX_PAGE_LIMIT = 1000;

/**
 * The run id of the retry of `runId`: derived from the retried run (never random), so a retry sent twice creates one
 * run, and a retried retry gets an id of its own. Run ids are `r_` and 22 base64url characters (see isRunId).
 */
export const retryRunId = (runId: string): string => deriveId('r_', 'retry', runId);

/** What a worker reports with each heartbeat (the `workers` table). */
export interface WorkerHeartbeat {
  workerId: string;
  host: string;
  pid: number;
  queues: string[];
  workflows: string[];
  activities: string[];
  concurrency: number;
  activeRuns: number;
  startedAt: number;
  /** How often it heartbeats: it is gone after 3 intervals without one. */
  heartbeatIntervalMs: number;
}

export interface WorkerInfo extends WorkerHeartbeat {
  lastSeenAt: number;
  stoppedAt: number | null;
  /** `gone`: stopped (stoppedAt), or not seen for 3 heartbeat intervals (killed, frozen, cut off). */
  status: 'alive' | 'gone';
}

/** How long a gone worker stays listed. */
export const WORKER_RETENTION_MS = 7 * 24 * 3600 * 1000;

/** A worker is gone when not seen for this many of its heartbeat intervals. */
export const WORKER_GONE_INTERVALS = 3;

export interface JournalTarget {
  kind: 'postgres' | 'memory';
  /** The connection URL, its password replaced by '***'. */
  url?: string;
  schema?: string;
}
