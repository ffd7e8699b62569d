import type { WorkflowDef } from '../runtime/commands.js';
import { Registry, type WorkflowsInput } from '../runtime/registry.js';
import { InvalidArgumentError, ResultTimeoutError, UnknownRunError, WorkflowFailedError } from '../runtime/errors.js';
import type { JournalEvent } from '../runtime/events.js';
import type { OpenWait } from '../runtime/waits.js';
import { deriveId, journalValue } from '../runtime/json.js';
import pino, { type Logger } from 'pino';
import { isOpen, type CancelOptions, type CancelResult, type Journal, type RunRecord, type RunStatus } from '../journal/journal.js';
import { DEFAULT_MAX_CHILD_DEPTH } from '../runtime/engine.js';
import { telemetry } from '../runtime/telemetry.js';

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

export interface ClientOptions {
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
  constructor(
    readonly journal: Journal,
    options: ClientOptions = {},
  ) {
    this.maxChildDepth = options.maxChildDepth ?? DEFAULT_MAX_CHILD_DEPTH;
    this.log = options.logger ?? pino({ level: process.env.SKEIN_LOG_LEVEL ?? 'info' });
    this.registry = options.workflows ? new Registry(options.workflows) : null;
  }

  /**
   * Cancels a run and its open, non-abandoned descendants (SPEC section 7). The descendants close at once, in one
   * transaction; the run itself gets CancelledError at its current yield and `graceMs` (default 10 s) to clean up
   * (pass 0 to close it at once too). Throws UnknownRunError, or RunClosedError if it has already closed.
   */
  async cancel(runId: string, reason = 'cancelled', options: { graceMs?: number } = {}): Promise<CancelResult> {
    return this.cascade(runId, { reason, mode: 'cancel', graceMs: options.graceMs ?? 10_000, maxChildDepth: this.maxChildDepth });
  }

  /** Stops a run at once without running its code; its descendants follow their parent-close policies. */
  async terminate(runId: string, reason = 'terminated'): Promise<CancelResult> {
    return this.cascade(runId, { reason, mode: 'terminate', graceMs: 0, maxChildDepth: this.maxChildDepth });
  }

  /** Sends a signal to an open run; with `signalId`, sending again is a no-op. Throws RunClosedError if closed. */
  async signal(runId: string, name: string, payload?: unknown, options: { signalId?: string } = {}): Promise<{ signalId: string }> {
    return this.journal.signal(runId, { name, payload, ...(options.signalId ? { signalId: options.signalId } : {}) });
  }

  private async cascade(runId: string, options: CancelOptions): Promise<CancelResult> {
    const result = await this.journal.cancel(runId, options);
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
    const workflowId = options.workflowId ?? `${workflow}-${deriveId('', String(Date.now()), String(Math.random())).slice(0, 12)}`;
    const queue = options.queue ?? (typeof wf === 'string' ? undefined : wf.options.queue) ?? 'default';
    const { run, created } = await this.journal.startRun({
      runId: deriveId('r_', 'root', workflowId),
      workflowId,
      workflow,
      input: journalValue(input, `input of workflow '${workflow}'`),
      queue,
      ...(options.executionTimeoutMs !== undefined ? { deadline: this.journal.clock.now() + options.executionTimeoutMs } : {}),
    });
    return { runId: run.runId, workflowId: run.workflowId, workflow: run.workflow, created };
  }

  /**
   * Waits for a run to close; returns its result or throws WorkflowFailedError (its cause: the run's error, revived as
   * its own class), or ResultTimeoutError when `timeoutMs` passes first.
   */
  async result<O = unknown>(ref: RunRef<O> | string, options: { timeoutMs?: number } = {}): Promise<O> {
    const runId = typeof ref === 'string' ? ref : ref.runId;
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

  async getRun(runId: string): Promise<RunRecord> {
    const run = await this.journal.getRun(runId);
    if (!run) throw new UnknownRunError(runId);
    return run;
  }

  async listChildren(runId: string, filter: { status?: RunStatus | RunStatus[] } = {}): Promise<RunRecord[]> {
    await this.getRun(runId);
    return this.journal.listChildren(runId, filter);
  }

  /** The run's journal as exportable JSON (replayable with skein/testing's replayHistory). */
  async history(runId: string): Promise<ExportedHistory> {
    const run = await this.getRun(runId);
    return { format: 'skein-history/1', runId, workflowId: run.workflowId, workflow: run.workflow, events: await this.journal.readEvents(runId) };
  }

  /**
   * Status, what the run waits on (as its engine said at its last commit: one interpreter, never a second reading of
   * the journal), why it is not progressing when that is not its code's doing, its lineage and a timeline.
   */
  async describe(runId: string): Promise<RunDescription> {
    const run = await this.getRun(runId);
    const [events, children] = await Promise.all([this.journal.readEvents(runId), this.journal.listChildren(runId)]);
    const open = isOpen(run.status);
    const openWaits = open ? (run.waits?.waits ?? []) : [];
    const kinds = new Set(openWaits.map((w) => w.kind));
    const waitKind: WaitKind = (['child', 'activity', 'signal', 'timer'] as const).find((k) => kinds.has(k)) ?? null;
    let waitingFor: WaitingFor | null = null;
    if (run.status === 'blocked') {
      const since = [...events].reverse().find((e) => e.type === 'RunBlocked')?.recordedAt ?? run.createdAt;
      waitingFor = { kind: 'operator', since, error: run.error };
    } else if (run.status === 'running' && run.waits === null && run.lastSeq === 1) {
      waitingFor = { kind: 'worker', workflow: run.workflow, queue: run.queue, since: run.nextWakeupAt ?? run.createdAt };
    }
    return {
      run,
      status: run.status,
      waitKind,
      openWaits,
      openWaitCount: open ? (run.waits?.total ?? 0) : 0,
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
  async resume(runId: string, reason = 'resumed'): Promise<RunRecord> {
    return this.journal.resume(runId, { reason });
  }
}
