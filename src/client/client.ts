import { signalName, type SignalDef, type WorkflowDef } from '../runtime/commands.js';
import { Registry, type WorkflowsInput } from '../runtime/registry.js';
import { hostname, userInfo } from 'node:os';
import { InvalidArgumentError, ResultTimeoutError, RunClosedError, UnknownRunError, WorkflowFailedError } from '../runtime/errors.js';
import type { JournalEvent } from '../runtime/events.js';
import type { OpenWait } from '../runtime/waits.js';
import { deriveId, journalValue } from '../runtime/json.js';
import pino, { type Logger } from 'pino';
import {
  isOpen,
  MAX_PAGE_LIMIT,
  retryRunId,
  OPEN_STATUSES,
  type CancelOptions,
  type CancelResult,
  type DescendantsQuery,
  type Journal,
  type ListRunsQuery,
  type RunCounts,
  type RunFilter,
  type RunPage,
  type RunRecord,
  type RunStatus,
  type WorkerInfo,
} from '../journal/journal.js';
import { statusList } from '../journal/visibility.js';
import { DEFAULT_MAX_CHILD_DEPTH } from '../runtime/engine.js';
import { telemetry } from '../runtime/telemetry.js';
import { clientSpan, openTelemetryEnabled, type ClientSpan } from '../telemetry/otel.js';

export interface StartOptions {
  /** The instance's stable id. Starting the same workflow id twice returns the first run. Default: a random id. */
  workflowId?: string;
  queue?: string;
  /** The run closes as timed_out (RunTimeoutError) if still open this many ms after it starts. */
  executionTimeoutMs?: number;
}

export interface RunRef<O = unknown> {
  runId: string;
  workflowId: string;
  workflow: string;
  /** false when a run with this workflow id already existed and was returned instead. */
  created: boolean;
  /** Phantom type of the result. */
  readonly __output?: O;
}

export type WaitKind = 'child' | 'activity' | 'timer' | 'signal' | null;

export type { OpenWait } from '../runtime/waits.js';

/** Why an open run makes no progress although nothing it waits on is pending (see RunDescription.waitingFor). */
export type WaitingFor =
  /** Created (due) and never started: no worker serving its queue with its workflow has claimed it yet. */
  | { kind: 'worker'; workflow: string; queue: string; since: number }
  /** Blocked (non-determinism, a bug in its code): an operator resumes it after a fix, or terminates it. */
  | { kind: 'operator'; since: number; error: RunRecord['error'] };

export interface RunDescription {
  run: RunRecord;
  status: RunStatus;
  /** The main kind of what the code waits on: child, then activity, signal, timer (null: nothing). */
  waitKind: WaitKind;
  /** What the code waits on, from its engine's last commit (at most 50; `openWaitCount` says how many in all). */
  openWaits: OpenWait[];
  openWaitCount: number;
  /** Set when the run is open but nothing in its code is what holds it up (not started yet, blocked). */
  waitingFor: WaitingFor | null;
  lineage: { parentRunId: string | null; rootRunId: string; children: { runId: string; workflowId: string; workflow: string; status: RunStatus }[]; continuedFrom: string | null; continuedTo: string | null };
  timeline: { seq: number; type: string; at: number; path?: string }[];
}

export interface ExportedHistory {
  format: 'skein-history/1';
  runId: string;
  workflowId: string;
  workflow: string;
  events: JournalEvent[];
}

/**
 * Which run a client call is about. A string is a run id or a workflow id (see isRunId): run ids are `r_` and 22
 * base64url characters, and a workflow id never has that form (start refuses it), so `r_…` strings are run ids and
 * anything else is looked up as a workflow id first (its newest run: continue-as-new and retries share the workflow id),
 * then as a run id (runs of hand-made journals). An id that is neither is an UnknownRunError. `{ runId }` and
 * `{ workflowId }` say which explicitly (a RunRef is taken by its runId).
 */
