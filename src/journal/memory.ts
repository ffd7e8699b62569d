import { randomUUID } from 'node:crypto';
import {
  CorruptJournalError,
  DuplicateWorkflowIdError,
  LeaseLostError,
  RunClosedError,
  RunStateError,
  SkeinError,
  UnknownRunError,
  type SerializedError,
} from '../runtime/errors.js';
import { runStartedPayload, type JournalEvent, type NewEvent, type RetryNote } from '../runtime/events.js';
import { journalValue } from '../runtime/json.js';
import {
  isOpen,
  NO_WAIT,
  parentClosed,
  PARENT_STOPPED_WAITING,
  type ChildOutcome,
  type ClaimOptions,
  type Clock,
  type Commit,
  type CommitResult,
  type Journal,
  type Lease,
  type NewRun,
  type RunRecord,
  type RunStatus,
  type WaitSpec,
  type WakeListener,
  type CancelOptions,
  type CancelResult,
  type Inbox,
  type InboxSignal,
  type SignalInput,
  leasesChild,
  retryRunId,
  WORKER_RETENTION_MS,
  type DescendantsQuery,
  type JournalTarget,
  type ListRunsQuery,
  type RunCounts,
  type RunFilter,
  type RunPage,
  type WorkerHeartbeat,
  type WorkerInfo,
} from './journal.js';
import {
  breadthFirst,
  checkRetryable,
  compareIds,
  countsOf,
  decodeRunCursor,
  decodeTreeCursor,
  encodeCursor,
  levels,
  newestFirst,
  pageLimit,
  runMatcher,
  workerOrder,
  workerStatus,
} from './visibility.js';

/** A clock that only moves when told to. Timers and lease expiry in the memory journal follow it. */
export class ManualClock implements Clock {
  constructor(private t = 1_700_000_000_000) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
  set(t: number): void {
    this.t = t;
  }
}

export const systemClock: Clock = { now: () => Date.now() };

interface MemRun {
  record: RunRecord;
  events: JournalEvent[];
  leaseToken: string | null;
  wait: WaitSpec;
  inbox: InboxSignal[];
  /** Every signal id ever accepted for this run (exactly-once delivery). */
  signalIds: Set<string>;
  /** The run has journaled its CancelRequested. */
  cancelJournaled: boolean;
}

const clone = <T>(v: T): T => (v === undefined ? v : structuredClone(v));

/**
 * The journal in process memory, with the same contract as the Postgres journal: fenced appends, one atomic commit
 * per activation, wake rules evaluated when a child closes. Every method is synchronous inside, so each call is
 * atomic with respect to the others, as a transaction is. Values are deep-copied in and out, so no caller can
 * change the history by mutating what it passed or got.
 */
export class MemoryJournal implements Journal {
  private runs = new Map<string, MemRun>();
  private byWorkflowId = new Map<string, string>();
  /** Child run ids by parent run id (an index, so cascades and listings never scan every run). */
  private kids = new Map<string, Set<string>>();
  private listeners = new Set<WakeListener>();
  private workers = new Map<string, Omit<WorkerInfo, 'status'>>();

  constructor(readonly clock: Clock = systemClock) {}

  async migrate(): Promise<void> {}
  async close(): Promise<void> {
    this.listeners.clear();
  }

  async startRun(run: NewRun): Promise<{ run: RunRecord; created: boolean }> {
    const existingId = this.byWorkflowId.get(run.workflowId);
    if (existingId) {
      const existing = this.mustGet(existingId).record;
      if (existing.workflow !== run.workflow) throw new DuplicateWorkflowIdError(run.workflowId, existing.runId, existing.workflow);
      return { run: clone(existing), created: false };
    }
    // Run ids are derived or random, so a clash is a caller bug; overwriting the other run would lose its history.
    const taken = this.runs.get(run.runId);
    if (taken) throw new SkeinError(`run id ${run.runId} is already used by workflow id '${taken.record.workflowId}'`);
    const m = this.insertRun(run);
    this.notify([m.record.runId]);
    return { run: clone(m.record), created: true };
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    return clone(this.runs.get(runId)?.record);
  }

  async getRunByWorkflowId(workflowId: string): Promise<RunRecord | undefined> {
    const id = this.byWorkflowId.get(workflowId);
    return id ? clone(this.runs.get(id)?.record) : undefined;
  }

  async readEvents(runId: string, afterSeq = 0): Promise<JournalEvent[]> {
    const m = this.runs.get(runId);
    if (!m) throw new UnknownRunError(runId);
    return clone(m.events.slice(afterSeq));
  }

