import { randomUUID } from 'node:crypto';
import {
  CorruptJournalError,
  DuplicateWorkflowIdError,
  LeaseLostError,
  SkeinError,
  UnknownRunError,
  type SerializedError,
} from '../runtime/errors.js';
import type { JournalEvent, NewEvent } from '../runtime/events.js';
import { journalValue } from '../runtime/json.js';
import {
  isOpen,
  NO_WAIT,
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
} from './journal.js';

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
  private listeners = new Set<WakeListener>();

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
    for (const m of this.runs.values()) {
      if (m.record.parentRunId !== runId) continue;
      if (statuses && !statuses.has(m.record.status)) continue;
      out.push(clone(m.record));
    }
    return out.sort((a, b) => a.createdAt - b.createdAt || (a.runId < b.runId ? -1 : 1));
  }

  async childOutcomes(parentRunId: string, childRunIds: string[]): Promise<ChildOutcome[]> {
    const out: ChildOutcome[] = [];
    for (const id of childRunIds) {
      const c = this.runs.get(id)?.record;
      if (!c || c.parentRunId !== parentRunId || isOpen(c.status) || c.status === 'continued') continue;
      out.push({
        childRunId: c.runId,
        callId: c.callId ?? '',
        status: c.status as ChildOutcome['status'],
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
    const due: MemRun[] = [];
    for (const m of this.runs.values()) {
      const r = m.record;
      if (r.status !== 'running' || !queues.has(r.queue)) continue;
      if (r.nextWakeupAt === null || r.nextWakeupAt > now) continue;
      if (m.leaseToken && (r.leaseExpiresAt ?? 0) > now) continue;
      due.push(m);
    }
    due.sort((a, b) => (a.record.nextWakeupAt ?? 0) - (b.record.nextWakeupAt ?? 0) || a.record.depth - b.record.depth);
    return due.slice(0, o.limit).map((m) => this.grant(m, o.owner, o.leaseMs));
  }

  async acquire(runId: string, owner: string, leaseMs: number): Promise<Lease | undefined> {
    const m = this.runs.get(runId);
    if (!m || m.record.status !== 'running') return undefined;
    if (m.leaseToken && (m.record.leaseExpiresAt ?? 0) > this.clock.now()) return undefined;
    return this.grant(m, owner, leaseMs);
  }

  async renew(lease: Lease, leaseMs: number): Promise<Lease> {
    const m = this.fenced(lease);
    const expiresAt = this.clock.now() + leaseMs;
    m.record.leaseExpiresAt = expiresAt;
    return { ...lease, expiresAt };
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
      children.push({ ...ch, input: journalValue(ch.input, `input of workflow '${ch.workflow}'`) });
    }
    const close = c.close && {
      status: c.close.status,
      result: journalValue(c.close.result ?? null, 'run result'),
      error: c.close.error ? journalValue<SerializedError>(c.close.error, 'run error') : null,
    };
    const block = c.block && journalValue<SerializedError>(c.block, 'block error');

    let seq = m.record.lastSeq;
    for (const e of events) m.events.push({ ...e, seq: ++seq, recordedAt: now } as JournalEvent);
    m.record.lastSeq = seq;

    const childLeases: Lease[] = [];
    const leaseMs = Math.max(0, lease.expiresAt - now);
    for (const ch of children) {
      const cm = this.insertRun({
        ...ch,
        parentRunId: m.record.runId,
        rootRunId: m.record.rootRunId,
        depth: ch.depth ?? m.record.depth + 1,
      });
      if (c.leaseChildren) childLeases.push(this.grant(cm, lease.owner, leaseMs));
    }

    let wokeParent: string | null = null;
    if (block) {
      m.record.status = 'blocked';
      m.record.error = block;
      m.record.nextWakeupAt = null;
      m.wait = NO_WAIT;
    } else if (close) {
      m.record.status = close.status;
      m.record.result = close.result;
      m.record.error = close.error;
      m.record.closedAt = now;
      m.record.nextWakeupAt = null;
      m.wait = NO_WAIT;
      wokeParent = this.wakeParentOnClose(m.record);
    } else {
      m.wait = clone(c.wait);
      m.record.nextWakeupAt = this.dueTime(m, now);
    }
    if (c.release || close || block) this.clearLease(m);

    const woken = children.filter(() => !c.leaseChildren).map((ch) => ch.runId);
    if (wokeParent) woken.push(wokeParent);
    if (woken.length) this.notify(woken);
    return { lastSeq: seq, childLeases, wokeParent };
  }

  onWake(listener: WakeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- test and tooling helpers (not part of the contract) ----

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

  private insertRun(run: NewRun): MemRun {
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
      nextWakeupAt: now,
      createdAt: now,
      closedAt: null,
      result: null,
      error: null,
      continuedFrom: null,
      continuedTo: null,
      lastSeq: 1,
    };
    const started: JournalEvent = {
      seq: 1,
      recordedAt: now,
      type: 'RunStarted',
      payload: {
        workflow: run.workflow,
        workflowId: run.workflowId,
        input: clone(input),
        depth,
        ...(run.parentRunId ? { parentRunId: run.parentRunId } : {}),
        ...(run.callId ? { callId: run.callId } : {}),
      },
    };
    const m: MemRun = { record, events: [started], leaseToken: null, wait: NO_WAIT };
    this.runs.set(run.runId, m);
    this.byWorkflowId.set(run.workflowId, run.runId);
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
    m.leaseToken = token;
    m.record.leaseOwner = owner;
    m.record.leaseExpiresAt = expiresAt;
    return { runId: m.record.runId, owner, token, expiresAt };
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

  private notify(runIds: string[]): void {
    for (const l of this.listeners) l(runIds);
  }
}