export type RunSelector = string | { runId: string } | { workflowId: string };

/** The form of every run id skein derives: `r_` and 22 base64url characters (see deriveId). */
const RUN_ID = /^r_[A-Za-z0-9_-]{22}$/;

/** Whether `id` has the form of a run id (else it is taken as a workflow id): see RunSelector. */
export const isRunId = (id: string): boolean => RUN_ID.test(id);

/**
 * A run in a `tree()`: its record (status, workflow, depth, parentRunId, stall, error, ...), how far below the tree's
 * top it sits, and what it waits on (as describe() says it: its engine's waits at its last commit).
 */
export interface TreeNode {
  run: RunRecord;
  /** Levels below the run tree() was asked about (0: that run, 1: its children). */
  level: number;
  waitKind: WaitKind;
  openWaits: OpenWait[];
  openWaitCount: number;
  /** Open, and held up by something other than its code: no worker has started it, or it is blocked. */
  waitingFor: WaitingFor['kind'] | null;
}

export interface TreePage {
  /** The run whose descendants these are. */
  root: TreeNode;
  /** Descendants breadth first (depth, then creation order), at most `limit`; each names its parent (run.parentRunId). */
  nodes: TreeNode[];
  /** Pass as `cursor` for the next page; null when there is no more. */
  nextCursor: string | null;
}

export interface RetryResult {
  /** The new run (or, `created: false`, the retry made earlier). */
  run: RunRecord;
  /** false when the run had been retried already: its retry is returned. */
  created: boolean;
  /** The run retried. */
  previousRunId: string;
}

export interface BulkOptions {
  /** List what would be affected and change nothing. */
  dryRun?: boolean;
  /** Most runs acted on in one call (default 1000, at most 10,000): call again while `more`. */
  limit?: number;
}

export interface BulkResult {
  dryRun: boolean;
  /** How many open runs the filter matched (at most `limit`), and those runs, newest first (as they were then). */
  matched: number;
  runs: RunRecord[];
  /** Runs this call cancelled or terminated (none on a dry run). */
  done: string[];
  /** Runs that closed before their turn (often: by the cascade of an ancestor in the same call). */
  skipped: { runId: string; reason: string }[];
  /** More open runs match than `limit`. */
  more: boolean;
}

export interface ClientOptions {
  /** Who this client is, journaled with its operator actions (retry). Default `user@host`. */
  identity?: string;
  /** Bound of cancellation cascades. Default 10 (as the engine's maxChildDepth). */
  maxChildDepth?: number;
  logger?: Logger;
  /**
   * The workflows that exist (as a worker registers them). Given, `start` refuses any other name with
   * UnknownWorkflowError, before anything is written; left out, any name is accepted (its run waits until a worker
   * that registers it claims it).
   */
  workflows?: WorkflowsInput;
}

/** Starts runs and reads their state. Everything goes through the journal, so a client needs no worker. */
export class Client {
  private readonly maxChildDepth: number;
  /** The workflows given to the constructor (null: none given, any name is accepted). */
  private readonly registry: Registry | null;
  private readonly log: Logger;
  readonly identity: string;
  constructor(
    readonly journal: Journal,
    options: ClientOptions = {},
  ) {
    this.identity = options.identity ?? defaultIdentity();
    this.maxChildDepth = options.maxChildDepth ?? DEFAULT_MAX_CHILD_DEPTH;
    this.log = options.logger ?? pino({ level: process.env.SKEIN_LOG_LEVEL ?? 'info' });
    this.registry = options.workflows ? new Registry(options.workflows) : null;
  }

  /**
   * Cancels a run and its open, non-abandoned descendants (SPEC section 7). The descendants close at once, in one
   * transaction; the run itself gets CancelledError at its current yield and `graceMs` (default 10 s) to clean up
   * (pass 0 to close it at once too). Throws UnknownRunError, or RunClosedError if it has already closed.
   */
  async cancel(ref: RunSelector, reason = 'cancelled', options: { graceMs?: number } = {}): Promise<CancelResult> {
    return this.cascade(await this.runIdOf(ref), { reason, mode: 'cancel', graceMs: options.graceMs ?? 10_000, maxChildDepth: this.maxChildDepth });
  }

