import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { ParentClosePolicy } from '../../runtime/commands.js';
import { DuplicateWorkflowIdError, InvalidArgumentError, LeaseLostError, RunClosedError, RunStateError, SkeinError, UnknownRunError, type SerializedError } from '../../runtime/errors.js';
import { runStartedPayload, type JournalEvent, type RetryNote } from '../../runtime/events.js';
import { redactUrl } from '../connection.js';
import { breadthFirst, checkRetryable, countsOf, decodeRunCursor, decodeTreeCursor, encodeCursor, levels, pageLimit, statusList, workerOrder, workerStatus } from '../visibility.js';
import { toJson, toJsonText } from '../../runtime/json.js';
import {
  isOpen,
  parentClosed,
  PARENT_STOPPED_WAITING,
  type CancelOptions,
  type CancelResult,
  type ChildOutcome,
  type ClaimOptions,
  type Clock,
  type ClosedStatus,
  type Commit,
  type CommitResult,
  type Inbox,
  type Journal,
  type Lease,
  type NewRun,
  type RunRecord,
  type RunStall,
  type RunStatus,
  type SignalInput,
  type WakeListener,
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
} from '../journal.js';
import { migrate } from './migrations.js';
import { Sql, type ClosingRun, type FilterParams, type LockedRun, type Queryable, type RunInsert, type SignalInsert } from './sql.js';

const systemClock: Clock = { now: () => Date.now() };

export interface PgJournalOptions {
  /** A pool to use; the journal does not end it on close(). Give this or `connectionString`. */
  pool?: pg.Pool;
  connectionString?: string;
  /** The schema that holds every table (default 'skein'). Lower-case identifier. */
  schema?: string;
  /** Where times come from (default: the system clock). Tests pass a ManualClock, as for the memory journal. */
  clock?: Clock;
  /** Pool size when the journal makes its own pool (default 10). */
  maxConnections?: number;
  /**
   * When the journal makes its own pool: the server ends a session of ours that sits idle inside a transaction for
   * this long (PostgreSQL's idle_in_transaction_session_timeout). Default 5000 ms; 0 turns it off. See the constructor.
   */
  idleInTransactionTimeoutMs?: number;
}

/** A commit's payloads, validated and turned into JSON text before any connection is taken. */
interface PreparedCommit {
  events: Array<{ type: string; json: string }>;
  children: Array<
    Omit<RunInsert, 'depth' | 'startedJson'> & {
      depth: number | undefined;
      input: unknown;
      deadline: number | undefined;
      trace: NewRun['trace'];
      completed: { events: Array<{ type: string; json: string }>; status: ClosedStatus; resultJson: string; errorJson: string | null } | undefined;
    }
  >;
  close?: {
    status: NonNullable<Commit['close']>['status'];
    resultJson: string;
    errorJson: string | null;
    next?: { run: NewRun; input: unknown; inputJson: string };
  };
  blockJson?: string;
  /** Signal ids journaled as SignalReceived in this commit: they leave the inbox. */
  received: string[];
  /** The commit journals CancelRequested: the request is taken. */
  cancelJournaled: boolean;
  signals: SignalInsert[];
  closeChildren: Array<{ runId: string; policy: ParentClosePolicy }>;
  maxChildDepth: number;
}

/** The error of a child closed because its parent stopped waiting for it (the child's timeout option). */
const CHILD_TIMEOUT_ERROR: SerializedError = { name: 'ChildTimeoutError', message: 'the parent stopped waiting (timeout)' };

/**
 * The journal in PostgreSQL, with the same contract as MemoryJournal (both pass test/journal-contract.ts).
 *
 * Every commit is one transaction: the run row is locked FOR UPDATE and the lease token and seq checked against it
 * (the fence), then events, children and the run's new state are written with a constant number of statements. A
 * close also wakes the parent per its stored wait and notifies `<schema>_wake` (so `skein_wake` by default) inside the
 * transaction, so the notification goes out only if the close commits. Notifications are an optimization: a lost one
 * costs latency, the poll (claimDue) still finds the run.
 *
 * Lifecycle (cancel, terminate, parent-close policies) closes runs from outside: a cascade takes one statement per
 * generation of descendants, parent before child, and the runs it closed are announced on `<schema>_stop` (onWake
 * listeners get them with kind 'stop'). Signals wait in the `inbox` table until the run journals them.
 */
export class PgJournal implements Journal {
  readonly clock: Clock;
  private readonly closes = new GroupCommit<PendingClose, CommitResult>((batch) => this.commitCloses(batch));
  /** Client starts arriving together go in one statement (insertStarts): each caller still gets its own answer. */
  private readonly starts = new GroupCommit<RootRunInsert, RunRecord | null>((batch) => this.insertStarts(batch));
  /** Client signals arriving together go in one statement (signalMany), each answered on its own. */
  private readonly signals = new GroupCommit<ClientSignal, { status: RunStatus; added: boolean } | null>((batch) => this.sendSignals(batch));
  readonly pool: pg.Pool;
  /** renewMany's own connection (see the constructor); the shared pool when the journal was given one. */
  private leasePool: pg.Pool | null = null;
  readonly schema: string;
  private readonly sql: Sql;
  private readonly ownsPool: boolean;
  private closed = false;
  /** Runs to announce at the end of this event-loop turn (see announce). */
  private toAnnounce: Announcements = { wake: [], stop: [], closed: [] };

  // LISTEN state: one dedicated connection, started on the first onWake, reconnected with backoff.
  private readonly listeners = new Set<WakeListener>();
  private listenClient: pg.Client | null = null;
  private listenStarted = false;
  /** Settles when the first LISTEN attempt has finished (either way); writes wait for it, see beforeWrite(). */
  private listenReady: Promise<void> | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectAttempt = 0;

