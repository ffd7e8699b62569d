import pg from 'pg';
import { DuplicateWorkflowIdError, LeaseLostError, SkeinError, UnknownRunError, type SerializedError } from '../../runtime/errors.js';
import type { JournalEvent } from '../../runtime/events.js';
import { toJson } from '../../runtime/json.js';
import type {
  ChildOutcome,
  ClaimOptions,
  Clock,
  Commit,
  CommitResult,
  Journal,
  Lease,
  NewRun,
  RunRecord,
  RunStatus,
  WakeListener,
} from '../journal.js';
import { migrate } from './migrations.js';
import { Sql, type LockedRun, type Queryable, type RunInsert } from './sql.js';

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
}

/** A commit's payloads, validated and turned into JSON text before any connection is taken. */
interface PreparedCommit {
  events: Array<{ type: string; json: string }>;
  children: Array<Omit<RunInsert, 'depth' | 'startedJson'> & { depth: number | undefined; input: unknown }>;
  close?: { status: NonNullable<Commit['close']>['status']; resultJson: string; errorJson: string | null };
  blockJson?: string;
}

/**
 * The journal in PostgreSQL, with the same contract as MemoryJournal (both pass test/journal-contract.ts).
 *
 * Every commit is one transaction: the run row is locked FOR UPDATE and the lease token and seq checked against it
 * (the fence), then events, children and the run's new state are written with a constant number of statements. A
 * close also wakes the parent per its stored wait and notifies `<schema>_wake` (so `skein_wake` by default) inside the
 * transaction, so the notification goes out only if the close commits. Notifications are an optimization: a lost one
 * costs latency, the poll (claimDue) still finds the run.
 */
export class PgJournal implements Journal {
  readonly clock: Clock;
  readonly pool: pg.Pool;
  readonly schema: string;
  private readonly sql: Sql;
  private readonly ownsPool: boolean;
  private closed = false;

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
      this.pool = new pg.Pool({ connectionString: options.connectionString, max: options.maxConnections ?? 10 });
      this.ownsPool = true;
      // An idle client that loses its connection emits 'error' on the pool; without a handler that would crash the
      // process. The next query simply gets a fresh connection.
      this.pool.on('error', () => {});
    }
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
    const inserted = await this.sql.insertRootRun(
      this.pool,
      {
        runId: run.runId,
        workflowId: run.workflowId,
        workflow: run.workflow,
        inputJson: input.json,
        callId: run.callId ?? null,
        queue: run.queue,
        depth,
        startedJson: startedPayload(run, input.value, depth),
        parentRunId: run.parentRunId ?? null,
        rootRunId: run.rootRunId ?? run.runId,
      },
      this.now(),
    );
    if (inserted) return { run: inserted, created: true };
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
    if (o.limit <= 0 || !o.queues.length) return [];
    return this.sql.claimDue(this.pool, { ...o, leaseMs: Math.ceil(o.leaseMs), now: this.now() });
  }

  async acquire(runId: string, owner: string, leaseMs: number): Promise<Lease | undefined> {
    return this.sql.acquire(this.pool, runId, owner, Math.ceil(leaseMs), this.now());
  }

  async renew(lease: Lease, leaseMs: number): Promise<Lease> {
    const expiresAt = await this.sql.renew(this.pool, lease, Math.ceil(leaseMs), this.now());
    if (expiresAt !== undefined) return { ...lease, expiresAt };
    if (!(await this.sql.runExists(this.pool, lease.runId))) throw new UnknownRunError(lease.runId);
    throw new LeaseLostError(lease.runId);
  }

  async release(lease: Lease): Promise<void> {
    await this.sql.release(this.pool, lease);
  }

  async commit(lease: Lease, c: Commit): Promise<CommitResult> {
    const p = prepareCommit(c);
    await this.beforeWrite();
    return this.transaction(async (q) => {
      const now = this.now();
      // Lock order parent before child: a close is the one write here that touches another run (the parent).
      if (p.close) await this.sql.lockParentOf(q, lease.runId);
      const run = fence(await this.sql.lockRun(q, lease.runId), lease, c.afterSeq);

      let seq = run.lastSeq;
      if (p.events.length) {
        await this.sql.insertEvents(q, run.runId, seq, p.events, now);
        seq += p.events.length;
      }

      const { childLeases, announce } = p.children.length
        ? await this.createChildren(q, run, p, c.leaseChildren ? { owner: lease.owner, expiresAt: Math.max(now, lease.expiresAt) } : null, now)
        : { childLeases: [], announce: [] };

      let wokeParent: string | null = null;
      if (p.blockJson) {
        await this.sql.blockRun(q, { runId: run.runId, lastSeq: seq, errorJson: p.blockJson });
      } else if (p.close) {
        await this.sql.closeRun(q, { runId: run.runId, lastSeq: seq, status: p.close.status, resultJson: p.close.resultJson, errorJson: p.close.errorJson, now });
        if (run.parentRunId) {
          const failed = p.close.status !== 'completed';
          if (await this.sql.wakeParent(q, { parentRunId: run.parentRunId, childRunId: run.runId, failed, now })) wokeParent = run.parentRunId;
        }
      } else {
        const wait = { ...c.wait, timerAt: c.wait.timerAt === null ? null : Math.ceil(c.wait.timerAt) };
        await this.sql.suspendRun(q, { runId: run.runId, lastSeq: seq, wait, release: !!c.release, now });
      }
      await this.sql.notify(q, announce);
      return { lastSeq: seq, childLeases, wokeParent };
    });
  }

  onWake(listener: WakeListener): () => void {
    this.listeners.add(listener);
    this.startListening();
    return () => {
      this.listeners.delete(listener);
    };
  }

  // ---- internals ----

  /**
   * Times are stored as bigint milliseconds: a clock or duration with a fraction is rounded so that nothing happens
   * early (now down, timers and lease durations up) instead of failing the statement.
   */
  private now(): number {
    return Math.floor(this.clock.now());
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
    lease: { owner: string; expiresAt: number } | null,
    now: number,
  ): Promise<{ childLeases: Lease[]; announce: string[] }> {
    const rows: RunInsert[] = p.children.map((ch) => {
      const depth = ch.depth ?? parent.depth + 1;
      return { ...ch, depth, startedJson: startedPayload({ ...ch, parentRunId: parent.runId }, ch.input, depth) };
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
    return {
      childLeases: inserted.flatMap((r) => (r.lease ? [r.lease] : [])),
      // children leased to this worker run here at once; the others are announced to every worker
      announce: lease ? [] : inserted.map((r) => r.runId),
    };
  }

  private async transaction<T>(fn: (q: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await this.sql.begin(client);
      try {
        const out = await fn(client);
        await this.sql.commit(client);
        return out;
      } catch (err) {
        // a failed rollback means the connection is unusable: destroy it instead of returning it to the pool
        await this.sql.rollback(client).catch((e: Error) => (broken = e));
        throw err;
      }
    } finally {
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
    const client = new pg.Client(this.pool.options);
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
      if (msg.channel === this.sql.channel && msg.payload) this.dispatch(msg.payload.split(','));
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

  private dispatch(runIds: string[]): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(runIds.slice());
      } catch (err) {
        // a listener's bug must not break the LISTEN connection or the other listeners
        process.emitWarning(err instanceof Error ? err : new Error(String(err)), 'SkeinWakeListenerError');
      }
    }
  }
}