  /** Stops a run at once without running its code; its descendants follow their parent-close policies. */
  async terminate(ref: RunSelector, reason = 'terminated'): Promise<CancelResult> {
    return this.cascade(await this.runIdOf(ref), { reason, mode: 'terminate', graceMs: 0, maxChildDepth: this.maxChildDepth });
  }

  /**
   * Sends a signal to an open run: a `defineSignal` definition and its typed payload, or a name and any payload. With
   * `signalId`, sending again is a no-op. Throws RunClosedError if closed.
   */
  async signal<T>(ref: RunSelector, signal: SignalDef<T>, payload: T, options?: { signalId?: string }): Promise<{ signalId: string }>;
  async signal(ref: RunSelector, signal: SignalDef<void>): Promise<{ signalId: string }>;
  async signal(ref: RunSelector, name: string, payload?: unknown, options?: { signalId?: string }): Promise<{ signalId: string }>;
  async signal(ref: RunSelector, signal: SignalDef<any> | string, payload?: unknown, options: { signalId?: string } = {}): Promise<{ signalId: string }> {
    const name = signalName(signal);
    if (typeof name !== 'string' || !name) throw new InvalidArgumentError('signal', 'it must be a non-empty name or a defineSignal() definition');
    const runId = await this.runIdOf(ref);
    const span = clientSpan('skein.signal', { 'skein.run_id': runId, 'skein.signal.name': name });
    return traced(span, (r) => ({ 'skein.signal_id': r.signalId }), () =>
      this.journal.signal(runId, {
        name,
        payload,
        ...(options.signalId ? { signalId: options.signalId } : {}),
        // (OpenTelemetry: the activation that journals the signal links its span to this one)
        ...(span ? { traceparent: span.traceparent() } : {}),
      }),
    );
  }

  private async cascade(runId: string, options: CancelOptions): Promise<CancelResult> {
    const span = clientSpan(options.mode === 'terminate' ? 'skein.terminate' : 'skein.cancel', { 'skein.run_id': runId, 'skein.cancel.reason': options.reason });
    const result = await traced(span, (r) => ({ 'skein.cancel.status': r.status, 'skein.cancel.closed': r.closed.length, 'skein.cancel.truncated': r.truncated.length }), () =>
      this.journal.cancel(runId, options),
    );
    if (result.truncated.length) {
      // Runs deeper than the bound should not exist; if they do (the bound was lowered), say so loudly.
      this.log.error({ runId, truncated: result.truncated, maxChildDepth: options.maxChildDepth }, 'cancel cascade truncated at maxChildDepth');
      telemetry.emitEvent('cancel.truncated', { runId, truncated: result.truncated, maxChildDepth: options.maxChildDepth });
    }
    return result;
  }