  constructor(options: PgJournalOptions) {
    this.schema = options.schema ?? 'skein';
    this.sql = new Sql(this.schema);
    this.clock = options.clock ?? systemClock;
    if (options.pool) {
      this.pool = options.pool;
      this.ownsPool = false;
    } else {
      if (!options.connectionString) throw new Error('PgJournal needs a pool or a connectionString');
      // Every transaction of the journal is a handful of statements sent back to back; a session idle inside one means
      // its process is frozen (SIGSTOP, a paused VM, a debugger) or cut off, and it would hold its row locks (a run, a
      // closing child's parent) for as long as it stays so: claimDue skips locked rows, so nobody could take the run
      // over, and the parent's own commits would wait. The server ends such a session after this timeout, which
      // releases the locks and rolls the transaction back; the frozen writer, should it wake up, finds its connection
      // gone (and its lease taken over: the fence refuses it anyway).
      const idleMs = options.idleInTransactionTimeoutMs ?? 5000;
      this.pool = new pg.Pool({
        connectionString: options.connectionString,
        max: options.maxConnections ?? 10,
        ...(idleMs > 0 ? { idle_in_transaction_session_timeout: idleMs } : {}),
      });
      this.ownsPool = true;
      // An idle client that loses its connection emits 'error' on the pool; without a handler that would crash the
      // process. The next query simply gets a fresh connection.
      this.pool.on('error', () => {});
      // The lease heartbeat has a connection of its own: behind a burst of activations queued for the pool it would
      // wait for seconds, and the leases it is there to keep would expire while their runs wait their turn.
      this.leasePool = new pg.Pool({ connectionString: options.connectionString, max: 1 });
      this.leasePool.on('error', () => {});
      this.leasePool.on('connect', (client) => client.on('error', () => {}));
    }
    // A connection the server terminates (a restart, pg_terminate_backend) can emit more than one 'error'; pg-pool
    // listens only once per query, and not at all between the statements of a checked-out client. The failure
    // reaches whoever was using the connection through its query; a permanent listener keeps any further emission
    // from becoming an uncaught exception that would bring the whole worker down.
    this.pool.on('connect', (client) => client.on('error', () => {}));
  }

  async migrate(): Promise<void> {
    await migrate(this.pool, this.schema);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.listenClient;
    this.listenClient = null;
    if (client) await client.end().catch(() => {});
    await this.leasePool?.end().catch(() => {});
    if (this.ownsPool) await this.pool.end();
  }

  // ---- reads ----

  async getRun(runId: string): Promise<RunRecord | undefined> {
    return this.sql.runById(this.pool, runId);
  }

  async getRunByWorkflowId(workflowId: string): Promise<RunRecord | undefined> {
    return this.sql.runByWorkflowId(this.pool, workflowId);
  }

  async readEvents(runId: string, afterSeq = 0): Promise<JournalEvent[]> {
    const events = await this.sql.readEvents(this.pool, runId, afterSeq);
    if (!events.length && !(await this.sql.runExists(this.pool, runId))) throw new UnknownRunError(runId);
    return events;
  }

  async listChildren(runId: string, filter?: { status?: RunStatus | RunStatus[] }): Promise<RunRecord[]> {
    const statuses = filter?.status === undefined ? null : ([] as RunStatus[]).concat(filter.status);
    return this.sql.listChildren(this.pool, runId, statuses);
  }

  async childOutcomes(parentRunId: string, childRunIds: string[]): Promise<ChildOutcome[]> {
    if (!childRunIds.length) return [];
    const found = await this.sql.childOutcomes(this.pool, parentRunId, childRunIds);
    // in the order asked, as the memory journal answers
    const byId = new Map(found.map((o) => [o.childRunId, o]));
    return childRunIds.flatMap((id) => byId.get(id) ?? []);
  }

  // ---- writes ----

  async startRun(run: NewRun): Promise<{ run: RunRecord; created: boolean }> {
    const input = toJson(run.input, `input of workflow '${run.workflow}'`);
    const depth = run.depth ?? 0;
    await this.beforeWrite();
    const inserted = await this.starts.add({
      runId: run.runId,
      workflowId: run.workflowId,
      workflow: run.workflow,
      inputJson: input.json,
      callId: run.callId ?? null,
      queue: run.queue,
      depth,
      parentClosePolicy: run.parentClosePolicy ?? 'cancel',
      startAt: run.startAt ?? null,
      startedJson: startedPayload(run, input.value, depth),
      parentRunId: run.parentRunId ?? null,
      rootRunId: run.rootRunId ?? run.runId,
    });
    if (inserted) {
      this.announce({ wake: [inserted.runId] });
      return { run: inserted, created: true };
    }
    const existing = await this.sql.runByWorkflowId(this.pool, run.workflowId);
    if (existing) {
      if (existing.workflow !== run.workflow) throw new DuplicateWorkflowIdError(run.workflowId, existing.runId, existing.workflow);
      return { run: existing, created: false };
    }
    // The conflict was on the run id: ids are derived or random, so this is a caller bug, refused like the memory journal.
    const taken = await this.sql.runById(this.pool, run.runId);
    throw new SkeinError(`run id ${run.runId} is already used by workflow id '${taken?.workflowId ?? '?'}'`);
  }

  async claimDue(o: ClaimOptions): Promise<Lease[]> {
    if (o.limit <= 0 || !o.queues.length || o.workflows?.length === 0) return [];
    return this.sql.claimDue(this.pool, { ...o, leaseMs: Math.ceil(o.leaseMs), now: this.now() });
  }

  async acquire(runId: string, owner: string, leaseMs: number, queues?: string[], workflows?: string[]): Promise<Lease | undefined> {
    return this.sql.acquire(this.pool, runId, owner, Math.ceil(leaseMs), this.now(), queues, workflows);
  }

  async acquireMany(runIds: string[], owner: string, leaseMs: number, queues?: string[], workflows?: string[], withHistory?: readonly string[]): Promise<Lease[]> {
    if (!runIds.length) return [];
    const ids = [...new Set(runIds)];
    const { leases, locked } = await this.sql.leaseRuns(this.pool, ids, 'skip', owner, Math.ceil(leaseMs), this.now(), queues, workflows, withHistory);
    if (!locked.length) return leases;
    // Runs a commit was holding were skipped: take those one at a time, waiting for each row (no deadlock with one).
    const rest = await Promise.all(locked.map((id) => this.sql.acquire(this.pool, id, owner, Math.ceil(leaseMs), this.now(), queues, workflows)));
    return [...leases, ...rest.filter((l): l is Lease => !!l)];
  }

  async renew(lease: Lease, leaseMs: number): Promise<Lease> {
    const expiresAt = await this.sql.renew(this.pool, lease, Math.ceil(leaseMs), this.now());
    if (expiresAt !== undefined) return { ...lease, expiresAt };
    if (!(await this.sql.runExists(this.pool, lease.runId))) throw new UnknownRunError(lease.runId);
    throw new LeaseLostError(lease.runId);
  }

  async renewMany(leases: Lease[], leaseMs: number): Promise<{ expiresAt: number; lost: string[] }> {
    const now = this.now();
    if (!leases.length) return { expiresAt: now + Math.ceil(leaseMs), lost: [] };
    // (a run skipped because its row was locked is neither renewed nor lost: the next beat renews it)
    const { lost } = await this.sql.renewMany(this.leasePool ?? this.pool, leases, Math.ceil(leaseMs), now);
    return { expiresAt: now + Math.ceil(leaseMs), lost };
  }

  async release(lease: Lease): Promise<void> {
    await this.sql.release(this.pool, lease);
  }