  async listChildren(runId: string, filter?: { status?: RunStatus | RunStatus[] }): Promise<RunRecord[]> {
    const statuses = filter?.status === undefined ? undefined : new Set(([] as RunStatus[]).concat(filter.status));
    const out: RunRecord[] = [];
    for (const id of this.kids.get(runId) ?? []) {
      const m = this.runs.get(id)!;
      if (m.record.parentRunId !== runId) continue;
      if (statuses && !statuses.has(m.record.status)) continue;
      out.push(clone(m.record));
    }
    return out.sort((a, b) => a.createdAt - b.createdAt || (a.runId < b.runId ? -1 : 1));
  }

  async childOutcomes(parentRunId: string, childRunIds: string[]): Promise<ChildOutcome[]> {
    const out: ChildOutcome[] = [];
    for (const id of childRunIds) {
      let c = this.runs.get(id)?.record;
      if (!c || c.parentRunId !== parentRunId) continue;
      // Follow a continue-as-new chain to its newest run: the parent reports that run's outcome, never 'continued'.
      while (c.status === 'continued' && c.continuedTo) c = this.mustGet(c.continuedTo).record;
      if (c.status === 'continued' || (isOpen(c.status) && c.runId === id)) continue;
      out.push({
        childRunId: id,
        currentRunId: c.runId,
        callId: c.callId ?? '',
        status: c.status,
        result: clone(c.result),
        error: clone(c.error),
        closedAt: c.closedAt ?? 0,
      });
    }
    return out;
  }

  async claimDue(o: ClaimOptions): Promise<Lease[]> {
    const now = this.clock.now();
    const queues = new Set(o.queues);
    const workflows = o.workflows && new Set(o.workflows);
    const activities = o.activities && new Set(o.activities.names);
    const due: MemRun[] = [];
    for (const m of this.runs.values()) {
      const r = m.record;
      if (r.status !== 'running' || !queues.has(r.queue)) continue;
      if (workflows && !workflows.has(r.workflow)) continue;
      if (r.nextWakeupAt === null || r.nextWakeupAt > now) continue;
      if (m.leaseToken && (r.leaseExpiresAt ?? 0) > now) continue;
      // stalled on an activity the claimer lacks: left to those that have it for a while (ClaimOptions.activities)
      if (activities && r.stall && !activities.has(r.stall.activity) && r.stall.nextAttemptAt + o.activities!.graceMs > now) continue;
      due.push(m);
    }
    due.sort((a, b) => (a.record.nextWakeupAt ?? 0) - (b.record.nextWakeupAt ?? 0) || a.record.depth - b.record.depth);
    return due.slice(0, o.limit).map((m) => this.grant(m, o.owner, o.leaseMs));
  }

  async acquire(runId: string, owner: string, leaseMs: number, queues?: string[], workflows?: string[]): Promise<Lease | undefined> {
    const m = this.runs.get(runId);
    if (!m || m.record.status !== 'running') return undefined;
    if (queues && !queues.includes(m.record.queue)) return undefined;
    if (workflows && !workflows.includes(m.record.workflow)) return undefined;
    if (m.leaseToken && (m.record.leaseExpiresAt ?? 0) > this.clock.now()) return undefined;
    return this.grant(m, owner, leaseMs);
  }

  async acquireMany(runIds: string[], owner: string, leaseMs: number, queues?: string[], workflows?: string[], withHistory?: readonly string[]): Promise<Lease[]> {
    const out: Lease[] = [];
    const history = new Set(withHistory);
    for (const id of [...new Set(runIds)]) {
      const l = await this.acquire(id, owner, leaseMs, queues, workflows);
      if (!l) continue;
      const lease: Lease = { ...l, inbox: await this.inbox(id) };
      if (history.has(id)) lease.history = { depth: this.runs.get(id)!.record.depth, events: await this.readEvents(id) };
      out.push(lease);
    }
    return out;
  }

  async renew(lease: Lease, leaseMs: number): Promise<Lease> {
    const m = this.fenced(lease);
    const expiresAt = this.clock.now() + leaseMs;
    m.record.leaseExpiresAt = expiresAt;
    return { ...lease, expiresAt };
  }

  async renewMany(leases: Lease[], leaseMs: number): Promise<{ expiresAt: number; lost: string[] }> {
    const expiresAt = this.clock.now() + leaseMs;
    const lost: string[] = [];
    for (const l of leases) {
      const m = this.runs.get(l.runId);
      if (m && m.leaseToken === l.token && m.record.status === 'running') m.record.leaseExpiresAt = expiresAt;
      else lost.push(l.runId);
    }
    return { expiresAt, lost };
  }

