import type { QueryResult, QueryResultRow } from 'pg';
import type { ChildOutcome, ClosedStatus, Lease, RunRecord, RunStatus, WaitSpec } from '../journal.js';
import type { SerializedError } from '../../runtime/errors.js';
import type { JournalEvent } from '../../runtime/events.js';

/**
 * Every SQL statement of the Postgres journal, and the mapping of its rows, lives in this module: a reader sees every
 * statement that touches a table in one place, and a schema change is one diff (with a migration in migrations.ts).
 *
 * Conventions:
 *  - Times are bigint epoch milliseconds passed in from the journal's Clock, never the database's now(): tests drive
 *    lease expiry and timers with a manual clock exactly as they do for the in-memory journal.
 *  - Payloads (input, result, error, event payload) are passed as JSON text produced by toJson() and stored in `json`
 *    columns, which keep the text as written. `jsonb` would reorder object keys, and a workflow that iterates an
 *    activity result's keys would then see one order live and another on replay (non-determinism after a cache
 *    eviction); input hashes are computed over JSON text too.
 *  - Batches go in as parallel arrays through unnest(), so a commit costs the same number of statements whatever
 *    the number of events or children.
 *  - Open statuses are 'running' and 'blocked' (see OPEN_STATUSES in journal.ts).
 */

/** What the statements need from a connection: a pool or a checked-out client (inside a transaction). */
export interface Queryable {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

/** Lower-case identifiers only, so a schema name never needs escaping and the notify channel stays an identifier. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,57}$/;

export function assertSchemaName(schema: string): void {
  if (!SCHEMA_NAME.test(schema)) {
    throw new Error(`invalid schema name '${schema}': use 1-58 lower-case letters, digits or '_', not starting with a digit`);
  }
}

/** The LISTEN/NOTIFY channel of a schema's wake-ups: `skein_wake` for the default schema `skein`. */
export const wakeChannel = (schema: string): string => `${schema}_wake`;

/** Postgres caps a NOTIFY payload at 8000 bytes; ids are joined with ',' into chunks below this. */
const NOTIFY_PAYLOAD_BYTES = 7900;

export function notifyChunks(runIds: string[]): string[] {
  const chunks: string[] = [];
  let current = '';
  for (const id of runIds) {
    const next = current ? `${current},${id}` : id;
    if (current && Buffer.byteLength(next) > NOTIFY_PAYLOAD_BYTES) {
      chunks.push(current);
      current = id;
    } else {
      current = next;
    }
  }
  if (current) chunks.push(current);
  return chunks;
}

const RUN_COLUMNS = `run_id, workflow_id, workflow, status, input, parent_run_id, call_id, root_run_id, depth, queue,
  lease_owner, lease_expires_at, next_wakeup_at, created_at, closed_at, result, error, continued_from, continued_to, last_seq`;

interface RunRow {
  run_id: string;
  workflow_id: string;
  workflow: string;
  status: RunStatus;
  input: unknown;
  parent_run_id: string | null;
  call_id: string | null;
  root_run_id: string;
  depth: number;
  queue: string;
  lease_owner: string | null;
  lease_expires_at: string | null;
  next_wakeup_at: string | null;
  created_at: string;
  closed_at: string | null;
  result: unknown;
  error: SerializedError | null;
  continued_from: string | null;
  continued_to: string | null;
  last_seq: number;
}

interface LeaseRow {
  run_id: string;
  lease_owner: string;
  lease_token: string;
  lease_expires_at: string;
}

// node-postgres returns bigint as a string (it may exceed 2^53); epoch milliseconds never do.
const ms = (v: string | null): number | null => (v === null ? null : Number(v));

function toRun(r: RunRow): RunRecord {
  return {
    runId: r.run_id,
    workflowId: r.workflow_id,
    workflow: r.workflow,
    status: r.status,
    input: r.input,
    parentRunId: r.parent_run_id,
    callId: r.call_id,
    rootRunId: r.root_run_id,
    depth: r.depth,
    queue: r.queue,
    leaseOwner: r.lease_owner,
    leaseExpiresAt: ms(r.lease_expires_at),
    nextWakeupAt: ms(r.next_wakeup_at),
    createdAt: Number(r.created_at),
    closedAt: ms(r.closed_at),
    result: r.result ?? null,
    error: r.error ?? null,
    continuedFrom: r.continued_from,
    continuedTo: r.continued_to,
    lastSeq: r.last_seq,
  };
}

const toLease = (r: LeaseRow): Lease => ({ runId: r.run_id, owner: r.lease_owner, token: r.lease_token, expiresAt: Number(r.lease_expires_at) });

/** The row of a run locked for a commit: what the fence and the children need. */
export interface LockedRun {
  runId: string;
  status: RunStatus;
  leaseToken: string | null;
  lastSeq: number;
  depth: number;
  rootRunId: string;
  parentRunId: string | null;
}

/** A new run as the statements take it: payloads already turned into JSON text. */
export interface RunInsert {
  runId: string;
  workflowId: string;
  workflow: string;
  inputJson: string;
  callId: string | null;
  queue: string;
  depth: number;
  /** The RunStarted payload, as JSON text. */
  startedJson: string;
}

/** The statements of one schema. */
export class Sql {
  private readonly s: string;
  readonly channel: string;