  async commit(lease: Lease, c: Commit): Promise<CommitResult> {
    const p = prepareCommit(c);
    // Plain closes (a run finishing, no children to create, signals to send or policies to apply in the same step) are group-committed:
    // many runs closing at once (a fan-out's children) share one transaction and one WAL flush.
    if (isPlainClose(c, p)) return this.closes.add({ lease, commit: c, prepared: p });
    return this.commitOne(lease, c, p);
  }

  /**
   * Commits a batch of plain closes in one transaction with a constant number of statements: lock the parents, lock
   * and fence the runs (a run whose lease is gone is refused alone, the others go on), append all events, close all
   * runs, apply parent-close policies where a closing run still has open children, wake parents (set-based, with the
   * wait_on_all_closed counters); announce after the commit.
   */
  private async commitCloses(batch: PendingClose[]): Promise<(CommitResult | Error)[]> {
    if (batch.length === 1) {
      const b = batch[0]!;
      return [await this.closeAlone(b).catch((e: Error) => e)];
    }
    // Independent workflows finishing together (roots that never started a child): one statement for all of them.
    const roots = batch.every((b) => b.lease.run?.parentRunId === null && b.commit.childless);
    if (roots && new Set(batch.map((b) => b.lease.runId)).size === batch.length) return this.closeRootsTogether(batch);
    return this.closeInTransaction(batch);
  }

  /**
   * closeRootsTogether's batch in one statement; a run that is not a plain root after all (it inherited open children
   * from a run it continued) goes through closeInTransaction, a run that fails its fence gets its own error.
   */
  private async closeRootsTogether(batch: PendingClose[]): Promise<(CommitResult | Error)[]> {
    await this.beforeWrite();
    let rows;
    try {
      rows = await this.sql.closeRootsTogether(
        this.pool,
        batch.map((b) => ({ ...closingRun(b), token: b.lease.token })),
        this.now(),
      );
    } catch (err) {
      return batch.map(() => err as Error);
    }
    const results: (CommitResult | Error)[] = [];
    const again: number[] = [];
    const closed: string[] = [];
    batch.forEach((b, i) => {
      const row = rows.get(b.lease.runId);
      try {
        if (row?.written) {
          closed.push(b.lease.runId);
          results.push({ lastSeq: b.commit.afterSeq + b.prepared.events.length, childLeases: [], wokeParent: null });
          return;
        }
        fence(row, b.lease, b.commit.afterSeq); // throws unless the run was left for the transactional path
        if (row && !row.plain) {
          again.push(i);
          results.push(new Error('pending'));
          return;
        }
        throw new LeaseLostError(b.lease.runId);
      } catch (err) {
        results.push(err as Error);
      }
    });
    this.announce({ closed });
    if (again.length) {
      const redone = await this.closeInTransaction(again.map((i) => batch[i]!));
      again.forEach((i, k) => (results[i] = redone[k]!));
    }
    return results;
  }

  /** A batch of plain closes in one transaction (see commit). */
  private async closeInTransaction(batch: PendingClose[]): Promise<(CommitResult | Error)[]> {
    await this.beforeWrite();
    const ids = batch.map((b) => b.lease.runId);
    // Runs whose leases say they are roots have no parent to lock (a root never gains one): a round trip saved.
    const roots = batch.every((b) => b.lease.run?.parentRunId === null);
    return this.transaction(async (q, after) => {
      const now = this.now();
      if (!roots) await this.sql.lockParentsOf(q, ids);
      const locked = await this.sql.lockRuns(q, ids);
      const results: (CommitResult | Error)[] = [];
      const ok: { b: PendingClose; parentRunId: string | null }[] = [];
      const seen = new Set<string>();
      for (const b of batch) {
        const row = locked.get(b.lease.runId);
        try {
          if (seen.has(b.lease.runId)) throw new LeaseLostError(b.lease.runId, 'two commits of one run in one batch');
          seen.add(b.lease.runId);
          fence(row, b.lease, b.commit.afterSeq);
          ok.push({ b, parentRunId: row!.parentRunId });
          results.push({ lastSeq: row!.lastSeq + b.prepared.events.length, childLeases: [], wokeParent: null });
        } catch (err) {
          results.push(err as Error);
        }
      }
      const withChildren = await this.sql.closeRuns(
        q,
        ok.map(({ b }) => ({ ...closingRun(b), childless: !!b.commit.childless })),
        now,
      );
      const stop: string[] = [];
      for (const runId of withChildren) {
        const b = ok.find((x) => x.b.lease.runId === runId)!.b;
        await this.cascade(q, [runId], b.prepared.maxChildDepth, parentClosed(b.prepared.close!.status), now, { stop });
      }
      const woke = new Set(
        await this.sql.wakeParents(
          q,
          ok.filter((x) => x.parentRunId).map(({ b, parentRunId }) => ({ parentRunId: parentRunId!, childRunId: b.lease.runId, failed: b.prepared.close!.status !== 'completed' })),
          now,
        ),
      );
      after.wake.push(...woke);
      after.stop.push(...stop);
      after.closed.push(...ok.filter((x) => !x.parentRunId).map((x) => x.b.lease.runId));
      ok.forEach(({ b, parentRunId }) => {
        const i = batch.indexOf(b);
        const r = results[i] as CommitResult;
        if (parentRunId && woke.has(parentRunId)) r.wokeParent = parentRunId;
      });
      return results;
    }).catch((err: Error) => batch.map(() => err));
  }

  /** A plain close on its own: one statement, one round trip (see Sql.closeAlone). */
  private async closeAlone(b: PendingClose): Promise<CommitResult> {
    await this.beforeWrite();
    const { lease, commit: c, prepared: p } = b;
    const r = await this.sql.closeAlone(this.pool, { ...closingRun(b), token: lease.token, now: this.now(), childless: !!c.childless });
    if (r.written) {
      this.announce({ wake: r.woke ? [r.woke] : [], closed: r.me?.root ? [lease.runId] : [] });
      return { lastSeq: c.afterSeq + p.events.length, childLeases: [], wokeParent: r.woke };
    }
    // Open children to close by policy: the general path does that in its transaction. Anything else is the fence.
    if (r.me && r.me.has_kids && r.me.lease_token === lease.token && r.me.status === 'running' && r.me.last_seq === c.afterSeq) {
      return this.commitOne(lease, c, p);
    }
    fence(r.me ? { status: r.me.status, leaseToken: r.me.lease_token, lastSeq: r.me.last_seq } : undefined, lease, c.afterSeq);
    throw new LeaseLostError(lease.runId);
  }