  /** Starts a root run. Idempotent by workflow id: the same id returns the same run (its run id is derived from it). */
  async start<I, O>(wf: WorkflowDef<I, O> | string, input: I, options: StartOptions = {}): Promise<RunRef<O>> {
    const workflow = typeof wf === 'string' ? wf : wf.name;
    this.registry?.workflow(workflow); // UnknownWorkflowError for a name not among the client's workflows
    if (options.workflowId !== undefined && (typeof options.workflowId !== 'string' || options.workflowId.length === 0)) {
      throw new InvalidArgumentError('workflowId', `it must be a non-empty string, got ${typeof options.workflowId === 'string' ? 'an empty string' : typeof options.workflowId}`);
    }
    if (options.workflowId !== undefined && isRunId(options.workflowId)) {
      // (every call that takes a run id also takes a workflow id: the two forms must never meet)
      throw new InvalidArgumentError('workflowId', `'${options.workflowId}' has the form of a run id (r_ and 22 characters); choose another workflow id`);
    }
    const workflowId = options.workflowId ?? `${workflow}-${deriveId('', String(Date.now()), String(Math.random())).slice(0, 12)}`;
    const queue = options.queue ?? (typeof wf === 'string' ? undefined : wf.options.queue) ?? 'default';
    const runId = deriveId('r_', 'root', workflowId);
    // OpenTelemetry (null when off): the run's activations continue this span's trace (RunStarted.trace).
    const span = clientSpan('skein.start', { 'skein.run_id': runId, 'skein.workflow': workflow, 'skein.workflow_id': workflowId, 'skein.root_run_id': runId });
    const { run, created } = await traced(span, (r) => ({ 'skein.created': r.created }), () =>
      this.journal.startRun({
        runId,
        workflowId,
        workflow,
        input: journalValue(input, `input of workflow '${workflow}'`),
        queue,
        ...(options.executionTimeoutMs !== undefined ? { deadline: this.journal.clock.now() + options.executionTimeoutMs } : {}),
        ...(span ? { trace: span.trace(runId) } : {}),
      }),
    );
    return { runId: run.runId, workflowId: run.workflowId, workflow: run.workflow, created };
  }

  /**
   * Waits for a run to close; returns its result or throws WorkflowFailedError (its cause: the run's error, revived as
   * its own class), or ResultTimeoutError when `timeoutMs` passes first.
   */
  async result<O = unknown>(ref: RunRef<O> | RunSelector, options: { timeoutMs?: number } = {}): Promise<O> {
    let runId = await this.runIdOf(ref);
    // by workflow id: a run that continues as new is followed to the newest run of the chain
    const follow = typeof ref === 'string' ? !isRunId(ref) && runId !== ref : !('runId' in ref);
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    // The journal announces a root run's close ('closed'): we look again at once. The poll (backing off to 100 ms)
    // only covers a lost notification, or a run that is not a root.
    let nudge: (() => void) | null = null;
    const unsubscribe = this.journal.onWake((ids, kind) => {
      if (kind === 'closed' && ids.includes(runId)) nudge?.();
    });
    try {
      let delay = 2;
      for (;;) {
        const run = await this.journal.getRun(runId);
        if (!run) throw new UnknownRunError(runId);
        if (follow && run.status === 'continued' && run.continuedTo) {
          runId = run.continuedTo;
          continue;
        }
        if (run.status === 'completed') return run.result as O;
        if (run.status === 'blocked') throw new WorkflowFailedError(runId, 'is blocked', run.error ?? undefined);
        if (!isOpen(run.status)) throw new WorkflowFailedError(runId, run.status, run.error ?? undefined);
        if (Date.now() >= deadline) throw new ResultTimeoutError(runId, options.timeoutMs!);
        await new Promise<void>((r) => {
          const t = setTimeout(done, Math.min(delay, Math.max(0, deadline - Date.now())));
          function done() {
            clearTimeout(t);
            nudge = null;
            r();
          }
          nudge = done;
        });
        delay = Math.min(100, delay * 2);
      }
    } finally {
      unsubscribe();
    }
  }

  /** The run (by run id or workflow id: see RunSelector). Throws UnknownRunError. */
  async getRun(ref: RunSelector): Promise<RunRecord> {
    const run = await this.findRun(ref);
    if (!run) throw new UnknownRunError(typeof ref === 'string' ? ref : 'runId' in ref ? ref.runId : ref.workflowId);
    return run;
  }

  /** The newest run of a workflow id (continue-as-new runs and retries share it). Throws UnknownRunError. */
  async getRunByWorkflowId(workflowId: string): Promise<RunRecord> {
    return this.getRun({ workflowId });
  }

  async listChildren(ref: RunSelector, filter: { status?: RunStatus | RunStatus[] } = {}): Promise<RunRecord[]> {
    const run = await this.getRun(ref);
    return this.journal.listChildren(run.runId, filter);
  }