  constructor(readonly schema: string) {
    assertSchemaName(schema);
    this.s = `"${schema}"`;
    this.channel = wakeChannel(schema);
  }

  // ---- transactions and migrations ----

  async begin(q: Queryable): Promise<void> {
    await q.query('BEGIN');
  }
  async commit(q: Queryable): Promise<void> {
    await q.query('COMMIT');
  }
  async rollback(q: Queryable): Promise<void> {
    await q.query('ROLLBACK');
  }

  /**
   * Serializes migrators of this schema until the transaction ends (several processes may start at once). The key
   * is (a constant for skein, a hash of the schema name), so schemas migrate independently.
   */
  async lockMigrations(q: Queryable): Promise<void> {
    await q.query(`SELECT pg_advisory_xact_lock(1936418407, hashtext($1))`, [this.schema]);
  }

  async createSchemaAndMigrationTable(q: Queryable): Promise<void> {
    await q.query(`CREATE SCHEMA IF NOT EXISTS ${this.s}`);
    await q.query(`CREATE TABLE IF NOT EXISTS ${this.s}.skein_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
  }

  async appliedMigrations(q: Queryable): Promise<Set<number>> {
    const r = await q.query<{ version: number }>(`SELECT version FROM ${this.s}.skein_migrations`);
    return new Set(r.rows.map((x) => x.version));
  }

  async applyMigration(q: Queryable, version: number, name: string, ddl: string): Promise<void> {
    await q.query(ddl);
    await q.query(`INSERT INTO ${this.s}.skein_migrations (version, name) VALUES ($1, $2)`, [version, name]);
  }

  async dropSchema(q: Queryable): Promise<void> {
    await q.query(`DROP SCHEMA IF EXISTS ${this.s} CASCADE`);
  }

  // ---- reads ----

  async runById(q: Queryable, runId: string): Promise<RunRecord | undefined> {
    const r = await q.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM ${this.s}.runs WHERE run_id = $1`, [runId]);
    return r.rows[0] && toRun(r.rows[0]);
  }