  private async commitOne(lease: Lease, c: Commit, p: PreparedCommit): Promise<CommitResult> {
    await this.beforeWrite();
    return this.transaction(async (q, after) => {
      const now = this.now();
      // Lock order parent before child: a close is the one write here that touches the run's parent.
      const lockedParent = p.close ? await this.sql.lockParentOf(q, lease.runId) : null;
      const run = fence(await this.sql.lockRun(q, lease.runId), lease, c.afterSeq);
      // The parent continued as new (moving this run to its successor) between the two statements: lock the new one
      // too. Out of order, but only in that race; the run's parent cannot change again while the run is locked.
      if (p.close && run.parentRunId && run.parentRunId !== lockedParent) await this.sql.lockRow(q, run.parentRunId);
      const wake: string[] = [];
      const stop: string[] = [];

      let seq = run.lastSeq;
      const eventsWritten = p.events.length ? this.sql.insertEvents(q, run.runId, seq, p.events, now, p.received) : undefined;
      seq += p.events.length;
      const createChildren = () =>
        p.children.length
          ? this.createChildren(q, run, p, c.leaseChildren ? { owner: lease.owner, expiresAt: Math.max(now, lease.expiresAt), only: (id) => leasesChild(c, id) } : null, now)
          : { childLeases: [], announce: [] };
      // The new children's rows are built (createChildren's synchronous part) while the database writes the events: a
      // large fan-out's rows take as long to build as its ChildScheduled events take to write (100,000: ~1.5 s each).
      // Their statement queues on this connection behind the events'. (Children the run stopped waiting for are closed
      // before any child is created, as the statements were always ordered.)
      const created = p.closeChildren.length ? undefined : createChildren();
      const [, early] = await Promise.all([eventsWritten, created]);

      // Children the run stopped waiting for (timeouts): closed per the policy given, then their descendants per theirs.
      if (p.closeChildren.length) {
        const closed = await this.sql.closeChildren(q, run.runId, p.closeChildren, JSON.stringify(CHILD_TIMEOUT_ERROR), PARENT_STOPPED_WAITING, now);
        stop.push(...closed);
        if (closed.length) await this.cascade(q, closed, p.maxChildDepth, PARENT_STOPPED_WAITING, now, { stop });
      }

      const { childLeases, announce } = early ?? (await createChildren());

      // After the children exist: a parent may signal a child it started in this same activation.
      if (p.signals.length) wake.push(...(await this.sql.deliverSignals(q, p.signals, now)));

      let wokeParent: string | null = null;
      if (p.blockJson) {
        await this.sql.blockRun(q, { runId: run.runId, lastSeq: seq, errorJson: p.blockJson, cancelJournaled: p.cancelJournaled });
      } else if (p.close) {
        const next = p.close.next;
        const { hasOpenChildren } = await this.sql.closeRun(q, {
          runId: run.runId,
          lastSeq: seq,
          status: p.close.status,
          resultJson: p.close.resultJson,
          errorJson: p.close.errorJson,
          now,
          continuedTo: next?.run.runId ?? null,
          childless: !!c.childless,
        });
        if (!run.parentRunId) after.closed.push(run.runId); // (Client.result: a root that continued is followed)
        if (next) {
          // Continue-as-new: the instance goes on in the next run, which takes over the open children and the inbox.
          const nextStarted = startedPayload({ ...next.run, parentRunId: run.parentRunId, callId: run.callId }, next.input, run.depth);
          await this.sql.continueRun(
            q,
            run,
            {
              runId: next.run.runId,
              workflowId: next.run.workflowId,
              workflow: next.run.workflow,
              inputJson: next.inputJson,
              queue: next.run.queue,
              startedJson: nextStarted,
              startAt: next.run.startAt ?? null,
            },
            now,
          );
          wake.push(next.run.runId);
        } else {
          // The run closed: its open children follow their parent-close policies, in this same transaction.
          if (hasOpenChildren) await this.cascade(q, [run.runId], p.maxChildDepth, parentClosed(p.close.status), now, { stop });
          if (run.parentRunId) {
            const failed = p.close.status !== 'completed';
            if (await this.sql.wakeParent(q, { parentRunId: run.parentRunId, childRunId: run.runId, failed, now })) {
              wokeParent = run.parentRunId;
              wake.push(wokeParent);
            }
          }
        }
      } else {
        const wait = { ...c.wait, timerAt: c.wait.timerAt === null ? null : Math.ceil(c.wait.timerAt) };
        const pending = await this.sql.suspendRun(q, {
          runId: run.runId,
          lastSeq: seq,
          wait,
          release: !!c.release,
          now,
          cancelJournaled: p.cancelJournaled,
          waitsJson: c.waits ? JSON.stringify(c.waits) : null,
        });
        // A signal or cancel request that arrived while the run was busy: due now, and announced.
        if (pending) wake.push(run.runId);
        const stall = stallWrite(c, run.stallPath ?? null);
        if (stall !== undefined) await this.sql.setStall(q, run.runId, stall && JSON.stringify(stall));
      }
      wake.push(...announce);
      after.wake.push(...wake);
      after.stop.push(...stop);
      return { lastSeq: seq, childLeases, wokeParent };
    });
  }

  async signal(runId: string, signal: SignalInput): Promise<{ signalId: string }> {
    if (typeof signal.name !== 'string' || !signal.name) throw new TypeError('signal name must be a non-empty string');
    const payload = toJson(signal.payload ?? null, `payload of signal '${signal.name}'`);
    const signalId = signal.signalId ?? randomUUID();
    await this.beforeWrite();
    const r = await this.signals.add({ runId, signalId, name: signal.name, payloadJson: payload.json, traceparent: typeof signal.traceparent === 'string' ? signal.traceparent : null });
    if (!r) throw new UnknownRunError(runId);
    if (r.added) this.announce({ wake: [runId] });
    if (!isOpen(r.status)) throw new RunClosedError(runId, r.status);
    return { signalId };
  }

  async inbox(runId: string): Promise<Inbox> {
    const inbox = await this.sql.inbox(this.pool, runId);
    if (!inbox) throw new UnknownRunError(runId);
    return inbox;
  }