  async release(lease: Lease): Promise<void> {
    const m = this.runs.get(lease.runId);
    if (!m || m.leaseToken !== lease.token) return;
    this.clearLease(m);
  }

  async commit(lease: Lease, c: Commit): Promise<CommitResult> {
    const m = this.fenced(lease);
    if (c.afterSeq !== m.record.lastSeq) {
      throw new LeaseLostError(lease.runId, `journal is at seq ${m.record.lastSeq}, writer expected ${c.afterSeq}`);
    }
    const now = this.clock.now();
    // Validate everything before mutating anything: the commit is all or nothing. That includes the children's inputs
    // and the close result/error, which must be JSON like every other journaled value.
    const events = c.events.map((e) => journalValue(e, `event ${e.type}`) as NewEvent);
    const children: NewRun[] = [];
    const listed = new Set<string>();
    const batch = new Map<string, NewRun>(); // workflow id -> child, to catch two new children sharing one id
    for (const ch of c.children) {
      // A child that already exists is left as it is; a run id listed twice is one child.
      if (this.runs.has(ch.runId) || listed.has(ch.runId)) continue;
      listed.add(ch.runId);
      const clash = this.byWorkflowId.get(ch.workflowId);
      if (clash) {
        const other = this.mustGet(clash).record;
        throw new DuplicateWorkflowIdError(ch.workflowId, other.runId, other.workflow);
      }
      const twin = batch.get(ch.workflowId);
      if (twin) throw new DuplicateWorkflowIdError(ch.workflowId, twin.runId, twin.workflow);
      batch.set(ch.workflowId, ch);
      children.push({
        ...ch,
        input: journalValue(ch.input, `input of workflow '${ch.workflow}'`),
        ...(ch.completed
          ? {
              completed: {
                events: ch.completed.events.map((e) => journalValue(e, `event ${e.type}`) as NewEvent),
                status: ch.completed.status,
                result: journalValue(ch.completed.result ?? null, 'run result'),
                ...(ch.completed.error ? { error: journalValue<SerializedError>(ch.completed.error, 'run error') } : {}),
              },
            }
          : {}),
      });
    }
    const close = c.close && {
      status: c.close.status,
      result: journalValue(c.close.result ?? null, 'run result'),
      error: c.close.error ? journalValue<SerializedError>(c.close.error, 'run error') : null,
      next: c.close.next ? { ...c.close.next, input: journalValue(c.close.next.input, 'continue-as-new input') } : undefined,
    };
    const signals = (c.signals ?? []).map((sg) => ({ ...sg, payload: journalValue(sg.payload ?? null, `payload of signal '${sg.name}'`) }));
    const block = c.block && journalValue<SerializedError>(c.block, 'block error');

    let seq = m.record.lastSeq;
    for (const e of events) m.events.push({ ...e, seq: ++seq, recordedAt: now } as JournalEvent);
    m.record.lastSeq = seq;
    // Signals journaled by this activation leave the inbox; a cancel request, once journaled, is done.
    const received = new Set(events.flatMap((e) => (e.type === 'SignalReceived' ? [e.payload.signalId] : [])));
    if (received.size) m.inbox = m.inbox.filter((x) => !received.has(x.signalId));
    if (events.some((e) => e.type === 'CancelRequested')) m.cancelJournaled = true;
    const woken: string[] = [];
    const stopped: string[] = [];
    const maxDepth = c.maxChildDepth ?? 10;
    for (const cc of c.closeChildren ?? []) {
      const child = this.runs.get(cc.runId);
      if (!child || child.record.parentRunId !== m.record.runId || !isOpen(child.record.status) || cc.policy === 'abandon') continue;
      const err: SerializedError = { name: 'ChildTimeoutError', message: 'the parent stopped waiting (timeout)' };
      this.closeRun(child, cc.policy === 'terminate' ? 'terminated' : 'cancelled', err, PARENT_STOPPED_WAITING, now, stopped);
      this.cascade([child], maxDepth, now, stopped, [], [], PARENT_STOPPED_WAITING);
    }

    const childLeases: Lease[] = [];
    const leaseMs = Math.max(0, lease.expiresAt - now);
    for (const ch of children) {
      const cm = this.insertRun({
        ...ch,
        parentRunId: m.record.runId,
        rootRunId: m.record.rootRunId,
        depth: ch.depth ?? m.record.depth + 1,
      });
      if (ch.completed) {
        // An inline child: its whole journal and its close, in its parent's commit.
        for (const e of ch.completed.events) cm.events.push({ ...e, seq: ++cm.record.lastSeq, recordedAt: now } as JournalEvent);
        cm.record.status = ch.completed.status;
        cm.record.result = ch.completed.result ?? null;
        cm.record.error = ch.completed.error ?? null;
        cm.record.closedAt = now;
        cm.record.nextWakeupAt = null;
        continue;
      }
      // A retry due after its backoff is leased to nobody: whoever claims it at its start time runs it.
      if (leasesChild(c, ch.runId) && (ch.startAt ?? now) <= now) childLeases.push(this.grant(cm, lease.owner, leaseMs));
    }

    // After the children exist: a parent may signal a child it started in this same activation.
    for (const sg of signals) if (this.deliverSignal(sg.runId, sg, now)) woken.push(sg.runId);

    let wokeParent: string | null = null;
    if (block) {
      m.record.status = 'blocked';
      m.record.error = block;
      m.record.nextWakeupAt = null;
      m.record.waits = null;
      m.record.stall = null;
      m.wait = NO_WAIT;
    } else if (close) {
      m.record.status = close.status;
      m.record.result = close.result;
      m.record.error = close.error;
      m.record.closedAt = now;
      m.record.nextWakeupAt = null;
      m.record.cancelRequest = null;
      m.record.waits = null;
      m.record.stall = null;
      m.wait = NO_WAIT;
      if (close.next) {
        const next = this.continueRun(m, close.next, now);
        woken.push(next.record.runId);
      } else {
        // The parent closed: its open children follow their parent-close policy, in this same transaction.
        this.cascade([m], maxDepth, now, stopped, [], [], parentClosed(close.status));
        wokeParent = this.wakeParentOnClose(m.record);
      }
    } else {
      m.wait = clone(c.wait);
      if (c.waits) m.record.waits = clone(c.waits);
      // What the run is stuck on: as the commit says, else cleared once the stalled activity's result is journaled.
      const stalled = m.record.stall;
      if (c.stall !== undefined) m.record.stall = clone(c.stall);
      else if (stalled && events.some((e) => (e.type === 'ActivityCompleted' || e.type === 'ActivityFailed') && e.payload.path === stalled.path)) m.record.stall = null;
      m.record.nextWakeupAt = this.dueTime(m, now);
      // A signal or cancel request that arrived while the run was busy must not wait for a poll: it is due now, and
      // announced (the run's own worker usually takes it straight back).
      if (m.inbox.length || (m.record.cancelRequest && !m.cancelJournaled)) {
        m.record.nextWakeupAt = now;
        woken.push(m.record.runId);
      }
    }
    if (c.release || close || block) this.clearLease(m);

    woken.push(...children.filter((ch) => !ch.completed && (ch.startAt ?? now) <= now && !leasesChild(c, ch.runId)).map((ch) => ch.runId));
    if (wokeParent) woken.push(wokeParent);
    if (woken.length) this.notify(woken);
    if (stopped.length) this.notify(stopped, 'stop');
    if (close && !m.record.parentRunId) this.notify([m.record.runId], 'closed');
    return { lastSeq: seq, childLeases, wokeParent };
  }