  async runByWorkflowId(q: Queryable, workflowId: string): Promise<RunRecord | undefined> {
    const r = await q.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM ${this.s}.runs WHERE workflow_id = $1`, [workflowId]);
    return r.rows[0] && toRun(r.rows[0]);
  }

  async runExists(q: Queryable, runId: string): Promise<boolean> {
    const r = await q.query(`SELECT 1 FROM ${this.s}.runs WHERE run_id = $1`, [runId]);
    return r.rowCount === 1;
  }

  async readEvents(q: Queryable, runId: string, afterSeq: number): Promise<JournalEvent[]> {
    const r = await q.query<{ seq: number; type: string; payload: unknown; recorded_at: string }>(
      `SELECT seq, type, payload, recorded_at FROM ${this.s}.events WHERE run_id = $1 AND seq > $2 ORDER BY seq`,
      [runId, afterSeq],
    );
    return r.rows.map((e) => ({ type: e.type, payload: e.payload, seq: e.seq, recordedAt: Number(e.recorded_at) }) as JournalEvent);
  }

  /** Direct children in creation order, ties by run id compared bytewise (COLLATE "C"), like the memory journal. */
  async listChildren(q: Queryable, parentRunId: string, statuses: RunStatus[] | null): Promise<RunRecord[]> {
    const r = await q.query<RunRow>(
      `SELECT ${RUN_COLUMNS} FROM ${this.s}.runs
       WHERE parent_run_id = $1 AND ($2::text[] IS NULL OR status = ANY($2::text[]))
       ORDER BY created_at, run_id COLLATE "C"`,
      [parentRunId, statuses],
    );
    return r.rows.map(toRun);
  }

  /** Closed children of the parent among the ids. A `continued` run is not an outcome: the parent follows the chain. */
  async childOutcomes(q: Queryable, parentRunId: string, childRunIds: string[]): Promise<ChildOutcome[]> {
    const r = await q.query<{ run_id: string; call_id: string | null; status: ClosedStatus; result: unknown; error: SerializedError | null; closed_at: string | null }>(
      `SELECT run_id, call_id, status, result, error, closed_at FROM ${this.s}.runs
       WHERE run_id = ANY($2::text[]) AND parent_run_id = $1 AND status NOT IN ('running', 'blocked', 'continued')`,
      [parentRunId, childRunIds],
    );
    return r.rows.map((c) => ({
      childRunId: c.run_id,
      callId: c.call_id ?? '',
      status: c.status,
      result: c.result ?? null,
      error: c.error ?? null,
      closedAt: ms(c.closed_at) ?? 0,
    }));
  }

  // ---- runs and leases ----

  /**
   * Creates a root run with its RunStarted event and announces it, in one statement. Returns undefined when the run id
   * or workflow id is taken (ON CONFLICT covers both unique keys; it waits for a concurrent inserter to finish).
   */
  async insertRootRun(q: Queryable, run: RunInsert & { parentRunId: string | null; rootRunId: string }, now: number): Promise<RunRecord | undefined> {
    const r = await q.query<RunRow>(
      `WITH ins AS (
         INSERT INTO ${this.s}.runs (run_id, workflow_id, workflow, status, input, parent_run_id, call_id, root_run_id, depth, queue,
                                     next_wakeup_at, created_at, last_seq)
         VALUES ($1, $2, $3, 'running', $4::json, $5, $6, $7, $8, $9, $10, $10, 1)
         ON CONFLICT DO NOTHING
         RETURNING ${RUN_COLUMNS}
       ), started AS (
         INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
         SELECT run_id, 1, 'RunStarted', $11::json, $10 FROM ins
       )
       SELECT ins.*, pg_notify($12, ins.run_id) FROM ins`,
      [run.runId, run.workflowId, run.workflow, run.inputJson, run.parentRunId, run.callId, run.rootRunId, run.depth, run.queue, now, run.startedJson, this.channel],
    );
    return r.rows[0] && toRun(r.rows[0]);
  }

  /**
   * Leases up to `limit` due runs of the queues in one statement. SKIP LOCKED lets concurrent claimers pass over rows
   * another claimer is taking, so two workers never get the same run and never wait on each other.
   */
  async claimDue(q: Queryable, o: { owner: string; queues: string[]; limit: number; leaseMs: number; now: number }): Promise<Lease[]> {
    const r = await q.query<LeaseRow & { next_wakeup_at: string; depth: number; created_at: string }>(
      `UPDATE ${this.s}.runs
       SET lease_owner = $1, lease_token = gen_random_uuid()::text, lease_expires_at = $2::bigint + $3::bigint
       WHERE run_id IN (
         SELECT run_id FROM ${this.s}.runs
         WHERE status = 'running' AND queue = ANY($4::text[]) AND next_wakeup_at <= $2::bigint
           AND (lease_token IS NULL OR lease_expires_at <= $2::bigint)
         ORDER BY next_wakeup_at, depth, created_at
         LIMIT $5
         FOR UPDATE SKIP LOCKED
       )
       RETURNING run_id, lease_owner, lease_token, lease_expires_at, next_wakeup_at, depth, created_at`,
      [o.owner, o.now, o.leaseMs, o.queues, o.limit],
    );
    // RETURNING has no order: hand the leases out oldest due first, shallowest first, like the memory journal.
    const rows = r.rows.sort(
      (a, b) =>
        Number(a.next_wakeup_at) - Number(b.next_wakeup_at) ||
        a.depth - b.depth ||
        Number(a.created_at) - Number(b.created_at) ||
        (a.run_id < b.run_id ? -1 : 1),
    );
    return rows.map(toLease);
  }

  async acquire(q: Queryable, runId: string, owner: string, leaseMs: number, now: number): Promise<Lease | undefined> {
    const r = await q.query<LeaseRow>(
      `UPDATE ${this.s}.runs
       SET lease_owner = $2, lease_token = gen_random_uuid()::text, lease_expires_at = $3::bigint + $4::bigint
       WHERE run_id = $1 AND status = 'running' AND (lease_token IS NULL OR lease_expires_at <= $3::bigint)
       RETURNING run_id, lease_owner, lease_token, lease_expires_at`,
      [runId, owner, now, leaseMs],
    );
    return r.rows[0] && toLease(r.rows[0]);
  }

  /** Returns the new expiry, or undefined when the token no longer holds the run. */
  async renew(q: Queryable, lease: Lease, leaseMs: number, now: number): Promise<number | undefined> {
    const r = await q.query<{ lease_expires_at: string }>(
      `UPDATE ${this.s}.runs SET lease_expires_at = $3::bigint + $4::bigint
       WHERE run_id = $1 AND lease_token = $2 AND status = 'running'
       RETURNING lease_expires_at`,
      [lease.runId, lease.token, now, leaseMs],
    );
    return r.rows[0] && Number(r.rows[0].lease_expires_at);
  }

  async release(q: Queryable, lease: Lease): Promise<void> {
    await q.query(
      `UPDATE ${this.s}.runs SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
       WHERE run_id = $1 AND lease_token = $2`,
      [lease.runId, lease.token],
    );
  }

  // ---- the statements of one commit, in the order it issues them ----

  /**
   * Locks the parent of a run that is about to close, before the run itself: the lock order is parent before child
   * everywhere, so a closing child and its parent's own commit cannot deadlock. The parent id is read without a lock
   * (it never changes), in the same statement.
   */
  async lockParentOf(q: Queryable, runId: string): Promise<void> {
    await q.query(
      `SELECT p.run_id FROM ${this.s}.runs p
       WHERE p.run_id = (SELECT c.parent_run_id FROM ${this.s}.runs c WHERE c.run_id = $1)
       FOR UPDATE OF p`,
      [runId],
    );
  }

  /** Locks the run for the rest of the transaction; the caller checks the lease token and seq against it. */
  async lockRun(q: Queryable, runId: string): Promise<LockedRun | undefined> {
    const r = await q.query<{ status: RunStatus; lease_token: string | null; last_seq: number; depth: number; root_run_id: string; parent_run_id: string | null }>(
      `SELECT status, lease_token, last_seq, depth, root_run_id, parent_run_id FROM ${this.s}.runs WHERE run_id = $1 FOR UPDATE`,
      [runId],
    );
    const row = r.rows[0];
    return (
      row && {
        runId,
        status: row.status,
        leaseToken: row.lease_token,
        lastSeq: row.last_seq,
        depth: row.depth,
        rootRunId: row.root_run_id,
        parentRunId: row.parent_run_id,
      }
    );
  }

  /** Appends events with seqs afterSeq+1, afterSeq+2, ... in one statement. */
  async insertEvents(q: Queryable, runId: string, afterSeq: number, events: Array<{ type: string; json: string }>, now: number): Promise<void> {
    await q.query(
      `INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
       SELECT $1, $2::integer + e.ord, e.type, e.payload::json, $3
       FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS e(type, payload, ord)`,
      [runId, afterSeq, now, events.map((e) => e.type), events.map((e) => e.json)],
    );
  }

  /**
   * Creates child runs and their RunStarted events in one statement, whatever their number. A child whose run id or
   * workflow id already exists is skipped (ON CONFLICT DO NOTHING); the caller tells the two apart. With a lease
   * owner, each new child gets its own lease token. Returns the children actually inserted.
   */
  async insertChildren(
    q: Queryable,
    parent: { runId: string; rootRunId: string },
    children: RunInsert[],
    lease: { owner: string; expiresAt: number } | null,
    now: number,
  ): Promise<Array<{ runId: string; lease: Lease | null }>> {
    const r = await q.query<{ run_id: string; lease_owner: string | null; lease_token: string | null; lease_expires_at: string | null }>(
      `WITH kid AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[], $8::text[])
           WITH ORDINALITY AS k(run_id, workflow_id, workflow, input, call_id, queue, depth, started, ord)
       ), ins AS (
         INSERT INTO ${this.s}.runs (run_id, workflow_id, workflow, status, input, parent_run_id, call_id, root_run_id, depth, queue,
                                     lease_owner, lease_token, lease_expires_at, next_wakeup_at, created_at, last_seq)
         SELECT run_id, workflow_id, workflow, 'running', input::json, $9, call_id, $10, depth, queue,
                $11::text, CASE WHEN $11::text IS NULL THEN NULL ELSE gen_random_uuid()::text END, $12::bigint, $13::bigint, $13::bigint, 1
         FROM kid ORDER BY ord
         ON CONFLICT DO NOTHING
         RETURNING run_id, lease_owner, lease_token, lease_expires_at
       ), started AS (
         INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
         SELECT ins.run_id, 1, 'RunStarted', kid.started::json, $13::bigint FROM ins JOIN kid ON kid.run_id = ins.run_id
       )
       SELECT run_id, lease_owner, lease_token, lease_expires_at FROM ins`,
      [
        children.map((c) => c.runId),
        children.map((c) => c.workflowId),
        children.map((c) => c.workflow),
        children.map((c) => c.inputJson),
        children.map((c) => c.callId),
        children.map((c) => c.queue),
        children.map((c) => c.depth),
        children.map((c) => c.startedJson),
        parent.runId,
        parent.rootRunId,
        lease?.owner ?? null,
        lease?.expiresAt ?? null,
        now,
      ],
    );
    return r.rows.map((row) => ({
      runId: row.run_id,
      lease: row.lease_token === null ? null : toLease(row as LeaseRow),
    }));
  }

  /** The runs holding these run ids or workflow ids: why some children were not inserted. */
  async runsByIds(q: Queryable, runIds: string[], workflowIds: string[]): Promise<Array<{ runId: string; workflowId: string; workflow: string }>> {
    const r = await q.query<{ run_id: string; workflow_id: string; workflow: string }>(
      `SELECT run_id, workflow_id, workflow FROM ${this.s}.runs WHERE run_id = ANY($1::text[]) OR workflow_id = ANY($2::text[])`,
      [runIds, workflowIds],
    );
    return r.rows.map((x) => ({ runId: x.run_id, workflowId: x.workflow_id, workflow: x.workflow }));
  }

  /** Announces runs (comma-joined chunks under the NOTIFY payload limit); delivered when the transaction commits. */
  async notify(q: Queryable, runIds: string[]): Promise<void> {
    if (!runIds.length) return;
    await q.query(`SELECT pg_notify($1, chunk) FROM unnest($2::text[]) AS chunk`, [this.channel, notifyChunks(runIds)]);
  }

  /**
   * Records how the run waits and when it is next due, optionally giving up the lease. The due time is computed here
   * against the children's current status, so a child that closed before this wait was recorded is not missed:
   *  busy -> now; a closed child in onClose, a failed one in onFailure, or all of onAllClosed closed -> now; else the
   *  timer (or null). This mirrors MemoryJournal.dueTime.
   */
  async suspendRun(q: Queryable, a: { runId: string; lastSeq: number; wait: WaitSpec; release: boolean; now: number }): Promise<void> {
    await q.query(
      `UPDATE ${this.s}.runs r SET
         last_seq = $2,
         wait_timer_at = $3::bigint,
         wait_on_close = $4::text[],
         wait_on_failure = $5::text[],
         wait_on_all_closed = $6::text[],
         wait_busy = $7::boolean,
         next_wakeup_at = CASE
           WHEN $7::boolean THEN $8::bigint
           WHEN EXISTS (SELECT 1 FROM ${this.s}.runs c WHERE c.run_id = ANY($4::text[]) AND c.status NOT IN ('running', 'blocked'))
             OR EXISTS (SELECT 1 FROM ${this.s}.runs c WHERE c.run_id = ANY($5::text[]) AND c.status NOT IN ('running', 'blocked', 'completed'))
             OR (cardinality($6::text[]) > 0 AND NOT EXISTS (
                   SELECT 1 FROM unnest($6::text[]) AS w(id)
                   WHERE NOT EXISTS (SELECT 1 FROM ${this.s}.runs c WHERE c.run_id = w.id AND c.status NOT IN ('running', 'blocked'))))
             THEN $8::bigint
           ELSE $3::bigint
         END,
         lease_owner = CASE WHEN $9::boolean THEN NULL ELSE r.lease_owner END,
         lease_token = CASE WHEN $9::boolean THEN NULL ELSE r.lease_token END,
         lease_expires_at = CASE WHEN $9::boolean THEN NULL ELSE r.lease_expires_at END
       WHERE r.run_id = $1`,
      [a.runId, a.lastSeq, a.wait.timerAt, a.wait.onClose, a.wait.onFailure, a.wait.onAllClosed, a.wait.busy, a.now, a.release],
    );
  }

  /** Closes the run: terminal status, result/error, close time; no wait, no lease. */
  async closeRun(q: Queryable, a: { runId: string; lastSeq: number; status: ClosedStatus; resultJson: string; errorJson: string | null; now: number }): Promise<void> {
    await q.query(
      `UPDATE ${this.s}.runs SET
         status = $2, result = $3::json, error = $4::json, closed_at = $5, last_seq = $6, next_wakeup_at = NULL,
         wait_timer_at = NULL, wait_on_close = '{}', wait_on_failure = '{}', wait_on_all_closed = '{}', wait_busy = false,
         lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
       WHERE run_id = $1`,
      [a.runId, a.status, a.resultJson, a.errorJson, a.now, a.lastSeq],
    );
  }

  /** Blocks the run (non-determinism, corrupt journal): open but never due, until an operator acts. */
  async blockRun(q: Queryable, a: { runId: string; lastSeq: number; errorJson: string }): Promise<void> {
    await q.query(
      `UPDATE ${this.s}.runs SET
         status = 'blocked', error = $2::json, last_seq = $3, next_wakeup_at = NULL,
         wait_timer_at = NULL, wait_on_close = '{}', wait_on_failure = '{}', wait_on_all_closed = '{}', wait_busy = false,
         lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
       WHERE run_id = $1`,
      [a.runId, a.errorJson, a.lastSeq],
    );
  }

  /**
   * After a child closed (earlier in this transaction, so its new status is visible here): makes the parent due now
   * if its stored wait asks for this child's news, and notifies the wake. LEAST ignores NULL, so a parent with no
   * wake-up gets `now`, and one already due earlier keeps its earlier time. Returns whether the parent was woken.
   */
  async wakeParent(q: Queryable, a: { parentRunId: string; childRunId: string; failed: boolean; now: number }): Promise<boolean> {
    const r = await q.query(
      `WITH woke AS (
         UPDATE ${this.s}.runs p SET next_wakeup_at = LEAST(p.next_wakeup_at, $3::bigint)
         WHERE p.run_id = $1 AND p.status IN ('running', 'blocked') AND (
           $2 = ANY(p.wait_on_close)
           OR ($4::boolean AND $2 = ANY(p.wait_on_failure))
           OR ($2 = ANY(p.wait_on_all_closed) AND NOT EXISTS (
                 SELECT 1 FROM unnest(p.wait_on_all_closed) AS w(id)
                 WHERE NOT EXISTS (SELECT 1 FROM ${this.s}.runs c WHERE c.run_id = w.id AND c.status NOT IN ('running', 'blocked'))))
         )
         RETURNING p.run_id
       )
       SELECT run_id, pg_notify($5, run_id) FROM woke`,
      [a.parentRunId, a.childRunId, a.now, a.failed, this.channel],
    );
    return r.rowCount === 1;
  }

  // ---- wake-up listener ----

  async listen(q: Queryable): Promise<void> {
    await q.query(`LISTEN "${this.channel}"`);
  }
}