  async cancel(runId: string, o: CancelOptions): Promise<CancelResult> {
    const reason = String(o.reason);
    await this.beforeWrite();
    return this.transaction(async (q, after) => {
      const now = this.now();
      const run = await this.sql.lockForCancel(q, runId);
      if (!run) throw new UnknownRunError(runId);
      if (!isOpen(run.status)) throw new RunClosedError(runId, run.status, o.mode);
      // as in commit: a parent that moved (continue-as-new) between the read and the lock is locked now
      if (run.parentRunId && !run.parentLocked) await this.sql.lockRow(q, run.parentRunId);
      const wake: string[] = [];
      const stop: string[] = [];
      const closed: string[] = [];
      const truncated: string[] = [];
      let status: CancelResult['status'];
      const graceful = o.mode === 'cancel' && o.graceMs > 0 && run.status === 'running';
      if (graceful) {
        // The run's code gets CancelledError at its current yield and may clean up until the deadline. Its lease is
        // voided (as in the memory journal): an activation computed before the request cannot commit, so nothing it
        // started escapes the cascade; whoever takes the run next journals the request first.
        await this.sql.requestCancel(q, runId, { reason, deadline: now + Math.ceil(o.graceMs), now });
        wake.push(runId);
        status = 'cancelling';
      } else {
        status = o.mode === 'terminate' ? 'terminated' : 'cancelled';
        const error: SerializedError = { name: status === 'terminated' ? 'TerminatedError' : 'CancelledError', message: reason };
        await this.sql.closeFromOutside(q, runId, { status, errorJson: JSON.stringify(error), reason, now });
        stop.push(runId);
        if (!run.parentRunId) after.closed.push(runId);
        // awaiters of the cancelled run are woken at once
        else if (await this.sql.wakeParent(q, { parentRunId: run.parentRunId, childRunId: runId, failed: true, now })) wake.push(run.parentRunId);
      }
      // Descendants: one generation at a time, parent before child, bounded by maxChildDepth.
      await this.cascade(q, [runId], o.maxChildDepth, o.mode === 'terminate' ? 'parent_terminated' : 'parent_cancelled', now, { stop, closed, truncated });
      after.wake.push(...wake);
      after.stop.push(...stop);
      return { runId, status, closed, truncated };
    });
  }

  async resume(runId: string, o: { reason: string }): Promise<RunRecord> {
    await this.beforeWrite();
    const now = this.now();
    const r = await this.sql.resume(this.pool, runId, String(o.reason), now);
    if (!r) throw new UnknownRunError(runId);
    if (!r.resumed) throw new RunStateError(runId, r.status, 'resume', 'only a blocked run can be resumed');
    this.announce({ wake: [runId] });
    return (await this.getRun(runId))!;
  }

  // ---- operating: listings, descendants, retries, workers (docs/operating.md) ----

  async listRuns(query: ListRunsQuery = {}): Promise<RunPage> {
    const limit = pageLimit(query.limit);
    const statuses = statusList(query.status);
    const after = decodeRunCursor(query.cursor);
    const rows = await this.sql.listRuns(this.pool, filterParams(query), { statuses, after, limit: limit + 1 });
    const runs = rows.slice(0, limit);
    const last = runs[runs.length - 1];
    return { runs, nextCursor: rows.length > limit && last ? encodeCursor([last.createdAt, last.runId]) : null };
  }

  async countRuns(filter: RunFilter = {}): Promise<RunCounts> {
    return countsOf(await this.sql.countRuns(this.pool, filterParams(filter), statusList(filter.status)));
  }

  async listDescendants(runId: string, query: DescendantsQuery = {}): Promise<RunPage> {
    const limit = pageLimit(query.limit);
    const after = decodeTreeCursor(query.cursor);
    const run = await this.sql.runById(this.pool, runId);
    if (!run) throw new UnknownRunError(runId);
    const toDepth = Math.min(run.depth + levels(query.maxDepth), 2_147_483_647);
    let rows: RunRecord[];
    if (run.parentRunId === null && run.continuedFrom === null && run.continuedTo === null && run.rootRunId === run.runId) {
      // a root that never continued as new: its whole tree (root_run_id) is its descendants, a page is one range scan
      rows = await this.sql.treePage(this.pool, { rootRunId: runId, fromDepth: run.depth, toDepth, after, limit: limit + 1 });
    } else {
      // any other run: walk the parent links a level at a time, reading keys only (index-only), then the page's rows
      const keys: Array<{ runId: string; depth: number; createdAt: number }> = [];
      let level = [runId];
      for (let depth = run.depth + 1; level.length && depth <= toDepth; depth++) {
        const kids = await this.sql.childKeys(this.pool, level);
        for (const k of kids) keys.push({ runId: k.runId, depth, createdAt: k.createdAt });
        level = kids.map((k) => k.runId);
      }
      const page = keys
        .filter((k) => !after || breadthFirst(k, after) > 0)
        .sort(breadthFirst)
        .slice(0, limit + 1);
      const byId = new Map((await this.sql.runsByIdList(this.pool, page.map((k) => k.runId))).map((r) => [r.runId, r]));
      rows = page.flatMap((k) => byId.get(k.runId) ?? []);
    }
    const runs = rows.slice(0, limit);
    const last = runs[runs.length - 1];
    return { runs, nextCursor: rows.length > limit && last ? encodeCursor([last.depth, last.createdAt, last.runId]) : null };
  }

  async retry(runId: string, o: { reason: string; by?: string; trace?: NewRun['trace'] }): Promise<{ run: RunRecord; created: boolean }> {
    await this.beforeWrite();
    return this.transaction(async (q) => {
      const locked = await this.sql.lockForRetry(q, runId);
      if (!locked) throw new UnknownRunError(runId);
      const prev = locked.run;
      if (prev.retriedTo) return { run: (await this.sql.runById(q, prev.retriedTo))!, created: false };
      checkRetryable(prev);
      const now = this.now();
      const retry: RetryNote = { previousRunId: prev.runId, reason: String(o.reason), ...(o.by !== undefined ? { by: String(o.by) } : {}) };
      const run = await this.sql.insertRetry(q, {
        prevRunId: prev.runId,
        runId: retryRunId(prev.runId),
        now,
        // the same execution timeout, counted from the retry's start
        deadline: locked.deadline === null ? null : now + Math.max(0, locked.deadline - prev.createdAt),
        retryJson: JSON.stringify(retry),
        traceJson: o.trace ? JSON.stringify(o.trace) : null,
      });
      return { run, created: true };
    });
  }

  async workerHeartbeat(worker: WorkerHeartbeat): Promise<void> {
    await this.sql.workerHeartbeat(this.pool, worker, this.now(), WORKER_RETENTION_MS);
  }

  async workerStopped(workerId: string): Promise<void> {
    await this.sql.workerStopped(this.pool, workerId, this.now());
  }

  async listWorkers(): Promise<WorkerInfo[]> {
    const now = this.now();
    const rows = await this.sql.listWorkers(this.pool, now - WORKER_RETENTION_MS);
    return rows.map((w) => ({ ...w, status: workerStatus(w, now) })).sort(workerOrder);
  }

  async ping(): Promise<void> {
    await this.sql.ping(this.pool);
  }

  target(): JournalTarget {
    const o = this.pool.options as { connectionString?: string; host?: string; port?: number; database?: string; user?: string };
    const url = o.connectionString ? redactUrl(o.connectionString) : `postgres://${o.user ? `${o.user}@` : ''}${o.host ?? 'localhost'}:${o.port ?? 5432}/${o.database ?? ''}`;
    return { kind: 'postgres', url, schema: this.schema };
  }

