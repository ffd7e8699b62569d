import type { WorkflowDef } from '../runtime/commands.js';
import { comparePaths } from '../runtime/engine.js';
import { UnknownRunError, WorkflowFailedError } from '../runtime/errors.js';
import type { JournalEvent } from '../runtime/events.js';
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

export interface OpenWait {
  kind: 'child' | 'activity' | 'timer' | 'signal';
  path: string;
  callId?: string;
  childWorkflowId?: string;
  childRunId?: string;
  /** For barrier members: the barrier's path, the member's leaf index and the number of leaves. */
  groupPath?: string;
  index?: number;
  size?: number;
}

export interface RunDescription {
  run: RunRecord;
  status: RunStatus;
  waitKind: WaitKind;
  openWaits: OpenWait[];
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
}

/** Starts runs and reads their state. Everything goes through the journal, so a client needs no worker. */
export class Client {
  private readonly maxChildDepth: number;
  private readonly log: Logger;
  constructor(
    readonly journal: Journal,
    options: ClientOptions = {},
  ) {
    this.maxChildDepth = options.maxChildDepth ?? DEFAULT_MAX_CHILD_DEPTH;
    this.log = options.logger ?? pino({ level: process.env.SKEIN_LOG_LEVEL ?? 'info' });
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

  /** Waits for a run to close; returns its result or throws WorkflowFailedError. */
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
        if (Date.now() >= deadline) throw new Error(`timed out after ${options.timeoutMs} ms waiting for run ${runId}`);
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

  /** Status, what the run waits on, its lineage and a timeline of its events. */
  async describe(runId: string): Promise<RunDescription> {
    const run = await this.getRun(runId);
    const events = await this.journal.readEvents(runId);
    const children = await this.journal.listChildren(runId);
    const openWaits = isOpen(run.status) ? openWaitsOf(events) : [];
    const kinds = new Set(openWaits.map((w) => w.kind));
    const waitKind: WaitKind = kinds.has('child')
      ? 'child'
      : kinds.has('activity')
        ? 'activity'
        : kinds.has('signal')
          ? 'signal'
          : kinds.has('timer')
            ? 'timer'
            : null;
    return {
      run,
      status: run.status,
      waitKind,
      openWaits,
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
}

/** Scheduled things with no outcome journaled yet, with their barrier position when they are barrier members. */
function openWaitsOf(events: JournalEvent[]): OpenWait[] {
  const open = new Map<string, OpenWait>();
  const signalNames = new Map<string, string>();
  for (const e of events) if (e.type === 'SignalWaitStarted') signalNames.set(e.payload.path, e.payload.name);
  for (const e of events) {
    switch (e.type) {
      case 'ChildScheduled':
        open.set(e.payload.path, { kind: 'child', path: e.payload.path, callId: e.payload.callId, childWorkflowId: e.payload.childWorkflowId, childRunId: e.payload.childRunId });
        break;
      case 'ActivityScheduled':
        open.set(e.payload.path, { kind: 'activity', path: e.payload.path });
        break;
      case 'TimerStarted':
        open.set(e.payload.path, { kind: 'timer', path: e.payload.path });
        break;
      case 'SignalWaitStarted':
        open.set(e.payload.path, { kind: 'signal', path: e.payload.path });
        break;
      case 'SignalReceived':
        // The oldest open wait for this name took it (journal order), as the engine does.
        for (const w of open.values()) {
          if (w.kind === 'signal' && signalNames.get(w.path) === e.payload.name) {
            open.delete(w.path);
            break;
          }
        }
        break;
      case 'ChildCompleted':
      case 'ChildFailed':
      case 'ChildCancelled':
      case 'ChildTerminated':
      case 'ChildTimedOut':
      case 'ActivityCompleted':
      case 'ActivityFailed':
      case 'TimerFired':
        open.delete(e.payload.path);
        break;
    }
  }
  const sizes = new Map<string, number>();
  for (const e of events) {
    const p = (e.payload as { path?: string }).path;
    if (!p || !['ChildScheduled', 'ActivityScheduled', 'TimerStarted'].includes(e.type)) continue;
    const dot = p.indexOf('.');
    if (dot > 0) sizes.set(p.slice(0, dot), (sizes.get(p.slice(0, dot)) ?? 0) + 1);
  }
  return [...open.values()]
    .map((w) => {
      const dot = w.path.indexOf('.');
      if (dot < 0) return w;
      const groupPath = w.path.slice(0, dot);
      return { ...w, groupPath, index: Number(w.path.slice(dot + 1)), size: sizes.get(groupPath) ?? 0 };
    })
    .sort((a, b) => comparePaths(a.path, b.path));
}