  /** The run's journal as exportable JSON (replayable with skein/testing's replayHistory). */
  async history(ref: RunSelector): Promise<ExportedHistory> {
    const run = await this.getRun(ref);
    const runId = run.runId;
    return { format: 'skein-history/1', runId, workflowId: run.workflowId, workflow: run.workflow, events: await this.journal.readEvents(runId) };
  }

  /**
   * Status, what the run waits on (as its engine said at its last commit: one interpreter, never a second reading of
   * the journal), why it is not progressing when that is not its code's doing, its lineage and a timeline.
   */
  async describe(ref: RunSelector): Promise<RunDescription> {
    const run = await this.getRun(ref);
    const runId = run.runId;
    const [events, children] = await Promise.all([this.journal.readEvents(runId), this.journal.listChildren(runId)]);
    const { waitKind, openWaits, openWaitCount, held } = waitsOf(run);
    let waitingFor: WaitingFor | null = null;
    if (held === 'operator') {
      const since = [...events].reverse().find((e) => e.type === 'RunBlocked')?.recordedAt ?? run.createdAt;
      waitingFor = { kind: 'operator', since, error: run.error };
    } else if (held === 'worker') {
      waitingFor = { kind: 'worker', workflow: run.workflow, queue: run.queue, since: run.nextWakeupAt ?? run.createdAt };
    }
    return {
      run,
      status: run.status,
      waitKind,
      openWaits,
      openWaitCount,
      waitingFor,
      lineage: {
        parentRunId: run.parentRunId,
        rootRunId: run.rootRunId,
        children: children.map((c) => ({ runId: c.runId, workflowId: c.workflowId, workflow: c.workflow, status: c.status })),
        continuedFrom: run.continuedFrom,
        continuedTo: run.continuedTo,
      },
      timeline: events.map((e) => {
        const path = (e.payload as { path?: string }).path;
        return { seq: e.seq, type: e.type, at: e.recordedAt, ...(path !== undefined ? { path } : {}) };
      }),
    };
  }

  /**
   * Resumes a blocked run (non-determinism, or a bug in its code) after a fix is deployed: RunResumed is journaled
   * with the reason and the run is due at once; a worker replays it with the code it has now (it blocks again if the
   * code still does not fit). Throws UnknownRunError, or RunStateError if the run is not blocked.
   */
  async resume(ref: RunSelector, reason = 'resumed'): Promise<RunRecord> {
    return this.journal.resume(await this.runIdOf(ref), { reason });
  }

  // ---- visibility and operating (docs/operating.md) ----

  /** Runs matching the filter, newest first, a page at a time (keyset: pass `nextCursor` back as `cursor`). */
  async listRuns(query: ListRunsQuery = {}): Promise<RunPage> {
    return this.journal.listRuns(query);
  }

  /** How many runs match the filter, by status. */
  async countRuns(filter: RunFilter = {}): Promise<RunCounts> {
    return this.journal.countRuns(filter);
  }

  /**
   * The run's descendants, breadth first, with what each waits on, a page at a time (default 100, at most 1000):
   * pass `nextCursor` back as `cursor`. Each page is one bounded query (see Journal.listDescendants), so a fan-out of
   * 10,000 children is read 100 (or `limit`) at a time, never all at once. `maxDepth`: levels below the run.
   */
  async tree(ref: RunSelector, query: DescendantsQuery = {}): Promise<TreePage> {
    const run = await this.getRun(ref);
    const page = await this.journal.listDescendants(run.runId, query);
    return { root: treeNode(run, run.depth), nodes: page.runs.map((r) => treeNode(r, run.depth)), nextCursor: page.nextCursor };
  }