  onWake(listener: WakeListener): () => void {
    this.listeners.add(listener);
    this.startListening();
    return () => {
      this.listeners.delete(listener);
    };
  }

  // ---- internals ----

  /** A batch of client signals (see signal), written by batchOrEach. */
  private async sendSignals(batch: ClientSignal[]): Promise<({ status: RunStatus; added: boolean } | null | Error)[]> {
    return batchOrEach(
      batch,
      async (many) => (await this.sql.signalMany(this.pool, many, this.now())).map((r) => r ?? null),
      async (sg) => (await this.sql.signal(this.pool, sg.runId, sg, this.now())) ?? null,
    );
  }

  /**
   * Inserts a batch of starts (see startRun), written by batchOrEach; null for a start that was not inserted (its
   * workflow id or run id is taken: startRun finds out which). A run id listed twice goes in once; the later start
   * finds the earlier one's run.
   */
  private async insertStarts(batch: RootRunInsert[]): Promise<(RunRecord | null | Error)[]> {
    const first = new Map<string, number>();
    batch.forEach((b, i) => first.has(b.runId) || first.set(b.runId, i));
    const unique = [...first.values()].map((i) => batch[i]!);
    const written = await batchOrEach(
      unique,
      async (many) => {
        const byId = new Map((await this.sql.insertRootRuns(this.pool, many, this.now())).map((r) => [r.runId, r]));
        return many.map((u) => byId.get(u.runId) ?? null);
      },
      async (u) => (await this.sql.insertRootRun(this.pool, u, this.now())) ?? null,
    );
    const byRunId = new Map(unique.map((u, k) => [u.runId, written[k]!]));
    return batch.map((b, i) => (first.get(b.runId) === i ? byRunId.get(b.runId)! : null));
  }

  /**
   * Announces runs after the write that concerns them has committed, outside it: due ones to the workers (wake), runs
   * closed from outside (stop), root runs that closed (closed, for Client.result), the ids of one event-loop turn in
   * one statement. A NOTIFY inside a writing transaction holds PostgreSQL's notification queue lock through that
   * transaction's WAL flush, serialising every notifying commit of the cluster (measured here: 16 clients inserting
   * one row reach 2,000–3,600 tps without a notification, ~1,100 with one); a statement that only notifies writes no
   * WAL. A notification lost to a crash in between costs latency only: the workers' poll finds due runs, and
   * Client.result polls too.
   */
  private announce(a: Partial<Announcements>): void {
    const q = this.toAnnounce;
    const first = !q.wake.length && !q.stop.length && !q.closed.length;
    if (a.wake) q.wake.push(...a.wake);
    if (a.stop) q.stop.push(...a.stop);
    if (a.closed) q.closed.push(...a.closed);
    if (!first || (!q.wake.length && !q.stop.length && !q.closed.length)) return;
    setImmediate(() => {
      const { wake, stop, closed } = this.toAnnounce;
      this.toAnnounce = { wake: [], stop: [], closed: [] };
      if (this.closed) return;
      this.sql.notify(this.pool, wake, stop, closed).catch(() => {}); // lost: the polls find them
    });
  }

  /**
   * Times are stored as bigint milliseconds: a clock or duration with a fraction is rounded so that nothing happens
   * early (now down, timers and lease durations up) instead of failing the statement.
   */
  private now(): number {
    return Math.floor(this.clock.now());
  }

  /**
   * Applies parent-close policies below `roots` (runs this transaction has locked), generation by generation, parent
   * before child: one statement per generation (see Sql.cascadeGeneration). Bounded like the memory journal: at most
   * maxDepth + 1 generations, and a child deeper than maxDepth is left alone and reported in `truncated`.
   */
  private async cascade(
    q: Queryable,
    roots: string[],
    maxDepth: number,
    reason: string,
    now: number,
    out: { stop: string[]; closed?: string[]; truncated?: string[] },
  ): Promise<void> {
    let generation = roots;
    for (let g = 0; generation.length && g <= maxDepth; g++) {
      const rows = await this.sql.cascadeGeneration(q, generation, maxDepth, reason, now);
      generation = [];
      for (const r of rows) {
        if (r.closed) {
          generation.push(r.runId);
          out.stop.push(r.runId);
          out.closed?.push(r.runId);
        } else if (r.truncated) {
          out.truncated?.push(r.runId);
        }
      }
    }
  }

  /**
   * Inserts the new children in one statement; when some were skipped, one more statement tells an existing child
   * (left alone, as the contract says) from a workflow id held by another run (DuplicateWorkflowIdError, which rolls
   * the whole commit back).
   */
  private async createChildren(
    q: Queryable,
    parent: LockedRun,
    p: PreparedCommit,
    lease: { owner: string; expiresAt: number; only: (runId: string) => boolean } | null,
    now: number,
  ): Promise<{ childLeases: Lease[]; announce: string[] }> {
    // (field by field, not spread from the prepared child: one row per child, 100,000 of them in a large fan-out)
    const rows: RunInsert[] = p.children.map((ch) => {
      const depth = ch.depth ?? parent.depth + 1;
      const started = { workflow: ch.workflow, workflowId: ch.workflowId, parentRunId: parent.runId, callId: ch.callId, deadline: ch.deadline, trace: ch.trace };
      const row: RunInsert = {
        runId: ch.runId,
        workflowId: ch.workflowId,
        workflow: ch.workflow,
        inputJson: ch.inputJson,
        callId: ch.callId,
        queue: ch.queue,
        depth,
        parentClosePolicy: ch.parentClosePolicy,
        startAt: ch.startAt,
        startedJson: startedPayload(started, ch.input, depth),
      };
      if (ch.completed) {
        const { status, resultJson, errorJson, events } = ch.completed;
        row.closed = { status, resultJson, errorJson, lastSeq: 1 + events.length };
      } else if (lease && !lease.only(ch.runId)) row.unleased = true;
      return row;
    });
    const inserted = await this.sql.insertChildren(q, { runId: parent.runId, rootRunId: parent.rootRunId }, rows, lease, now);
    if (inserted.length < rows.length) {
      const got = new Set(inserted.map((r) => r.runId));
      const skipped = rows.filter((r) => !got.has(r.runId));
      const holders = await this.sql.runsByIds(
        q,
        skipped.map((r) => r.runId),
        skipped.map((r) => r.workflowId),
      );
      for (const ch of skipped) {
        if (holders.some((h) => h.runId === ch.runId)) continue; // the child exists: left as it is
        const other = holders.find((h) => h.workflowId === ch.workflowId);
        if (other) throw new DuplicateWorkflowIdError(ch.workflowId, other.runId, other.workflow);
        throw new SkeinError(`child run ${ch.runId} was neither created nor found`);
      }
    }
    // Inline children ran to their close inside this activation: their journals and closes go in this transaction.
    const got = new Set(inserted.map((r) => r.runId));
    const done = p.children.filter((ch) => ch.completed && got.has(ch.runId));
    if (done.length) {
      await this.sql.insertEventsMany(
        q,
        done.flatMap((ch) => ch.completed!.events.map((e, i) => ({ runId: ch.runId, seq: i + 2, type: e.type, json: e.json }))),
        now,
      );
    }
    const closed = new Set(done.map((ch) => ch.runId));
    const startsLater = new Set(p.children.filter((ch) => (ch.startAt ?? now) > now).map((ch) => ch.runId));
    return {
      childLeases: inserted.flatMap((r) => (r.lease && !closed.has(r.runId) ? [r.lease] : [])),
      // children leased to this worker run here at once; the others are announced to every worker
      // (a retry due later is announced by nobody: the poll takes it at its start time)
      announce: inserted.filter((r) => !r.lease && !closed.has(r.runId) && !startsLater.has(r.runId)).map((r) => r.runId),
    };
  }