  onWake(listener: WakeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async signal(runId: string, signal: SignalInput): Promise<{ signalId: string }> {
    const m = this.runs.get(runId);
    if (!m) throw new UnknownRunError(runId);
    if (!isOpen(m.record.status)) throw new RunClosedError(runId, m.record.status);
    if (typeof signal.name !== 'string' || !signal.name) throw new TypeError('signal name must be a non-empty string');
    const payload = journalValue(signal.payload ?? null, `payload of signal '${signal.name}'`);
    const signalId = signal.signalId ?? randomUUID();
    const sg = { signalId, name: signal.name, payload, ...(typeof signal.traceparent === 'string' ? { traceparent: signal.traceparent } : {}) };
    if (this.deliverSignal(runId, sg, this.clock.now())) this.notify([runId]);
    return { signalId };
  }

  async inbox(runId: string): Promise<Inbox> {
    const m = this.runs.get(runId);
    if (!m) throw new UnknownRunError(runId);
    return { signals: clone(m.inbox), cancel: clone(m.record.cancelRequest) };
  }

  async cancel(runId: string, o: CancelOptions): Promise<CancelResult> {
    const m = this.runs.get(runId);
    if (!m) throw new UnknownRunError(runId);
    if (!isOpen(m.record.status)) throw new RunClosedError(runId, m.record.status, o.mode);
    const now = this.clock.now();
    const stopped: string[] = [];
    const closed: string[] = [];
    const truncated: string[] = [];
    let status: CancelResult['status'];
    let woke: string | null = null;
    const graceful = o.mode === 'cancel' && o.graceMs > 0 && m.record.status === 'running';
    if (graceful) {
      // The run's code gets CancelledError at its current yield and may clean up until the deadline. Its lease is
      // voided, so an activation computed before the request (which might start a child) cannot commit: nothing
      // started concurrently escapes the cascade. Whoever takes the run next journals the request first.
      m.record.cancelRequest ??= { reason: o.reason, deadline: now + o.graceMs, requestedAt: now };
      m.record.nextWakeupAt = now;
      this.clearLease(m);
      status = 'cancelling';
    } else {
      status = o.mode === 'terminate' ? 'terminated' : 'cancelled';
      const err: SerializedError = o.mode === 'terminate' ? { name: 'TerminatedError', message: o.reason } : { name: 'CancelledError', message: o.reason };
      this.closeRun(m, status, err, o.reason, now, stopped);
      woke = this.wakeParentOnClose(m.record);
    }
    // Descendants: one generation at a time, parent before child, bounded by maxChildDepth.
    this.cascade([m], o.maxChildDepth, now, stopped, truncated, closed, o.mode === 'terminate' ? 'parent_terminated' : 'parent_cancelled');
    if (stopped.length) this.notify(stopped, 'stop');
    if (!graceful && !m.record.parentRunId) this.notify([runId], 'closed');
    const woken = [graceful ? runId : null, woke].filter((x): x is string => !!x);
    if (woken.length) this.notify(woken);
    return { runId, status, closed, truncated };
  }

  async resume(runId: string, o: { reason: string }): Promise<RunRecord> {
    const m = this.runs.get(runId);
    if (!m) throw new UnknownRunError(runId);
    if (m.record.status !== 'blocked') throw new RunStateError(runId, m.record.status, 'resume', 'only a blocked run can be resumed');
    const now = this.clock.now();
    this.appendNote(m, { type: 'RunResumed', payload: { reason: String(o.reason) } }, now);
    m.record.status = 'running';
    m.record.error = null;
    m.record.nextWakeupAt = now;
    this.clearLease(m);
    this.notify([runId]);
    return clone(m.record);
  }

  // ---- operating: listings, descendants, retries, workers (docs/operating.md) ----
  // Listings scan every run: the memory journal serves tests and simulations, where that is cheap.

  async listRuns(query: ListRunsQuery = {}): Promise<RunPage> {
    const limit = pageLimit(query.limit);
    const match = runMatcher(query);
    const after = decodeRunCursor(query.cursor);
    const found = [...this.runs.values()]
      .map((m) => m.record)
      .filter((r) => match(r) && (!after || r.createdAt < after.createdAt || (r.createdAt === after.createdAt && compareIds(r.runId, after.runId) < 0)))
      .sort(newestFirst);
    const runs = found.slice(0, limit).map(clone);
    const last = runs[runs.length - 1];
    return { runs, nextCursor: found.length > limit && last ? encodeCursor([last.createdAt, last.runId]) : null };
  }

  async countRuns(filter: RunFilter = {}): Promise<RunCounts> {
    const match = runMatcher(filter);
    const counts = new Map<RunStatus, number>();
    for (const m of this.runs.values()) if (match(m.record)) counts.set(m.record.status, (counts.get(m.record.status) ?? 0) + 1);
    return countsOf([...counts].map(([status, count]) => ({ status, count })));
  }

  async listDescendants(runId: string, query: DescendantsQuery = {}): Promise<RunPage> {
    const limit = pageLimit(query.limit);
    const after = decodeTreeCursor(query.cursor);
    const root = this.runs.get(runId);
    if (!root) throw new UnknownRunError(runId);
    const toDepth = root.record.depth + levels(query.maxDepth);
    // through the parent links, level by level, as the Postgres journal's walk below a run that is not a root
    const found: RunRecord[] = [];
    let level = [runId];
    while (level.length) {
      const next: string[] = [];
      for (const id of level) {
        for (const k of this.kids.get(id) ?? []) {
          const r = this.runs.get(k)!.record;
          if (r.parentRunId !== id || r.depth > toDepth) continue;
          found.push(r);
          next.push(k);
        }
      }
      level = next;
    }
    const rest = found
      .filter((r) => !after || breadthFirst(r, after) > 0)
      .sort(breadthFirst);
    const runs = rest.slice(0, limit).map(clone);
    const last = runs[runs.length - 1];
    return { runs, nextCursor: rest.length > limit && last ? encodeCursor([last.depth, last.createdAt, last.runId]) : null };
  }

  async retry(runId: string, o: { reason: string; by?: string; trace?: NewRun['trace'] }): Promise<{ run: RunRecord; created: boolean }> {
    const m = this.runs.get(runId);
    if (!m) throw new UnknownRunError(runId);
    const prev = m.record;
    if (prev.retriedTo) return { run: clone(this.mustGet(prev.retriedTo).record), created: false };
    checkRetryable(prev);
    const now = this.clock.now();
    const started = m.events[0]?.type === 'RunStarted' ? m.events[0].payload : undefined;
    const retry: RetryNote = { previousRunId: prev.runId, reason: String(o.reason), ...(o.by !== undefined ? { by: String(o.by) } : {}) };
    const next = this.insertRun({
      runId: retryRunId(prev.runId),
      workflowId: prev.workflowId,
      workflow: prev.workflow,
      input: clone(prev.input),
      queue: prev.queue,
      // the same execution timeout, counted from the retry's start
      ...(started?.deadline !== undefined ? { deadline: now + Math.max(0, started.deadline - prev.createdAt) } : {}),
      retry,
      ...(o.trace ? { trace: o.trace } : {}),
    });
    prev.retriedTo = next.record.runId;
    this.notify([next.record.runId]);
    return { run: clone(next.record), created: true };
  }

  async workerHeartbeat(w: WorkerHeartbeat): Promise<void> {
    const now = this.clock.now();
    for (const [id, x] of this.workers) if (id !== w.workerId && x.lastSeenAt < now - WORKER_RETENTION_MS) this.workers.delete(id);
    const old = this.workers.get(w.workerId);
    const stoppedAt = old && old.startedAt === w.startedAt ? old.stoppedAt : null;
    this.workers.set(w.workerId, { ...clone(w), lastSeenAt: now, stoppedAt });
  }

  async workerStopped(workerId: string): Promise<void> {
    const w = this.workers.get(workerId);
    if (!w) return;
    const now = this.clock.now();
    w.stoppedAt = now;
    w.lastSeenAt = now;
  }

  async listWorkers(): Promise<WorkerInfo[]> {
    const now = this.clock.now();
    return [...this.workers.values()]
      .filter((w) => w.lastSeenAt >= now - WORKER_RETENTION_MS)
      .map((w) => ({ ...clone(w), status: workerStatus(w, now) }))
      .sort(workerOrder);
  }

  async ping(): Promise<void> {}

  target(): JournalTarget {
    return { kind: 'memory' };
  }

  // ---- test and tooling helpers (not part of the contract) ----

  /** A run's row without copying it (in-process tooling such as the simulator; do not mutate). */
  peekRun(runId: string): Readonly<RunRecord> | undefined {
    return this.runs.get(runId)?.record;
  }

  /** Every run's row without copying (in-process tooling; do not mutate). */
  peekRuns(): Iterable<Readonly<RunRecord>> {
    return [...this.runs.values()].map((m) => m.record);
  }

  /** Every run, for inspection in tests. */
  allRuns(): RunRecord[] {
    return [...this.runs.values()].map((m) => clone(m.record));
  }

  /** Replaces a run's stored journal (tests of corrupt or foreign histories). */
  injectEvents(runId: string, events: JournalEvent[]): void {
    const m = this.mustGet(runId);
    m.events = clone(events);
    m.record.lastSeq = events.length ? events[events.length - 1]!.seq : 0;
  }

  // ---- internals ----

  /** Closes a run from outside (cancel, terminate, parent-close policy): no more appends, its lease is void. */
  private closeRun(m: MemRun, status: 'cancelled' | 'terminated', error: SerializedError, reason: string, now: number, stopped: string[]): void {
    // The journal ends with the closing event (for a cancel, after the request), saying why.
    if (status === 'terminated') this.appendNote(m, { type: 'RunTerminated', payload: { reason } }, now);
    else {
      this.appendNote(m, { type: 'CancelRequested', payload: { reason, deadline: now, closedAt: now } }, now);
      this.appendNote(m, { type: 'RunCancelled', payload: { reason, forced: true } }, now);
    }
    m.record.status = status;
    m.record.error = error;
    m.record.closedAt = now;
    m.record.nextWakeupAt = null;
    m.record.cancelRequest = null;
    m.record.waits = null;
    m.record.stall = null;
    m.wait = NO_WAIT;
    this.clearLease(m);
    stopped.push(m.record.runId);
  }

  /**
   * Applies parent-close policies below `roots`, generation by generation (parent before child). An open child
   * with policy cancel/terminate is closed (carrying `parent_cancelled` / `parent_terminated`) and ParentClosePolicy
   * Applied is journaled on its parent when that parent is closed (an open parent's journal belongs to its lease
   * holder; it learns of the child's close as an outcome instead). Descendants deeper than maxChildDepth are left
   * alone and reported in `truncated`.
   */
  private cascade(
    roots: MemRun[],
    maxDepth: number,
    now: number,
    stopped: string[],
    truncated: string[],
    closed: string[] = [],
    reason = 'parent_cancelled',
  ): void {
    let generation = roots;
    // Snapshot each parent's open children before anything closes (a generation is decided before it changes).
    const openKids = (id: string) => [...(this.kids.get(id) ?? [])].map((k) => this.runs.get(k)!).filter((r) => isOpen(r.record.status));
    for (let g = 0; generation.length && g <= maxDepth; g++) {
      const next: MemRun[] = [];
      const batch = generation.map((p) => [p, openKids(p.record.runId)] as const);
      for (const [parent, kids] of batch) {
        for (const child of kids) {
          if (!isOpen(child.record.status)) continue;
          const policy = child.record.parentClosePolicy;
          // An abandoned child is not reached by the cascade at any depth, so it is never truncated.
          if (policy !== 'abandon' && child.record.depth > maxDepth) {
            truncated.push(child.record.runId);
            continue;
          }
          if (policy !== 'abandon') {
            const status = policy === 'terminate' ? 'terminated' : 'cancelled';
            this.closeRun(child, status, { name: status === 'terminated' ? 'TerminatedError' : 'CancelledError', message: reason }, reason, now, stopped);
            closed.push(child.record.runId);
            next.push(child);
          }
          if (!isOpen(parent.record.status)) {
            this.appendNote(parent, { type: 'ParentClosePolicyApplied', payload: { childRunId: child.record.runId, callId: child.record.callId ?? '', policy } }, now);
          }
        }
      }
      generation = next;
    }
  }

  private indexChild(parentRunId: string, runId: string): void {
    let set = this.kids.get(parentRunId);
    if (!set) this.kids.set(parentRunId, (set = new Set()));
    set.add(runId);
  }

  /** Appends an event to a closed run (only the transaction that closed it does this). */
  private appendNote(m: MemRun, e: NewEvent, now: number): void {
    m.events.push({ ...e, seq: ++m.record.lastSeq, recordedAt: now } as JournalEvent);
  }

  /** Puts a signal in an open run's inbox once; returns whether it was new. */
  private deliverSignal(runId: string, sg: { signalId: string; name: string; payload: unknown; traceparent?: string }, now: number): boolean {
    const t = this.runs.get(runId);
    if (!t || !isOpen(t.record.status) || t.signalIds.has(sg.signalId)) return false;
    t.signalIds.add(sg.signalId);
    t.inbox.push({ signalId: sg.signalId, name: sg.name, payload: clone(sg.payload), sentAt: now, ...(sg.traceparent ? { traceparent: sg.traceparent } : {}) });
    t.record.nextWakeupAt = Math.min(t.record.nextWakeupAt ?? Infinity, now);
    return true;
  }

  /** Continue-as-new: the next run of the same workflow id takes over the open children and the inbox. */
  private continueRun(m: MemRun, next: NewRun, now: number): MemRun {
    const prev = m.record;
    const n = this.insertRun({
      ...next,
      ...(prev.parentRunId ? { parentRunId: prev.parentRunId } : {}),
      ...(prev.callId ? { callId: prev.callId } : {}),
      rootRunId: prev.rootRunId,
      depth: prev.depth,
      parentClosePolicy: prev.parentClosePolicy,
    });
    n.record.continuedFrom = prev.runId;
    prev.continuedTo = n.record.runId;
    for (const id of [...(this.kids.get(prev.runId) ?? [])]) {
      const r = this.runs.get(id)!;
      if (!isOpen(r.record.status)) continue;
      r.record.parentRunId = n.record.runId;
      this.kids.get(prev.runId)!.delete(id);
      this.indexChild(n.record.runId, id);
    }
    for (const x of m.inbox) {
      n.inbox.push(x);
      n.signalIds.add(x.signalId);
    }
    m.inbox = [];
    // A parent waiting on this child now waits on its successor.
    if (prev.parentRunId) {
      const p = this.runs.get(prev.parentRunId);
      if (p) {
        const swap = (ids: string[]) => ids.map((id) => (id === prev.runId ? n.record.runId : id));
        p.wait = { ...p.wait, onClose: swap(p.wait.onClose), onFailure: swap(p.wait.onFailure), onAllClosed: swap(p.wait.onAllClosed) };
        // The parent journals ChildStarted for the new run when it next runs (visibility), without being woken now.
      }
    }
    void now;
    return n;
  }

  private insertRun(run: NewRun & { retry?: RetryNote }): MemRun {
    const now = this.clock.now();
    const depth = run.depth ?? 0;
    const input = journalValue(run.input, `input of workflow '${run.workflow}'`);
    const record: RunRecord = {
      runId: run.runId,
      workflowId: run.workflowId,
      workflow: run.workflow,
      status: 'running',
      input,
      parentRunId: run.parentRunId ?? null,
      callId: run.callId ?? null,
      rootRunId: run.rootRunId ?? run.runId,
      depth,
      queue: run.queue,
      leaseOwner: null,
      leaseExpiresAt: null,
      nextWakeupAt: run.startAt ?? now,
      createdAt: now,
      closedAt: null,
      result: null,
      error: null,
      continuedFrom: null,
      continuedTo: null,
      lastSeq: 1,
      parentClosePolicy: run.parentClosePolicy ?? 'cancel',
      cancelRequest: null,
      waits: null,
      stall: null,
      retryOf: run.retry?.previousRunId ?? null,
      retriedTo: null,
    };
    const started: JournalEvent = {
      seq: 1,
      recordedAt: now,
      type: 'RunStarted',
      payload: runStartedPayload(run, clone(input), depth),
    };
    const m: MemRun = { record, events: [started], leaseToken: null, wait: NO_WAIT, inbox: [], signalIds: new Set(), cancelJournaled: false };
    this.runs.set(run.runId, m);
    this.byWorkflowId.set(run.workflowId, run.runId);
    if (run.parentRunId) this.indexChild(run.parentRunId, run.runId);
    return m;
  }

  private wakeParentOnClose(child: RunRecord): string | null {
    if (!child.parentRunId) return null;
    const p = this.runs.get(child.parentRunId);
    if (!p || !isOpen(p.record.status)) return null;
    const w = p.wait;
    const failed = child.status !== 'completed';
    let wake = w.onClose.includes(child.runId) || (failed && w.onFailure.includes(child.runId));
    if (!wake && w.onAllClosed.includes(child.runId)) {
      wake = w.onAllClosed.every((id) => {
        const s = this.runs.get(id)?.record.status;
        return s !== undefined && !isOpen(s);
      });
    }
    if (!wake) return null;
    p.record.nextWakeupAt = Math.min(p.record.nextWakeupAt ?? Infinity, this.clock.now());
    return p.record.runId;
  }

  /** When a suspended run is next due, given its wait and the children that may already have closed. */
  private dueTime(m: MemRun, now: number): number | null {
    const w = m.wait;
    if (w.busy) return now;
    const closed = (id: string) => {
      const s = this.runs.get(id)?.record.status;
      return s !== undefined && !isOpen(s);
    };
    const failed = (id: string) => {
      const s = this.runs.get(id)?.record.status;
      return s !== undefined && !isOpen(s) && s !== 'completed';
    };
    // A child may have closed before this wait was recorded: the wait must not miss it.
    if (w.onClose.some(closed) || w.onFailure.some(failed) || (w.onAllClosed.length > 0 && w.onAllClosed.every(closed))) return now;
    return w.timerAt;
  }

  private grant(m: MemRun, owner: string, leaseMs: number): Lease {
    const token = randomUUID();
    const expiresAt = this.clock.now() + leaseMs;
    const previousOwner = m.record.leaseOwner;
    m.leaseToken = token;
    m.record.leaseOwner = owner;
    m.record.leaseExpiresAt = expiresAt;
    const inboxPending = m.inbox.length > 0 || (m.record.cancelRequest !== null && !m.cancelJournaled);
    const r = m.record;
    const run = { workflowId: r.workflowId, workflow: r.workflow, parentRunId: r.parentRunId, rootRunId: r.rootRunId };
    return { runId: r.runId, owner, token, expiresAt, lastSeq: r.lastSeq, queue: r.queue, inboxPending, stall: clone(r.stall), previousOwner, run };
  }

  private clearLease(m: MemRun): void {
    m.leaseToken = null;
    m.record.leaseOwner = null;
    m.record.leaseExpiresAt = null;
  }

  private fenced(lease: Lease): MemRun {
    const m = this.runs.get(lease.runId);
    if (!m) throw new UnknownRunError(lease.runId);
    if (m.leaseToken !== lease.token) throw new LeaseLostError(lease.runId);
    if (m.record.status !== 'running') throw new LeaseLostError(lease.runId, `run is ${m.record.status}`);
    return m;
  }

  private mustGet(runId: string): MemRun {
    const m = this.runs.get(runId);
    if (!m) throw new CorruptJournalError(runId, 'run row missing');
    return m;
  }

  private notify(runIds: string[], kind: 'wake' | 'stop' | 'closed' = 'wake'): void {
    for (const l of this.listeners) l(runIds, kind);
  }
}