  /**
   * Retries a failed, cancelled, terminated or timed-out root run as a new run of the same workflow id, with the same
   * input (see Journal.retry: its run id is derived from the retried run's; the reason and this client's identity are
   * journaled in its RunStarted). By workflow id, the newest run of it is retried. Retrying a run already retried
   * returns its retry (`created: false`). Throws UnknownRunError, or RunStateError when the run cannot be retried.
   */
  async retry(ref: RunSelector, reason: string, options: { by?: string } = {}): Promise<RetryResult> {
    if (typeof reason !== 'string' || !reason) throw new InvalidArgumentError('reason', 'an operator action needs a non-empty reason');
    const prev = await this.runIdOf(ref);
    // OpenTelemetry: the retry is a new trace (child of the caller's active span, like a start), linked to the trace
    // of the run it retries (docs/observability.md says why). The original's context is in its RunStarted: read only
    // while tracing is on.
    const span = openTelemetryEnabled()
      ? clientSpan('skein.retry', { 'skein.run_id': retryRunId(prev), 'skein.retry.previous_run_id': prev, 'skein.retry.reason': reason }, [
          { traceparent: await this.startedTrace(prev), attributes: { 'skein.link': 'retry', 'skein.run_id': prev } },
        ])
      : null;
    return traced(span, (r) => ({ 'skein.created': r.created }), async () => {
      const { run, created } = await this.journal.retry(prev, { reason, by: options.by ?? this.identity, ...(span ? { trace: span.trace(retryRunId(prev)) } : {}) });
      return { run, created, previousRunId: run.retryOf ?? prev };
    });
  }

  /** The traceparent in a run's RunStarted (undefined: the run was started while tracing was off). */
  private async startedTrace(runId: string): Promise<string | undefined> {
    const [first] = await this.journal.readEvents(runId);
    return first?.type === 'RunStarted' ? first.payload.trace?.traceparent : undefined;
  }

  /**
   * Cancels the open runs matching the filter (at most `limit`, newest first), each as `cancel` does (its open
   * descendants with it), with `reason` journaled on each. With `dryRun`, lists them and changes nothing.
   */
  async cancelMany(filter: RunFilter, reason: string, options: BulkOptions & { graceMs?: number } = {}): Promise<BulkResult> {
    return this.bulk(filter, reason, options, (runId) => this.cancel({ runId }, reason, options.graceMs !== undefined ? { graceMs: options.graceMs } : {}));
  }

  /** Terminates the open runs matching the filter (see cancelMany). */
  async terminateMany(filter: RunFilter, reason: string, options: BulkOptions = {}): Promise<BulkResult> {
    return this.bulk(filter, reason, options, (runId) => this.terminate({ runId }, reason));
  }

  /** The workers that heartbeat into this journal, alive or gone (see Journal.listWorkers). */
  async listWorkers(): Promise<WorkerInfo[]> {
    return this.journal.listWorkers();
  }

  private async bulk(filter: RunFilter, reason: string, options: BulkOptions, act: (runId: string) => Promise<unknown>): Promise<BulkResult> {
    if (typeof reason !== 'string' || !reason) throw new InvalidArgumentError('reason', 'an operator action needs a non-empty reason');
    const limit = options.limit ?? 1000;
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new InvalidArgumentError('limit', `it must be an integer from 1 to 10000, got ${String(limit)}`);
    // only open runs can be cancelled: the filter's statuses, among the open ones
    const asked = statusList(filter.status);
    const status = (asked ?? [...OPEN_STATUSES]).filter((s) => OPEN_STATUSES.has(s));
    const matched: RunRecord[] = [];
    let more = false;
    if (status.length) {
      let cursor: string | null = null;
      do {
        const page: RunPage = await this.journal.listRuns({ ...filter, status, limit: Math.min(MAX_PAGE_LIMIT, limit + 1 - matched.length), cursor });
        for (const r of page.runs) {
          if (matched.length === limit) {
            more = true;
            break;
          }
          matched.push(r);
        }
        cursor = page.nextCursor;
      } while (cursor && !more);
    }
    const result: BulkResult = { dryRun: !!options.dryRun, matched: matched.length, runs: matched, done: [], skipped: [], more };
    if (options.dryRun) return result;
    // One run at a time (each is one transaction with its cascade); a run closed meanwhile is skipped, not an error.
    for (const r of matched) {
      try {
        await act(r.runId);
        result.done.push(r.runId);
      } catch (err) {
        if (err instanceof RunClosedError) result.skipped.push({ runId: r.runId, reason: `already ${err.status}` });
        else if (err instanceof UnknownRunError) result.skipped.push({ runId: r.runId, reason: 'unknown run' });
        else throw err;
      }
    }
    this.log.info({ reason, done: result.done.length, skipped: result.skipped.length, more }, 'bulk operator action');
    return result;
  }