  /** Runs `fn` in a transaction; what it puts in `after` is announced once the transaction has committed. */
  private async transaction<T>(fn: (q: pg.PoolClient, after: Announcements) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    // The pool stops listening for a client's 'error' while it is checked out. A connection that dies between two
    // statements of this transaction (the database restarts, the network drops) would then emit an unhandled 'error'
    // and crash the process. Note it instead: the next statement fails, the transaction is abandoned (the server
    // rolls it back) and the connection is destroyed rather than returned to the pool.
    const onError = (err: Error) => (broken ??= err);
    client.on('error', onError);
    try {
      await this.sql.begin(client);
      try {
        const after: Announcements = { wake: [], stop: [], closed: [] };
        const out = await fn(client, after);
        await this.sql.commit(client);
        this.announce(after);
        return out;
      } catch (err) {
        // a failed rollback means the connection is unusable: destroy it instead of returning it to the pool
        await this.sql.rollback(client).catch((e: Error) => (broken = e));
        throw err;
      }
    } finally {
      // a broken client keeps the listener: it is being destroyed and may still report errors
      if (!broken) client.removeListener('error', onError);
      client.release(broken);
    }
  }

  /**
   * A caller that subscribed with onWake and then writes must not miss the wake-ups its own writes cause, so writes
   * wait until the first LISTEN attempt has settled (a no-op afterwards). Wake-ups from elsewhere while the listener
   * is down are recovered by polling, as the contract allows.
   */
  private async beforeWrite(): Promise<void> {
    if (this.listenReady) await this.listenReady;
  }

  private startListening(): void {
    if (this.listenStarted || this.closed) return;
    this.listenStarted = true;
    this.listenReady = this.connectListener();
  }

  /** Opens the LISTEN connection; never rejects (a failure schedules a reconnect). */
  private async connectListener(): Promise<void> {
    if (this.closed) return;
    // A connect that gets no answer (a host cut off rather than down) gives up after 10 s and is retried with the
    // backoff; TCP keepalive notices a connection that died silently (no FIN, no RST) while it sat idle listening.
    const client = new pg.Client({ ...this.pool.options, connectionTimeoutMillis: 10_000, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
    let lost = false;
    const onLost = () => {
      if (lost) return;
      lost = true;
      if (this.listenClient === client) this.listenClient = null;
      client.end().catch(() => {});
      this.scheduleReconnect();
    };
    client.on('error', onLost);
    client.on('end', onLost);
    client.on('notification', (msg) => {
      if (!msg.payload) return;
      if (msg.channel === this.sql.channel) this.dispatch(msg.payload.split(','), 'wake');
      else if (msg.channel === this.sql.stopChannel) this.dispatch(msg.payload.split(','), 'stop');
      else if (msg.channel === this.sql.closedChannel) this.dispatch(msg.payload.split(','), 'closed');
    });
    try {
      await client.connect();
      await this.sql.listen(client);
      if (this.closed) {
        lost = true;
        await client.end().catch(() => {});
        return;
      }
      this.listenClient = client;
      this.reconnectAttempt = 0;
    } catch {
      onLost();
    }
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    // exponential backoff with jitter, 100 ms up to 5 s: a database restart is not hammered by every worker at once
    const base = Math.min(5000, 100 * 2 ** this.reconnectAttempt++);
    const delay = base / 2 + Math.random() * (base / 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.connectListener();
    }, delay);
    this.reconnectTimer.unref();
  }

  private dispatch(runIds: string[], kind: 'wake' | 'stop' | 'closed'): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(runIds.slice(), kind);
      } catch (err) {
        // a listener's bug must not break the LISTEN connection or the other listeners
        process.emitWarning(err instanceof Error ? err : new Error(String(err)), 'SkeinWakeListenerError');
      }
    }
  }
}

/** A RunFilter's time bounds as whole milliseconds (the columns are bigint), checked. */
function filterParams(f: RunFilter): FilterParams {
  const time = (name: keyof RunFilter, v: number | undefined) => {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidArgumentError(name, `it must be a time in epoch milliseconds, got ${String(v)}`);
    return Math.ceil(v);
  };
  return {
    workflow: f.workflow,
    queue: f.queue,
    parentRunId: f.parentRunId,
    rootRunId: f.rootRunId,
    workflowId: f.workflowId,
    workflowIdPrefix: f.workflowIdPrefix,
    startedAfter: time('startedAfter', f.startedAfter),
    startedBefore: time('startedBefore', f.startedBefore),
    closedAfter: time('closedAfter', f.closedAfter),
    closedBefore: time('closedBefore', f.closedBefore),
  };
}

/** Runs to announce after a commit (see PgJournal.announce), by channel. */
interface Announcements {
  wake: string[];
  stop: string[];
  closed: string[];
}

/** A client's signal as sendSignals takes it. */
type ClientSignal = { runId: string; signalId: string; name: string; payloadJson: string; traceparent: string | null };

/** A client's start as insertStarts takes it. */
type RootRunInsert = RunInsert & { parentRunId: string | null; rootRunId: string };

/** The fence: the writer must hold the run's current lease token and have read up to its last seq. */
interface PendingClose {
  lease: Lease;
  commit: Commit;
  prepared: PreparedCommit;
}

/**
 * What a suspending commit writes into the run's stall column: the commit's own stall if it gives one (null clears),
 * null when it journals the result of the activity the run is stalled on (at `stalledPath`), else undefined (no write).
 */