/** The fence: the writer must hold the run's current lease token and have read up to its last seq. */
function fence(run: LockedRun | undefined, lease: Lease, afterSeq: number): LockedRun {
  if (!run) throw new UnknownRunError(lease.runId);
  if (run.leaseToken !== lease.token) throw new LeaseLostError(lease.runId);
  if (run.status !== 'running') throw new LeaseLostError(lease.runId, `run is ${run.status}`);
  if (run.lastSeq !== afterSeq) throw new LeaseLostError(lease.runId, `journal is at seq ${run.lastSeq}, writer expected ${afterSeq}`);
  return run;
}

/** The RunStarted payload, with the same keys in the same order as the memory journal writes. */
function startedPayload(
  run: { workflow: string; workflowId: string; parentRunId?: string | null; callId?: string | null },
  input: unknown,
  depth: number,
): string {
  return JSON.stringify({
    workflow: run.workflow,
    workflowId: run.workflowId,
    input,
    depth,
    ...(run.parentRunId ? { parentRunId: run.parentRunId } : {}),
    ...(run.callId ? { callId: run.callId } : {}),
  });
}

/** Validates every payload of a commit (PayloadError) and catches duplicate children, before anything is written. */
function prepareCommit(c: Commit): PreparedCommit {
  const events = c.events.map((e) => ({ type: e.type, json: toJson(e.payload, `event ${e.type}`).json }));
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
    });
  }
  const out: PreparedCommit = { events, children };
  if (c.block) out.blockJson = toJson(c.block, 'block error').json;
  else if (c.close) {
    out.close = {
      status: c.close.status,
      resultJson: toJson(c.close.result ?? null, 'run result').json,
      errorJson: c.close.error ? toJson(c.close.error as SerializedError, 'run error').json : null,
    };
  }
  return out;
}