  /** The run a selector names, or undefined (see RunSelector for the rule). */
  private async findRun(ref: RunSelector): Promise<RunRecord | undefined> {
    if (typeof ref !== 'string') return 'runId' in ref ? this.journal.getRun(ref.runId) : this.journal.getRunByWorkflowId(ref.workflowId);
    if (isRunId(ref)) return this.journal.getRun(ref);
    return (await this.journal.getRunByWorkflowId(ref)) ?? (await this.journal.getRun(ref));
  }

  /**
   * The run id a selector names, reading nothing for a run id (the journal call that follows says UnknownRunError
   * itself); a string that is neither a workflow id nor a run id gets the same error from that call.
   */
  private async runIdOf(ref: RunSelector): Promise<string> {
    if (typeof ref !== 'string') {
      if ('runId' in ref) return ref.runId;
      const run = await this.journal.getRunByWorkflowId(ref.workflowId);
      if (!run) throw new UnknownRunError(ref.workflowId);
      return run.runId;
    }
    if (isRunId(ref)) return ref;
    return (await this.journal.getRunByWorkflowId(ref))?.runId ?? ref;
  }
}

/**
 * What a run's code waits on, from its engine's last commit (the one interpreter: describe and tree read it alike),
 * and what holds an open run up when it is not its code: `worker` (created, never started: no worker serving its
 * queue has its workflow), `operator` (blocked).
 */
function waitsOf(run: RunRecord): { waitKind: WaitKind; openWaits: OpenWait[]; openWaitCount: number; held: WaitingFor['kind'] | null } {
  const open = isOpen(run.status);
  const openWaits = open ? (run.waits?.waits ?? []) : [];
  const kinds = new Set(openWaits.map((w) => w.kind));
  const waitKind: WaitKind = (['child', 'activity', 'signal', 'timer'] as const).find((k) => kinds.has(k)) ?? null;
  const held = run.status === 'blocked' ? 'operator' : run.status === 'running' && run.waits === null && run.lastSeq === 1 ? 'worker' : null;
  return { waitKind, openWaits, openWaitCount: open ? (run.waits?.total ?? 0) : 0, held };
}

function treeNode(run: RunRecord, topDepth: number): TreeNode {
  const { waitKind, openWaits, openWaitCount, held } = waitsOf(run);
  return { run, level: run.depth - topDepth, waitKind, openWaits, openWaitCount, waitingFor: held };
}

/** `user@host` (the host alone where the user cannot be read, e.g. a container's unnamed uid). */
function defaultIdentity(): string {
  let user = '';
  try {
    user = userInfo().username;
  } catch {
    user = process.env.USER ?? '';
  }
  return user ? `${user}@${hostname()}` : hostname();
}

/** Runs `call` inside a client span (when tracing is on): ended with `attrs` of its result, or failed with its error. */
async function traced<T>(span: ClientSpan | null, attrs: (r: T) => Record<string, string | number | boolean>, call: () => Promise<T>): Promise<T> {
  if (!span) return call();
  try {
    const r = await call();
    span.end(attrs(r));
    return r;
  } catch (err) {
    span.fail(err);
    throw err;
  }
}