function stallWrite(c: Commit, stalledPath: string | null): RunStall | null | undefined {
  if (c.stall !== undefined) return c.stall === null && stalledPath === null ? undefined : c.stall;
  if (stalledPath === null) return undefined;
  return c.events.some((e) => (e.type === 'ActivityCompleted' || e.type === 'ActivityFailed') && e.payload.path === stalledPath) ? null : undefined;
}

/** A queued close as the batch statements take it. */
function closingRun({ lease, commit: c, prepared: p }: PendingClose): ClosingRun {
  return { runId: lease.runId, afterSeq: c.afterSeq, events: p.events, received: p.received, status: p.close!.status, resultJson: p.close!.resultJson, errorJson: p.close!.errorJson };
}

/**
 * A close with nothing else to do in its transaction but append its events (and take the signals they journal out of
 * its inbox): no children, signals to send, policies on timed-out children, cancel request to mark.
 */
function isPlainClose(c: Commit, p: PreparedCommit): boolean {
  return !!c.close && !c.close.next && !c.block && !p.children.length && !p.signals.length && !p.closeChildren.length && !p.cancelJournaled;
}

/**
 * Group commit: callers add items and await their own result; items that arrive while a batch is being written wait
 * and go together in the next one. One batch is in flight at a time, so under load batches grow by themselves and
 * an idle system pays only a setImmediate of latency.
 */
export class GroupCommit<T, R> {
  private queue: { item: T; resolve: (r: R) => void; reject: (e: Error) => void }[] = [];
  private draining = false;
  constructor(
    private readonly write: (items: T[]) => Promise<(R | Error)[]>,
    private readonly maxBatch = 500,
  ) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.draining) {
        this.draining = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length) {
        const batch = this.queue.splice(0, this.maxBatch);
        let out: (R | Error)[];
        try {
          out = await this.write(batch.map((b) => b.item));
        } catch (err) {
          out = batch.map(() => err as Error);
        }
        batch.forEach((b, i) => {
          const r = out[i];
          if (r instanceof Error) b.reject(r);
          else b.resolve(r as R);
        });
      }
    } finally {
      this.draining = false;
    }
  }
}

/**
 * Writes a batch of independent items (client starts, client signals): one statement for the batch (`many`), the
 * plain statement for a lone item (`one`, which plans faster than a batch's json_to_recordset or unnest). Should the
 * batch statement fail, each item is written alone, so that one item's bad value fails that item only.
 */
async function batchOrEach<T, R>(items: T[], many: (items: T[]) => Promise<R[]>, one: (item: T) => Promise<R>): Promise<(R | Error)[]> {
  const alone = (x: T) => one(x).catch((e: Error) => e);
  if (items.length === 1) return [await alone(items[0]!)];
  try {
    return await many(items);
  } catch {
    return Promise.all(items.map(alone));
  }
}

/** Checks a locked run against the writer's lease and journal head; returns it (whatever else the caller read). */
function fence<R extends Pick<LockedRun, 'status' | 'leaseToken' | 'lastSeq'>>(run: R | undefined, lease: Lease, afterSeq: number): R {
  if (!run) throw new UnknownRunError(lease.runId);
  if (run.leaseToken !== lease.token) throw new LeaseLostError(lease.runId);
  if (run.status !== 'running') throw new LeaseLostError(lease.runId, `run is ${run.status}`);
  if (run.lastSeq !== afterSeq) throw new LeaseLostError(lease.runId, `journal is at seq ${run.lastSeq}, writer expected ${afterSeq}`);
  return run;
}

/** The RunStarted payload as JSON text (see runStartedPayload: the same keys, in the same order, everywhere). */
function startedPayload(run: Parameters<typeof runStartedPayload>[0], input: unknown, depth: number): string {
  return JSON.stringify(runStartedPayload(run, input, depth));
}

/** Validates every payload of a commit (PayloadError) and catches duplicate children, before anything is written. */
function prepareCommit(c: Commit): PreparedCommit {
  const events = c.events.map((e) => ({ type: e.type, json: toJsonText(e.payload, `event ${e.type}`) }));
  const children: PreparedCommit['children'] = [];
  const listed = new Set<string>();
  const byWorkflowId = new Map<string, NewRun>();
  for (const ch of c.children) {
    if (listed.has(ch.runId)) continue; // a run id listed twice is one child
    listed.add(ch.runId);
    const twin = byWorkflowId.get(ch.workflowId);
    if (twin) throw new DuplicateWorkflowIdError(ch.workflowId, twin.runId, twin.workflow);
    byWorkflowId.set(ch.workflowId, ch);
    const input = toJson(ch.input, `input of workflow '${ch.workflow}'`);
    children.push({
      runId: ch.runId,
      workflowId: ch.workflowId,
      workflow: ch.workflow,
      input: input.value,
      inputJson: input.json,
      callId: ch.callId ?? null,
      queue: ch.queue,
      depth: ch.depth,
      parentClosePolicy: ch.parentClosePolicy ?? 'cancel',
      startAt: ch.startAt ?? null,
      deadline: ch.deadline,
      trace: ch.trace,
      completed: ch.completed && {
        events: ch.completed.events.map((e) => ({ type: e.type, json: toJsonText(e.payload, `event ${e.type}`) })),
        status: ch.completed.status,
        resultJson: toJsonText(ch.completed.result ?? null, 'run result'),
        errorJson: ch.completed.error ? toJsonText(ch.completed.error, 'run error') : null,
      },
    });
  }
  const received = c.events.flatMap((e) => (e.type === 'SignalReceived' ? [e.payload.signalId] : []));
  const signals = (c.signals ?? []).map((sg) => ({
    runId: sg.runId,
    signalId: sg.signalId,
    name: sg.name,
    payloadJson: toJsonText(sg.payload ?? null, `payload of signal '${sg.name}'`),
  }));
  const closeChildren = [...new Map((c.closeChildren ?? []).map((cc) => [cc.runId, cc])).values()];
  const out: PreparedCommit = {
    events,
    children,
    received,
    cancelJournaled: c.events.some((e) => e.type === 'CancelRequested'),
    signals,
    closeChildren,
    maxChildDepth: c.maxChildDepth ?? 10,
  };
  // validated even when block wins, as the memory journal does: a bad payload fails the whole commit
  const close = c.close && {
    status: c.close.status,
    resultJson: toJsonText(c.close.result ?? null, 'run result'),
    errorJson: c.close.error ? toJsonText(c.close.error as SerializedError, 'run error') : null,
    ...(c.close.next ? { next: prepareNext(c.close.next) } : {}),
  };
  if (c.block) out.blockJson = toJsonText(c.block, 'block error');
  else if (close) out.close = close;
  return out;
}

function prepareNext(next: NewRun): { run: NewRun; input: unknown; inputJson: string } {
  const input = toJson(next.input, 'continue-as-new input');
  return { run: next, input: input.value, inputJson: input.json };
}
