import type { QueryResult, QueryResultRow } from 'pg';
import type { ParentClosePolicy } from '../../runtime/commands.js';
import { isOpen, type ChildOutcome, type ClosedStatus, type Inbox, type InboxSignal, type Lease, type RunRecord, type RunStall, type RunStatus, type WaitSpec, type WorkerHeartbeat, type WorkerInfo } from '../journal.js';
import type { SerializedError } from '../../runtime/errors.js';
import type { JournalEvent } from '../../runtime/events.js';
import type { StoredWaits } from '../../runtime/waits.js';

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

/** The channel of runs closed from outside (cancel, terminate, parent-close policy): `skein_stop` by default. */
export const stopChannel = (schema: string): string => `${schema}_stop`;

/** Channel on which a root run's close is announced (after its commit: PgJournal.announce; the name is `<schema>_closed`). */
export const closedChannel = (schema: string): string => `${schema}_closed`;

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
  lease_owner, lease_expires_at, next_wakeup_at, created_at, closed_at, result, error, continued_from, continued_to, last_seq,
  parent_close_policy, cancel_reason, cancel_deadline, cancel_requested_at, waits, stall, retry_of, retried_to`;

/**
 * A RunFilter's conditions on `r`, parameters $1-$11 (filterValues). A condition whose parameter is null is dropped by
 * the planner (parameters are bound per call), so each query uses the index of the filters it has, if they have one
 * (migrations 8 and 9), else the newest-first scan of runs_created_idx.
 * A workflow id prefix is a range of the bytewise-ordered workflow id, [prefix, prefixEnd(prefix)): a range scan of
 * runs_workflow_id_idx (bytewise, migration 9) that the planner can estimate from the statistics (starts_with keeps it exact).
 */
const FILTER = `($1::text IS NULL OR r.workflow = $1)
  AND ($2::text IS NULL OR r.queue = $2)
  AND ($3::text IS NULL OR r.parent_run_id = $3)
  AND ($4::text IS NULL OR (r.root_run_id = $4 AND r.root_run_id <> r.run_id) OR r.run_id = $4)
  AND ($5::text IS NULL OR r.workflow_id COLLATE "C" = $5)
  AND ($6::text IS NULL OR (r.workflow_id COLLATE "C" >= $6 AND ($7::text IS NULL OR r.workflow_id COLLATE "C" < $7) AND starts_with(r.workflow_id, $6)))
  AND ($8::bigint IS NULL OR r.created_at >= $8::bigint)
  AND ($9::bigint IS NULL OR r.created_at < $9::bigint)
  AND ($10::bigint IS NULL OR r.closed_at >= $10::bigint)
  AND ($11::bigint IS NULL OR r.closed_at < $11::bigint)`;

/** A RunFilter as the statements take it (no status: that is given apart). Times are whole milliseconds. */
export interface FilterParams {
  workflow?: string | undefined;
  queue?: string | undefined;
  parentRunId?: string | undefined;
  rootRunId?: string | undefined;
  workflowId?: string | undefined;
  workflowIdPrefix?: string | undefined;
  startedAfter?: number | undefined;
  startedBefore?: number | undefined;
  closedAfter?: number | undefined;
  closedBefore?: number | undefined;
}

/** $1-$11 of FILTER. */
function filterValues(f: FilterParams): unknown[] {
  const prefix = f.workflowIdPrefix ?? null;
  return [
    f.workflow ?? null,
    f.queue ?? null,
    f.parentRunId ?? null,
    f.rootRunId ?? null,
    f.workflowId ?? null,
    prefix,
    prefix === null ? null : prefixEnd(prefix),
    f.startedAfter ?? null,
    f.startedBefore ?? null,
    f.closedAfter ?? null,
    f.closedBefore ?? null,
  ];
}

/**
 * The least string above every string that starts with `prefix`, in code point order (PostgreSQL's COLLATE "C" on
 * UTF-8 compares bytes, which is the same order): the prefix with its last code point incremented (one that cannot be
 * is dropped first). Null when there is none (no upper bound).
 */
export function prefixEnd(prefix: string): string | null {
  const cps = Array.from(prefix);
  while (cps.length) {
    const last = cps.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) {
      const next = last + 1 >= 0xd800 && last + 1 <= 0xdfff ? 0xe000 : last + 1;
      return cps.join('') + String.fromCodePoint(next);
    }
  }
  return null;
}

/** The open statuses, as SQL (OPEN_STATUSES in journal.ts). */
const OPEN = `('running', 'blocked')`;

/** What a run closed from outside loses: its wait, its lease, its cancel request. */
const CLEARED = `next_wakeup_at = NULL,
         wait_timer_at = NULL, wait_on_close = '{}', wait_on_failure = '{}', wait_on_all_closed = '{}', wait_busy = false, wait_all_open = 0,
         wait_all_children = false, wait_fail_children = false,
         lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
         cancel_reason = NULL, cancel_deadline = NULL, cancel_requested_at = NULL, cancel_journaled = false, waits = NULL, stall = NULL`;

/**
 * The closing events of runs closed from outside (cancel, terminate, parent-close policy), as a SELECT over `rel`
 * (columns run_id, policy 'cancel'|'terminate', and `seqCol`, the run's last seq before the close): a cancelled run
 * gets CancelRequested then RunCancelled (forced), a terminated one RunTerminated, so every closed run's journal ends
 * with its closing event and says why (`reason`).
 */
const CLOSING_EVENTS = (rel: string, seqCol: string, reason: string, now: string): string => `
  SELECT run_id, ${seqCol} + 1, 'CancelRequested', json_build_object('reason', ${reason}, 'deadline', ${now}, 'closedAt', ${now}), ${now}
  FROM ${rel} WHERE policy <> 'terminate'
  UNION ALL
  SELECT run_id, ${seqCol} + 2, 'RunCancelled', json_build_object('reason', ${reason}, 'forced', true), ${now}
  FROM ${rel} WHERE policy <> 'terminate'
  UNION ALL
  SELECT run_id, ${seqCol} + 1, 'RunTerminated', json_build_object('reason', ${reason}), ${now}
  FROM ${rel} WHERE policy = 'terminate'`;

/** A run a batch closes: its fence point, its last events, the signals they journal, its close. */
export interface ClosingRun {
  runId: string;
  afterSeq: number;
  events: Array<{ type: string; json: string }>;
  /** Ids of the signals its events journal (SignalReceived): they leave its inbox. */
  received: string[];
  status: ClosedStatus;
  resultJson: string;
  errorJson: string | null;
}

/** The parameters of Sql.closingWrites for a batch: every run's events numbered after its fence point, its signals. */
function closingDocs(items: ClosingRun[]): { events: string; signalRuns: string[]; signalIds: string[] } {
  const events = items.flatMap((it) => it.events.map((e, i) => ({ runId: it.runId, seq: it.afterSeq + i + 1, type: e.type, json: e.json })));
  const signals = items.flatMap((it) => it.received.map((signalId) => ({ runId: it.runId, signalId })));
  return { events: eventsDocument(events), signalRuns: signals.map((x) => x.runId), signalIds: signals.map((x) => x.signalId) };
}

/** A batch close's row values, one array per column (for unnest): run id, status, result, error, last seq. */
function closedColumns(items: ClosingRun[]): [string[], ClosedStatus[], string[], Array<string | null>, number[]] {
  return [items.map((x) => x.runId), items.map((x) => x.status), items.map((x) => x.resultJson), items.map((x) => x.errorJson), items.map((x) => x.afterSeq + x.events.length)];
}

/** A batch close's SET list: status, result, error, last seq from `rel` (status, result, error, last_seq), close time `now`. */
function closedSet(rel: string, now: string): string {
  return `status = ${rel}.status, result = ${rel}.result::json, error = ${rel}.error::json, closed_at = ${now}, last_seq = ${rel}.last_seq, ${CLEARED}`;
}

/** A pending inbox row as acquireMany aggregates it. */
interface InboxSignalRow {
  signal_id: string;
  name: string;
  payload: unknown;
  sent_at: string | number;
  traceparent: string | null;
}

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
  parent_close_policy: ParentClosePolicy;
  cancel_reason: string | null;
  cancel_deadline: string | null;
  cancel_requested_at: string | null;
  waits: StoredWaits | null;
  stall: RunStall | null;
  retry_of: string | null;
  retried_to: string | null;
}

interface LeaseRow {
  run_id: string;
  lease_owner: string;
  lease_token: string;
  lease_expires_at: string;
  last_seq?: number;
  queue?: string;
  inbox_pending?: boolean;
  stall?: RunStall | null;
  previous_owner?: string | null;
  workflow_id?: string;
  workflow?: string;
  parent_run_id?: string | null;
  root_run_id?: string;
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
    parentClosePolicy: r.parent_close_policy,
    cancelRequest:
      r.cancel_requested_at === null
        ? null
        : { reason: r.cancel_reason ?? '', deadline: Number(r.cancel_deadline), requestedAt: Number(r.cancel_requested_at) },
    waits: r.waits ?? null,
    stall: r.stall ?? null,
    retryOf: r.retry_of,
    retriedTo: r.retried_to,
  };
}

const toLease = (r: LeaseRow): Lease => ({
  runId: r.run_id,
  owner: r.lease_owner,
  token: r.lease_token,
  expiresAt: Number(r.lease_expires_at),
  ...(r.last_seq !== undefined ? { lastSeq: r.last_seq } : {}),
  ...(r.queue !== undefined ? { queue: r.queue } : {}),
  ...(r.inbox_pending !== undefined ? { inboxPending: r.inbox_pending } : {}),
  ...(r.stall !== undefined ? { stall: r.stall } : {}),
  ...(r.previous_owner !== undefined ? { previousOwner: r.previous_owner } : {}),
  ...(r.root_run_id !== undefined
    ? { run: { workflowId: r.workflow_id!, workflow: r.workflow!, parentRunId: r.parent_run_id ?? null, rootRunId: r.root_run_id } }
    : {}),
});

/** The inbox columns of a lease statement (Sql.inboxColumns). */
interface InboxColumns {
  inbox_signals: InboxSignalRow[] | null;
  cancel_reason: string | null;
  cancel_deadline: string | number | null;
  cancel_requested_at: string | number | null;
}

/** A journal event as a lease statement brings it (Sql.historyOf). */
interface HistoryRow {
  seq: number;
  type: string;
  payload: unknown;
  recorded_at: string | number;
}

/**
 * claimDue brings the journals of the runs it leases when they hold at most this many events: a polled run rarely has
 * an engine in the claimer, so this saves two reads each, and a long journal is left for its holder to read.
 */
const CLAIM_HISTORY_MAX_EVENTS = 64;

/** The journal a lease brings (Lease.history), if the statement read it. */
function historyOf(x: { depth: number; history: HistoryRow[] | null }): Pick<Lease, 'history'> {
  if (!x.history) return {};
  return { history: { depth: x.depth, events: x.history.map((e) => ({ type: e.type, payload: e.payload, seq: e.seq, recordedAt: Number(e.recorded_at) }) as JournalEvent) } };
}

/** The pending inbox a lease brings: signals in send order, and a cancel request not yet journaled. */
function inboxOf(x: InboxColumns): Inbox {
  return {
    signals: (x.inbox_signals ?? []).map((sg) => ({ signalId: sg.signal_id, name: sg.name, payload: sg.payload, sentAt: Number(sg.sent_at), ...(sg.traceparent ? { traceparent: sg.traceparent } : {}) })),
    cancel: x.cancel_requested_at === null ? null : { reason: x.cancel_reason ?? '', deadline: Number(x.cancel_deadline), requestedAt: Number(x.cancel_requested_at) },
  };
}

/** The row of a run locked for a commit: what the fence and the children need. */
export interface LockedRun {
  runId: string;
  status: RunStatus;
  leaseToken: string | null;
  lastSeq: number;
  depth: number;
  rootRunId: string;
  parentRunId: string | null;
  callId: string | null;
  parentClosePolicy: ParentClosePolicy;
  /** The path of the activity the run is stalled on (RunRecord.stall), if any. */
  stallPath?: string | null;
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
  parentClosePolicy: ParentClosePolicy;
  /** When it is first due (null: at once). */
  startAt: number | null;
  /** The RunStarted payload, as JSON text. */
  startedJson: string;
  /** An inline child: inserted already closed (its events after RunStarted are inserted by the caller). */
  closed?: { status: ClosedStatus; resultJson: string; errorJson: string | null; lastSeq: number };
  /** Not leased, even when the statement leases new children (the worker has no room for it). */
  unleased?: boolean;
}

/**
 * Many events as ONE json document `[{"t": type, "p": payload, "r": run id, "s": seq}, ...]` for json_to_recordset.
 * The payloads are spliced in as the JSON text they already are: nothing is parsed or encoded again, and the
 * driver sends one string instead of escaping every element of text arrays (which cost more than the insert).
 * The json type keeps each payload's text as written (key order included).
 */
export function eventsDocument(rows: Array<{ type: string; json: string; runId?: string; seq?: number }>): string {
  let out = '[';
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (i) out += ',';
    out += '{"t":' + JSON.stringify(r.type) + ',"p":' + r.json;
    if (r.runId !== undefined) out += ',"r":' + JSON.stringify(r.runId) + ',"s":' + r.seq;
    out += '}';
  }
  return out + ']';
}

/**
 * New runs as one json document for json_to_recordset, JSON payloads spliced in as written: children (their parent and
 * root come with the statement) or root runs (`parentRunId`/`rootRunId` per row).
 */
function childrenDocument(children: Array<RunInsert & { parentRunId?: string | null; rootRunId?: string }>): string {
  const str = (v: string | null) => (v === null ? 'null' : JSON.stringify(v));
  let out = '[';
  for (let i = 0; i < children.length; i++) {
    const c = children[i]!;
    if (i) out += ',';
    out +=
      '{"run_id":' + str(c.runId) + ',"workflow_id":' + str(c.workflowId) + ',"workflow":' + str(c.workflow) +
      ',"input":' + c.inputJson + ',"call_id":' + str(c.callId) + ',"queue":' + str(c.queue) + ',"depth":' + c.depth +
      ',"started":' + c.startedJson + ',"policy":' + str(c.parentClosePolicy) + ',"start_at":' + (c.startAt ?? 'null') +
      ',"status":' + str(c.closed?.status ?? null) + ',"result":' + (c.closed ? c.closed.resultJson : 'null') +
      ',"error":' + (c.closed?.errorJson ?? 'null') + ',"last_seq":' + (c.closed?.lastSeq ?? 'null') +
      (c.rootRunId !== undefined ? ',"parent_run_id":' + str(c.parentRunId ?? null) + ',"root_run_id":' + str(c.rootRunId) : '') +
      (c.unleased ? ',"unleased":true' : '') + '}';
  }
  return out + ']';
}

/** One open child met by a cascade generation, and what became of it. */
export interface CascadeRow {
  runId: string;
  parentRunId: string;
  /** Closed by its parent-close policy (cancel/terminate), within the depth bound. */
  closed: boolean;
  /** Would have been closed, but it is deeper than the bound: left alone. */
  truncated: boolean;
}

/** A signal as the statements take it: the payload already JSON text. */
export interface SignalInsert {
  runId: string;
  signalId: string;
  name: string;
  payloadJson: string;
}

/** The statements of one schema. */
export class Sql {
  private readonly s: string;
  readonly channel: string;
  readonly stopChannel: string;
  readonly closedChannel: string;

  constructor(readonly schema: string) {
    assertSchemaName(schema);
    this.s = `"${schema}"`;
    this.channel = wakeChannel(schema);
    this.stopChannel = stopChannel(schema);
    this.closedChannel = closedChannel(schema);
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

  /**
   * The newest run of the workflow id: a continue-as-new chain and the retries of an instance share it, and the
   * newest is the one neither continued nor retried yet.
   */
  async runByWorkflowId(q: Queryable, workflowId: string): Promise<RunRecord | undefined> {
    const r = await q.query<RunRow>(
      `SELECT ${RUN_COLUMNS} FROM ${this.s}.runs WHERE workflow_id COLLATE "C" = $1
       ORDER BY continued_to IS NULL AND retried_to IS NULL DESC, created_at DESC, continued_from IS NULL
       LIMIT 1`,
      [workflowId],
    );
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

  /**
   * Children of the parent among the ids that closed or moved on. Each continue-as-new chain is followed to its
   * newest run, whose status is reported (`continued` is never an outcome): a chain that ended closed, or one that
   * moved to a run the parent has not seen yet (still open) so that it can journal ChildStarted. An unmoved open child
   * and a `continued` run without a successor are left out.
   */
  async childOutcomes(q: Queryable, parentRunId: string, childRunIds: string[]): Promise<ChildOutcome[]> {
    const r = await q.query<{ asked: string; run_id: string; call_id: string | null; status: RunStatus; result: unknown; error: SerializedError | null; closed_at: string | null }>(
      `WITH RECURSIVE chain AS (
         SELECT c.run_id AS asked, c.run_id, c.call_id, c.status, c.result, c.error, c.closed_at, c.continued_to, 0 AS hop
         FROM ${this.s}.runs c WHERE c.run_id = ANY($2::text[]) AND c.parent_run_id = $1
         UNION ALL
         SELECT ch.asked, n.run_id, n.call_id, n.status, n.result, n.error, n.closed_at, n.continued_to, ch.hop + 1
         FROM chain ch JOIN ${this.s}.runs n ON n.run_id = ch.continued_to
         WHERE ch.status = 'continued'
       )
       SELECT DISTINCT ON (asked) asked, run_id, call_id, status, result, error, closed_at FROM chain
       ORDER BY asked, hop DESC`,
      [parentRunId, childRunIds],
    );
    return r.rows
      .filter((c) => c.status !== 'continued' && !(isOpen(c.status) && c.run_id === c.asked))
      .map((c) => ({
        childRunId: c.asked,
        currentRunId: c.run_id,
        callId: c.call_id ?? '',
        status: c.status,
        result: c.result ?? null,
        error: c.error ?? null,
        closedAt: ms(c.closed_at) ?? 0,
      }));
  }

  /** Undelivered signals in send order, and the cancel request; undefined for an unknown run. */
  async inbox(q: Queryable, runId: string): Promise<{ signals: InboxSignal[]; cancel: RunRecord['cancelRequest'] } | undefined> {
    const r = await q.query<{ cancel_reason: string | null; cancel_deadline: string | null; cancel_requested_at: string | null; signals: InboxSignal[] }>(
      `SELECT r.cancel_reason, r.cancel_deadline, r.cancel_requested_at,
              (SELECT coalesce(json_agg(json_build_object('signalId', i.signal_id, 'name', i.name, 'payload', i.payload, 'sentAt', i.sent_at, 'traceparent', i.traceparent) ORDER BY i.seq), '[]')
               FROM ${this.s}.inbox i WHERE i.run_id = r.run_id AND NOT i.delivered) AS signals
       FROM ${this.s}.runs r WHERE r.run_id = $1`,
      [runId],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    return {
      signals: row.signals.map((x) => ({ signalId: x.signalId, name: x.name, payload: x.payload ?? null, sentAt: Number(x.sentAt), ...(x.traceparent ? { traceparent: x.traceparent } : {}) })),
      cancel:
        row.cancel_requested_at === null
          ? null
          : { reason: row.cancel_reason ?? '', deadline: Number(row.cancel_deadline), requestedAt: Number(row.cancel_requested_at) },
    };
  }

  // ---- runs and leases ----

  /**
   * Creates a root run with its RunStarted event, in one statement (the caller announces it after the commit, see
   * PgJournal.announce). Returns undefined when the run id
   * or workflow id is taken (ON CONFLICT covers both unique keys; it waits for a concurrent inserter to finish).
   */
  /**
   * Starts many runs in one statement (a client's concurrent starts, group-committed): each row is inserted unless its
   * run id or workflow id is taken (ON CONFLICT DO NOTHING), with its RunStarted event. Returns the runs inserted; the
   * caller resolves the others (an existing instance, or a refusal). Rows go in in workflow id order, so two batches
   * racing for the same ids wait on each other in one order and cannot deadlock. The caller lists a run id once.
   */
  async insertRootRuns(q: Queryable, runs: Array<RunInsert & { parentRunId: string | null; rootRunId: string }>, now: number): Promise<RunRecord[]> {
    const r = await q.query<RunRow>(
      `WITH v AS (
         SELECT * FROM json_to_recordset($1::json) AS v(run_id text, workflow_id text, workflow text, input json, call_id text, queue text,
                                                     depth integer, started json, policy text, start_at bigint, parent_run_id text, root_run_id text)
       ), ins AS (
         INSERT INTO ${this.s}.runs (run_id, workflow_id, workflow, status, input, parent_run_id, call_id, root_run_id, depth, queue,
                                     next_wakeup_at, created_at, last_seq, parent_close_policy)
         -- (json_to_recordset turns a JSON null into SQL NULL: a null input is the JSON value null)
         SELECT run_id, workflow_id, workflow, 'running', coalesce(input, 'null'::json), parent_run_id, call_id, root_run_id, depth, queue,
                coalesce(start_at, $2::bigint), $2::bigint, 1, policy
         FROM v ORDER BY workflow_id COLLATE "C", run_id COLLATE "C"
         ON CONFLICT DO NOTHING
         RETURNING ${RUN_COLUMNS}
       ), started AS (
         INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
         SELECT v.run_id, 1, 'RunStarted', v.started, $2::bigint FROM v JOIN ins ON ins.run_id = v.run_id
       )
       SELECT * FROM ins`,
      [childrenDocument(runs), now],
    );
    return r.rows.map(toRun);
  }

  async insertRootRun(q: Queryable, run: RunInsert & { parentRunId: string | null; rootRunId: string }, now: number): Promise<RunRecord | undefined> {
    const r = await q.query<RunRow>(
      `WITH ins AS (
         INSERT INTO ${this.s}.runs (run_id, workflow_id, workflow, status, input, parent_run_id, call_id, root_run_id, depth, queue,
                                     next_wakeup_at, created_at, last_seq, parent_close_policy)
         VALUES ($1, $2, $3, 'running', $4::json, $5, $6, $7, $8, $9, coalesce($12::bigint, $10::bigint), $10, 1, $13)
         ON CONFLICT DO NOTHING
         RETURNING ${RUN_COLUMNS}
       ), started AS (
         INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
         SELECT run_id, 1, 'RunStarted', $11::json, $10 FROM ins
       )
       SELECT ins.* FROM ins`,
      [
        run.runId,
        run.workflowId,
        run.workflow,
        run.inputJson,
        run.parentRunId,
        run.callId,
        run.rootRunId,
        run.depth,
        run.queue,
        now,
        run.startedJson,
        run.startAt,
        run.parentClosePolicy,
      ],
    );
    return r.rows[0] && toRun(r.rows[0]);
  }

  /**
   * Leases up to `limit` due runs of the queues in one statement. SKIP LOCKED lets concurrent claimers pass over rows
   * another claimer is taking, so two workers never get the same run and never wait on each other. With `workflows`,
   * only runs of those workflows (a worker's registered ones); with `activities`, a run stalled on an activity not
   * among them is left to others until `graceMs` after its next attempt (see ClaimOptions). The parameters are bound
   * per call (unnamed statements), so the planner sees a null list and drops its condition.
   */
  async claimDue(
    q: Queryable,
    o: { owner: string; queues: string[]; limit: number; leaseMs: number; now: number; workflows?: string[]; activities?: { names: string[]; graceMs: number } },
  ): Promise<Lease[]> {
    // (`picked` also says who held each lease before, for the claimer's "taken over" log line)
    const r = await q.query<LeaseRow & InboxColumns & { next_wakeup_at: string; depth: number; created_at: string; history: HistoryRow[] | null }>(
      `WITH picked AS (${o.workflows ? this.dueByWorkflow() : this.dueAny()})
       UPDATE ${this.s}.runs runs
       SET lease_owner = $1, lease_token = gen_random_uuid()::text, lease_expires_at = $2::bigint + $3::bigint
       FROM picked WHERE runs.run_id = picked.run_id
       RETURNING runs.run_id, runs.lease_owner, lease_token, lease_expires_at, next_wakeup_at, depth, created_at, last_seq, queue, stall,
                 ${this.inboxPendingOf('runs')} AS inbox_pending, picked.previous_owner,
                 workflow_id, workflow, parent_run_id, root_run_id, ${this.inboxColumns('runs')},
                 -- short journals come with the lease (most polled runs have no engine in the claimer: saves two reads
                 -- each); a long one is read by the holder if it needs it
                 CASE WHEN runs.last_seq <= ${CLAIM_HISTORY_MAX_EVENTS} THEN ${this.historyOf('runs')} END AS history`,
      [o.owner, o.now, o.leaseMs, o.queues, o.limit, o.workflows ?? null, o.activities?.names ?? null, Math.ceil(o.activities?.graceMs ?? 0)],
    );
    // RETURNING has no order: hand the leases out oldest due first, shallowest first, like the memory journal.
    const rows = r.rows.sort(
      (a, b) =>
        Number(a.next_wakeup_at) - Number(b.next_wakeup_at) ||
        a.depth - b.depth ||
        Number(a.created_at) - Number(b.created_at) ||
        (a.run_id < b.run_id ? -1 : 1),
    );
    return rows.map((x) => ({ ...toLease(x), inbox: inboxOf(x), ...historyOf(x) }));
  }

  /** What makes a run claimable by claimDue ($2 now, $7 activity names, $8 stall grace; `runs` unaliased). */
  private claimable(): string {
    return `status = 'running' AND next_wakeup_at <= $2::bigint
           AND (lease_token IS NULL OR lease_expires_at <= $2::bigint)
           AND ($7::text[] IS NULL OR stall IS NULL OR stall->>'activity' = ANY($7::text[])
                OR (stall->>'nextAttemptAt')::bigint + $8::bigint <= $2::bigint)`;
  }

  /**
   * The due runs of the claimer's queues and workflows, oldest due first: one ordered range of runs_due_idx (queue,
   * workflow, next_wakeup_at) per queue and workflow, at most `limit` each, merged. A single scan over several
   * workflows cannot come out of the index in due order, so it read and sorted every due run (a 100,000-child fan-out:
   * 50 ms per claim, spilling to disk, for 128 runs). A range may lock up to `limit` rows the merge then leaves: they
   * are released when the statement commits, and other claimers skip them meanwhile.
   */
  private dueByWorkflow(): string {
    return `SELECT d.run_id, d.previous_owner FROM unnest($4::text[]) AS qn(queue) CROSS JOIN unnest($6::text[]) AS wf(workflow)
         CROSS JOIN LATERAL (
           SELECT run_id, lease_owner AS previous_owner, next_wakeup_at, depth, created_at FROM ${this.s}.runs
           WHERE queue = qn.queue AND workflow = wf.workflow AND ${this.claimable()}
           ORDER BY next_wakeup_at
           LIMIT $5
           FOR UPDATE SKIP LOCKED
         ) d
         ORDER BY d.next_wakeup_at, d.depth, d.created_at
         LIMIT $5`;
  }

  /** Due runs of any workflow (a claim without a workflow list: tools, tests), oldest due first, shallowest first. */
  private dueAny(): string {
    return `SELECT run_id, lease_owner AS previous_owner FROM ${this.s}.runs
         WHERE queue = ANY($4::text[]) AND ${this.claimable()} AND $6::text[] IS NULL
         ORDER BY next_wakeup_at, depth, created_at
         LIMIT $5
         FOR UPDATE SKIP LOCKED`;
  }

  /** Leases one run (see leaseRuns: it waits for the row if a commit holds it); the lease brings the run's inbox. */
  async acquire(q: Queryable, runId: string, owner: string, leaseMs: number, now: number, queues?: string[], workflows?: string[]): Promise<Lease | undefined> {
    return (await this.leaseRuns(q, [runId], 'wait', owner, leaseMs, now, queues, workflows)).leases[0];
  }

  /**
   * Leases the runs among `runIds` that are open, free (or expired) and on the given queues/workflows, in one
   * statement; each lease carries what its holder needs without another read: journal head, queue, stall, the
   * previous owner (a take-over), the run's ids, and its pending inbox (signals in send order, and a cancel request
   * not yet journaled). `lock`: 'wait' waits for rows a commit holds (one run: acquire()); 'skip' passes over them
   * (SKIP LOCKED) and returns them as `locked`: waiting for several rows at once, in an order that is not parent before
   * child, could deadlock with a commit that locks a parent and then its children. Rows that are merely not eligible
   * (closed, held by someone else) are neither leased nor `locked`.
   */
  async leaseRuns(
    q: Queryable,
    runIds: string[],
    lock: 'wait' | 'skip',
    owner: string,
    leaseMs: number,
    now: number,
    queues?: string[],
    workflows?: string[],
    withHistory?: readonly string[],
  ): Promise<{ leases: Lease[]; locked: string[] }> {
    type Leased = LeaseRow &
      InboxColumns & {
      depth: number;
      history: HistoryRow[] | null;
    };
    const r = await q.query<{ leases: Leased[] | null; locked: string[] | null }>(
      `WITH prev AS (
         SELECT run_id, lease_owner FROM ${this.s}.runs WHERE run_id = ANY($1::text[]) FOR UPDATE ${lock === 'skip' ? 'SKIP LOCKED' : ''}
       ), up AS (
         UPDATE ${this.s}.runs runs
         SET lease_owner = $2, lease_token = gen_random_uuid()::text, lease_expires_at = $3::bigint + $4::bigint
         FROM prev
         WHERE runs.run_id = prev.run_id AND status = 'running' AND (lease_token IS NULL OR lease_expires_at <= $3::bigint)
           AND ($5::text[] IS NULL OR queue = ANY($5::text[]))
           AND ($6::text[] IS NULL OR workflow = ANY($6::text[]))
         RETURNING runs.run_id, runs.lease_owner, lease_token, lease_expires_at, last_seq, queue, stall, ${this.inboxPendingOf('runs')} AS inbox_pending,
                   prev.lease_owner AS previous_owner, workflow_id, workflow, parent_run_id, root_run_id,
                   ${this.inboxColumns('runs')},
                   runs.depth,
                   CASE WHEN runs.run_id = ANY($7::text[]) THEN ${this.historyOf('runs')} END AS history
       )
       SELECT (SELECT json_agg(up) FROM up) AS leases,
              (SELECT array_agg(r.run_id) FROM ${this.s}.runs r WHERE r.run_id = ANY($1::text[]) AND r.run_id NOT IN (SELECT run_id FROM prev)) AS locked`,
      [runIds, owner, now, leaseMs, queues ?? null, workflows ?? null, withHistory?.length ? withHistory : null],
    );
    const row = r.rows[0]!;
    const leases = (row.leases ?? []).map((x): Lease => ({
      ...toLease(x),
      ...historyOf(x),
      inbox: inboxOf(x),
    }));
    return { leases, locked: row.locked ?? [] };
  }

  /**
   * Whether run `t` has open children (its close applies their parent-close policies), skipped when `childless` (SQL
   * boolean) says it never started one: a table where one parent has most rows as children makes the planner scan the
   * whole table for every other run's children (a 100,000-child fan-out spent 30 ms per batch of closes on it).
   */
  private openChildrenOf(t: string, childless: string): string {
    // (a run that continued from another inherits that run's open children: it never started them, yet has them)
    return `CASE WHEN ${childless} AND ${t}.continued_from IS NULL THEN false ELSE EXISTS (SELECT 1 FROM ${this.s}.runs k WHERE k.parent_run_id = ${t}.run_id AND k.status IN ${OPEN}) END`;
  }

  /** The run's journal as a json array, for a lease statement's RETURNING (`t`: the runs table's alias; see historyOf). */
  private historyOf(t: string): string {
    return `(SELECT json_agg(json_build_object('seq', e.seq, 'type', e.type, 'payload', e.payload, 'recorded_at', e.recorded_at) ORDER BY e.seq)
              FROM ${this.s}.events e WHERE e.run_id = ${t}.run_id)`;
  }

  /** The run's pending inbox as columns of a lease statement's RETURNING (`t`: the runs table's alias; see inboxOf). */
  private inboxColumns(t: string): string {
    return `(SELECT json_agg(json_build_object('signal_id', i.signal_id, 'name', i.name, 'payload', i.payload, 'sent_at', i.sent_at, 'traceparent', i.traceparent) ORDER BY i.seq)
              FROM ${this.s}.inbox i WHERE i.run_id = ${t}.run_id AND NOT i.delivered) AS inbox_signals,
            CASE WHEN NOT ${t}.cancel_journaled THEN ${t}.cancel_reason END AS cancel_reason,
            CASE WHEN NOT ${t}.cancel_journaled THEN ${t}.cancel_deadline END AS cancel_deadline,
            CASE WHEN NOT ${t}.cancel_journaled THEN ${t}.cancel_requested_at END AS cancel_requested_at`;
  }

  /** Whether signals or an unjournaled cancel request wait for the run (`t`: the runs table's alias). */
  private inboxPendingOf(t: string): string {
    return `(EXISTS (SELECT 1 FROM ${this.s}.inbox i WHERE i.run_id = ${t}.run_id AND NOT i.delivered)
             OR (${t}.cancel_requested_at IS NOT NULL AND NOT ${t}.cancel_journaled))`;
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

  /**
   * Extends every lease whose token still holds its run, in one statement. Rows another transaction holds (the run's
   * own commit, a cascade) are skipped, not waited for (waiting for many rows in no particular order could deadlock
   * with a commit that locks a parent, then its children); they are renewed at the next beat. Returns the runs
   * renewed, and the runs whose token no longer holds (read without a lock: taken over, released, closed).
   */
  async renewMany(q: Queryable, leases: Lease[], leaseMs: number, now: number): Promise<{ renewed: string[]; lost: string[] }> {
    const r = await q.query<{ run_id: string; renewed: boolean }>(
      `WITH v AS (
         SELECT * FROM unnest($1::text[], $2::text[]) AS v(run_id, token)
       ), free AS (
         SELECT r.run_id FROM ${this.s}.runs r JOIN v ON v.run_id = r.run_id
         WHERE r.lease_token = v.token AND r.status = 'running'
         FOR UPDATE OF r SKIP LOCKED
       ), up AS (
         UPDATE ${this.s}.runs r SET lease_expires_at = $3::bigint + $4::bigint FROM free WHERE r.run_id = free.run_id
         RETURNING r.run_id
       )
       SELECT run_id, true AS renewed FROM up
       UNION ALL
       SELECT v.run_id, false FROM v LEFT JOIN ${this.s}.runs r ON r.run_id = v.run_id
       WHERE r.run_id IS NULL OR r.lease_token IS DISTINCT FROM v.token OR r.status <> 'running'`,
      [leases.map((l) => l.runId), leases.map((l) => l.token), now, leaseMs],
    );
    return { renewed: r.rows.filter((x) => x.renewed).map((x) => x.run_id), lost: r.rows.filter((x) => !x.renewed).map((x) => x.run_id) };
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
   * everywhere, so a closing child and its parent's own commit cannot deadlock. The parent id is read without a lock,
   * in the same statement. It changes only when the parent continues as new and moves its open children, so the
   * caller compares it with the parent id of the locked run (see lockRow). Returns the id locked (null: none).
   */
  async lockParentOf(q: Queryable, runId: string): Promise<string | null> {
    const r = await q.query<{ run_id: string }>(
      `SELECT p.run_id FROM ${this.s}.runs p
       WHERE p.run_id = (SELECT c.parent_run_id FROM ${this.s}.runs c WHERE c.run_id = $1)
       FOR UPDATE OF p`,
      [runId],
    );
    return r.rows[0]?.run_id ?? null;
  }

  /** Locks one run row (a parent that moved under a locked child: the rare case after lockParentOf). */
  async lockRow(q: Queryable, runId: string): Promise<void> {
    await q.query(`SELECT 1 FROM ${this.s}.runs WHERE run_id = $1 FOR UPDATE`, [runId]);
  }

  /** Locks the run for the rest of the transaction; the caller checks the lease token and seq against it. */
  async lockRun(q: Queryable, runId: string): Promise<LockedRun | undefined> {
    const r = await q.query<{
      status: RunStatus;
      lease_token: string | null;
      last_seq: number;
      depth: number;
      root_run_id: string;
      parent_run_id: string | null;
      call_id: string | null;
      parent_close_policy: ParentClosePolicy;
      stall_path: string | null;
    }>(
      `SELECT status, lease_token, last_seq, depth, root_run_id, parent_run_id, call_id, parent_close_policy, stall->>'path' AS stall_path
       FROM ${this.s}.runs WHERE run_id = $1 FOR UPDATE`,
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
        callId: row.call_id,
        parentClosePolicy: row.parent_close_policy,
        stallPath: row.stall_path,
      }
    );
  }

  /** Sets (or, with null, clears) the run's stall: a commit that stalls the run, or journals the stalled result. */
  async setStall(q: Queryable, runId: string, stallJson: string | null): Promise<void> {
    await q.query(`UPDATE ${this.s}.runs SET stall = $2::json WHERE run_id = $1`, [runId, stallJson]);
  }

  /**
   * Appends events with seqs afterSeq+1, afterSeq+2, ... in one statement. Signals the events journal as SignalReceived
   * (`received`) leave the run's inbox in the same statement (their ids stay recorded, so a re-send is a no-op).
   */
  async insertEvents(
    q: Queryable,
    runId: string,
    afterSeq: number,
    events: Array<{ type: string; json: string }>,
    now: number,
    received: string[] = [],
  ): Promise<void> {
    const insert = `INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
       SELECT $1, $2::integer + e.ord, e.t, e.p, $3
       FROM ROWS FROM (json_to_recordset($4::json) AS (t text, p json)) WITH ORDINALITY AS e(t, p, ord)`;
    const values: unknown[] = [runId, afterSeq, now, eventsDocument(events)];
    if (!received.length) {
      await q.query(insert, values);
      return;
    }
    await q.query(
      `WITH appended AS (${insert}), taken AS (
         UPDATE ${this.s}.inbox SET delivered = true WHERE run_id = $1 AND signal_id = ANY($5::text[]) AND NOT delivered
       )
       SELECT 1`,
      [...values, received],
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
         -- one json document, payloads spliced in as written (see eventsDocument)
         SELECT * FROM json_to_recordset($1::json) AS k(
             run_id text, workflow_id text, workflow text, input json, call_id text, queue text, depth integer, started json,
             policy text, start_at bigint, status text, result json, error json, last_seq integer, unleased boolean)
       ), ins AS (
         -- An inline child (status given) goes in closed: no lease, never due. The others are open and due, at once
         -- or (a retry after its backoff) at start_at; only those due now are leased to the parent's worker: an attempt
         -- never starts before its start_at, whoever runs it.
         INSERT INTO ${this.s}.runs (run_id, workflow_id, workflow, status, input, parent_run_id, call_id, root_run_id, depth, queue,
                                     lease_owner, lease_token, lease_expires_at, next_wakeup_at, created_at, last_seq, parent_close_policy,
                                     result, error, closed_at)
         -- (json_to_recordset turns a JSON null into SQL NULL: a null input is the JSON value null)
         SELECT run_id, workflow_id, workflow, coalesce(status, 'running'), coalesce(input, 'null'::json), $2, call_id, $3, depth, queue,
                CASE WHEN status IS NULL AND unleased IS NULL AND coalesce(start_at, $6::bigint) <= $6::bigint THEN $4::text END,
                CASE WHEN status IS NULL AND unleased IS NULL AND coalesce(start_at, $6::bigint) <= $6::bigint AND $4::text IS NOT NULL THEN gen_random_uuid()::text END,
                CASE WHEN status IS NULL AND unleased IS NULL AND coalesce(start_at, $6::bigint) <= $6::bigint AND $4::text IS NOT NULL THEN $5::bigint END,
                CASE WHEN status IS NULL THEN coalesce(start_at, $6::bigint) END, $6::bigint, coalesce(last_seq, 1), policy,
                CASE WHEN status IS NULL THEN NULL ELSE coalesce(result, 'null'::json) END, error,
                CASE WHEN status IS NULL THEN NULL ELSE $6::bigint END
         -- in key order: neighbouring rows land on neighbouring index pages (100,000 children: ~20% faster than in
         -- the parent's order, whose derived run ids are random)
         FROM kid ORDER BY run_id
         ON CONFLICT DO NOTHING
         RETURNING run_id, lease_owner, lease_token, lease_expires_at
       ), started AS (
         INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
         SELECT ins.run_id, 1, 'RunStarted', kid.started, $6::bigint FROM ins JOIN kid ON kid.run_id = ins.run_id
       )
       SELECT run_id, lease_owner, lease_token, lease_expires_at FROM ins`,
      [childrenDocument(children), parent.runId, parent.rootRunId, lease?.owner ?? null, lease?.expiresAt ?? null, now],
    );
    return r.rows.map((row) => ({
      runId: row.run_id,
      lease: row.lease_token === null ? null : toLease(row as LeaseRow),
    }));
  }

  /** The runs holding these run ids or workflow ids: why some children were not inserted. */
  async runsByIds(q: Queryable, runIds: string[], workflowIds: string[]): Promise<Array<{ runId: string; workflowId: string; workflow: string }>> {
    const r = await q.query<{ run_id: string; workflow_id: string; workflow: string }>(
      `SELECT run_id, workflow_id, workflow FROM ${this.s}.runs WHERE run_id = ANY($1::text[]) OR workflow_id COLLATE "C" = ANY($2::text[])`,
      [runIds, workflowIds],
    );
    return r.rows.map((x) => ({ runId: x.run_id, workflowId: x.workflow_id, workflow: x.workflow }));
  }

  /**
   * Announces runs (comma-joined chunks under the NOTIFY payload limit), in one statement: on the wake channel (`wake`:
   * they became due), the stop channel (`stop`: closed from outside) and the closed channel (`closed`: root runs that
   * closed, for Client.result). Inside a transaction they are delivered when it commits; the journal sends them after
   * its writing transactions instead (PgJournal.announce: a NOTIFY in a writing transaction serialises commits).
   */
  async notify(q: Queryable, wake: string[], stop: string[] = [], closed: string[] = []): Promise<void> {
    if (!wake.length && !stop.length && !closed.length) return;
    const chunks = [
      ...notifyChunks(stop).map((c) => [this.stopChannel, c] as const),
      ...notifyChunks(wake).map((c) => [this.channel, c] as const),
      ...notifyChunks(closed).map((c) => [this.closedChannel, c] as const),
    ];
    await q.query(`SELECT pg_notify(c.channel, c.chunk) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS c(channel, chunk, ord) ORDER BY c.ord`, [
      chunks.map((c) => c[0]),
      chunks.map((c) => c[1]),
    ]);
  }

  /**
   * Records how the run waits and when it is next due, optionally giving up the lease. The due time is computed here
   * against the children's current status, so a child that closed before this wait was recorded is not missed:
   *  busy -> now; a closed child in onClose, a failed one in onFailure, or all of onAllClosed closed -> now; else the
   *  timer (or null). This mirrors MemoryJournal.dueTime. A signal still in the inbox, or a cancel request not yet
   *  journaled (`cancelJournaled`: this commit journals CancelRequested), also makes it due now; then the run is to be
   *  announced, which the returned boolean says. The inbox is read after this commit's SignalReceived took signals out.
   */
  async suspendRun(q: Queryable, a: { runId: string; lastSeq: number; wait: WaitSpec; release: boolean; now: number; cancelJournaled: boolean; waitsJson: string | null }): Promise<boolean> {
    // A signal or cancel request that arrived while the run was busy makes it due now, and announced (returned true).
    const pending = `(EXISTS (SELECT 1 FROM ${this.s}.inbox i WHERE i.run_id = r.run_id AND NOT i.delivered)
             OR (r.cancel_requested_at IS NOT NULL AND NOT (r.cancel_journaled OR $10::boolean)))`;
    const res = await q.query<{ announce: boolean }>(
      `UPDATE ${this.s}.runs r SET
         last_seq = $2,
         cancel_journaled = r.cancel_journaled OR $10::boolean,
         wait_timer_at = $3::bigint,
         wait_on_close = $4::text[],
         -- (a list that covers every open child of the run is stored as a flag: migration 11)
         wait_on_failure = CASE WHEN kids.fail_all THEN '{}' ELSE $5::text[] END,
         wait_on_all_closed = CASE WHEN kids.all_all THEN '{}' ELSE $6::text[] END,
         wait_fail_children = kids.fail_all,
         wait_all_children = kids.all_all,
         wait_all_open = ao.n,
         wait_busy = $7::boolean,
         next_wakeup_at = CASE
           WHEN $7::boolean THEN $8::bigint
           WHEN ${pending} THEN $8::bigint
           -- (each list tested only when it has members: the planner folds the test away for an empty one, where
           -- it otherwise chose, on a table it had no statistics for yet, to read a whole index to match nothing)
           WHEN (cardinality($4::text[]) > 0 AND EXISTS (SELECT 1 FROM ${this.s}.runs c WHERE c.run_id = ANY($4::text[]) AND c.status NOT IN ('running', 'blocked')))
             OR (cardinality($5::text[]) > 0 AND EXISTS (SELECT 1 FROM ${this.s}.runs c WHERE c.run_id = ANY($5::text[]) AND c.status NOT IN ('running', 'blocked', 'completed')))
             OR (cardinality($6::text[]) > 0 AND ao.n = 0)
             THEN $8::bigint
           ELSE $3::bigint
         END,
         lease_owner = CASE WHEN $9::boolean THEN NULL ELSE r.lease_owner END,
         lease_token = CASE WHEN $9::boolean THEN NULL ELSE r.lease_token END,
         lease_expires_at = CASE WHEN $9::boolean THEN NULL ELSE r.lease_expires_at END,
         waits = coalesce($11::json, r.waits)
       FROM (SELECT CASE WHEN cardinality($6::text[]) = 0 THEN 0
                         ELSE (SELECT count(*)::int FROM ${this.s}.runs c WHERE c.run_id = ANY($6::text[]) AND c.status IN ('running', 'blocked')) END AS n) AS ao,
            -- whether the lists name every open child of the run (the run is locked: no child of it appears meanwhile)
            (SELECT cardinality($6::text[]) > 0 AND count(*) FILTER (WHERE c.run_id = ANY($6::text[])) = count(*) AS all_all,
                    cardinality($5::text[]) > 0 AND count(*) FILTER (WHERE c.run_id = ANY($5::text[])) = count(*) AS fail_all
             FROM ${this.s}.runs c WHERE c.parent_run_id = $1 AND c.status IN ('running', 'blocked')) AS kids
       WHERE r.run_id = $1
       RETURNING ${pending.replace('$10::boolean', 'false')} AS announce`,
      [a.runId, a.lastSeq, a.wait.timerAt, a.wait.onClose, a.wait.onFailure, a.wait.onAllClosed, a.wait.busy, a.now, a.release, a.cancelJournaled, a.waitsJson],
    );
    return res.rows[0]?.announce === true;
  }

  /**
   * Closes the run: terminal status, result/error, close time; no wait, no lease, no cancel request; `continuedTo`
   * for continue-as-new. Returns whether the run has open children (their parent-close policies then apply). The
   * run is locked since the start of the commit and only its own commits create its children, so the answer holds.
   */
  async closeRun(
    q: Queryable,
    a: { runId: string; lastSeq: number; status: ClosedStatus; resultJson: string; errorJson: string | null; now: number; continuedTo?: string | null; childless?: boolean },
  ): Promise<{ hasOpenChildren: boolean }> {
    const r = await q.query<{ open_children: boolean }>(
      `UPDATE ${this.s}.runs r SET
         status = $2, result = $3::json, error = $4::json, closed_at = $5, last_seq = $6, continued_to = $7, ${CLEARED}
       WHERE r.run_id = $1
       RETURNING ${this.openChildrenOf('r', '$8::boolean')} AS open_children`,
      [a.runId, a.status, a.resultJson, a.errorJson, a.now, a.lastSeq, a.continuedTo ?? null, !!a.childless],
    );
    return { hasOpenChildren: r.rows[0]?.open_children === true };
  }

  /** Blocks the run (non-determinism, corrupt journal): open but never due, until an operator acts. */
  async blockRun(q: Queryable, a: { runId: string; lastSeq: number; errorJson: string; cancelJournaled: boolean }): Promise<void> {
    await q.query(
      `UPDATE ${this.s}.runs SET
         status = 'blocked', error = $2::json, last_seq = $3, next_wakeup_at = NULL, cancel_journaled = cancel_journaled OR $4::boolean,
         wait_timer_at = NULL, wait_on_close = '{}', wait_on_failure = '{}', wait_on_all_closed = '{}', wait_busy = false,
         wait_all_children = false, wait_fail_children = false,
         lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, waits = NULL, stall = NULL
       WHERE run_id = $1`,
      [a.runId, a.errorJson, a.lastSeq, a.cancelJournaled],
    );
  }

  /**
   * After a child closed (earlier in this transaction, so its new status is visible here): makes the parent due now
   * if its stored wait asks for this child's news. LEAST ignores NULL, so a parent with no wake-up gets `now`, and one
   * already due earlier keeps its earlier time. Returns whether the parent was woken (the caller announces it).
   */
  async wakeParent(q: Queryable, a: { parentRunId: string; childRunId: string; failed: boolean; now: number }): Promise<boolean> {
    const woke = await this.wakeParents(q, [{ parentRunId: a.parentRunId, childRunId: a.childRunId, failed: a.failed }], a.now);
    return woke.length === 1;
  }

  /**
   * The set-based form, for a batch of closes (several may share a parent): each parent's count of open runs in
   * wait_on_all_closed drops by its closing children in that set, and the parent is made due when a child is in
   * wait_on_close, a failed one in wait_on_failure, or the count reaches 0. Returns the parents woken (not notified).
   */
  async wakeParents(q: Queryable, closes: { parentRunId: string; childRunId: string; failed: boolean }[], now: number): Promise<string[]> {
    if (!closes.length) return [];
    const r = await q.query<{ run_id: string }>(
      `WITH c AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[]) AS c(parent_id, child_id, failed)
       ), agg AS (
         SELECT p.run_id,
                count(*) FILTER (WHERE p.wait_all_children OR c.child_id = ANY(p.wait_on_all_closed))::int AS all_hits,
                bool_or(c.child_id = ANY(p.wait_on_close) OR (c.failed AND (p.wait_fail_children OR c.child_id = ANY(p.wait_on_failure)))) AS direct
         FROM ${this.s}.runs p JOIN c ON c.parent_id = p.run_id
         WHERE p.status IN ${OPEN}
         GROUP BY p.run_id
       ), upd AS (
         UPDATE ${this.s}.runs p SET
           wait_all_open = p.wait_all_open - agg.all_hits,
           next_wakeup_at = CASE
             WHEN agg.direct OR (agg.all_hits > 0 AND p.wait_all_open - agg.all_hits <= 0) THEN LEAST(p.next_wakeup_at, $4::bigint)
             ELSE p.next_wakeup_at END
         FROM agg
         WHERE p.run_id = agg.run_id AND (agg.direct OR agg.all_hits > 0)
         RETURNING p.run_id, (agg.direct OR (agg.all_hits > 0 AND p.wait_all_open <= 0)) AS woke
       )
       SELECT run_id FROM upd WHERE woke`,
      [closes.map((c) => c.parentRunId), closes.map((c) => c.childRunId), closes.map((c) => c.failed), now],
    );
    return r.rows.map((x) => x.run_id);
  }

  /**
   * A plain close as ONE statement (its own transaction: one round trip, one WAL flush): lock the parent, then the
   * run; fence it (token, status, journal head) and check it has no open children (those need the parent-close
   * cascade: the caller then takes the general path); append the events, close the run, update the parent's wait
   * counter and wake it per its stored wait (the caller announces it). Nothing is written unless the fence holds.
   */
  async closeAlone(
    q: Queryable,
    a: ClosingRun & { token: string; now: number; childless: boolean },
  ): Promise<{ written: boolean; me: { status: RunStatus; lease_token: string | null; last_seq: number; has_kids: boolean; root: boolean } | null; woke: string | null }> {
    const docs = closingDocs([a]);
    const r = await q.query<{ written: boolean; me: { status: RunStatus; lease_token: string | null; last_seq: number; has_kids: boolean; root: boolean } | null; woke: string | null }>(
      `WITH parent AS (
         SELECT p.run_id FROM ${this.s}.runs p
         WHERE p.run_id = (SELECT c.parent_run_id FROM ${this.s}.runs c WHERE c.run_id = $1) FOR UPDATE OF p
       ), me AS (
         SELECT r.run_id, r.status, r.lease_token, r.last_seq, r.parent_run_id, ${this.openChildrenOf('r', '$12::boolean')} AS has_kids
         FROM ${this.s}.runs r WHERE r.run_id = $1 AND (SELECT count(*) FROM parent) >= 0 FOR UPDATE OF r
       ), ok AS (
         SELECT * FROM me WHERE lease_token = $2 AND status = 'running' AND last_seq = $3 AND NOT has_kids
       ), ${this.closingWrites('ok', '$4', '$5', '$6', '$11')}, cl AS (
         UPDATE ${this.s}.runs r SET status = $7, result = $8::json, error = $9::json, closed_at = $4, last_seq = $13, ${CLEARED}
         FROM ok WHERE r.run_id = ok.run_id
         RETURNING r.run_id
       ), wake AS (
         -- The statement's snapshot may predate a wait the parent committed while we waited for its lock. The WHERE
         -- therefore only names the row (true in every version), so the update is re-applied to the newest version
         -- (READ COMMITTED re-evaluation), and every condition on the wait lives in the SET list, evaluated on it.
         UPDATE ${this.s}.runs p SET
           wait_all_open = CASE WHEN p.status IN ${OPEN} AND (p.wait_all_children OR $1 = ANY(p.wait_on_all_closed)) THEN p.wait_all_open - 1 ELSE p.wait_all_open END,
           next_wakeup_at = CASE
             WHEN p.status IN ${OPEN} AND ($1 = ANY(p.wait_on_close) OR ($10::boolean AND (p.wait_fail_children OR $1 = ANY(p.wait_on_failure)))
                                         OR ((p.wait_all_children OR $1 = ANY(p.wait_on_all_closed)) AND p.wait_all_open <= 1))
             THEN LEAST(p.next_wakeup_at, $4::bigint) ELSE p.next_wakeup_at END
         FROM ok
         WHERE p.run_id = ok.parent_run_id
         RETURNING p.run_id,
           (p.status IN ${OPEN} AND ($1 = ANY(p.wait_on_close) OR ($10::boolean AND (p.wait_fail_children OR $1 = ANY(p.wait_on_failure)))
                                 OR ((p.wait_all_children OR $1 = ANY(p.wait_on_all_closed)) AND p.wait_all_open <= 0))) AS woke
       )
       SELECT EXISTS (SELECT 1 FROM cl) AS written,
              (SELECT json_build_object('status', me.status, 'lease_token', me.lease_token, 'last_seq', me.last_seq, 'has_kids', me.has_kids,
                                        'root', me.parent_run_id IS NULL) FROM me) AS me,
              (SELECT run_id FROM wake WHERE woke) AS woke`,
      [a.runId, a.token, a.afterSeq, a.now, docs.events, docs.signalRuns, a.status, a.resultJson, a.errorJson, a.status !== 'completed', docs.signalIds, a.childless, a.afterSeq + a.events.length],
    );
    const row = r.rows[0]!;
    return { written: row.written, me: row.me, woke: row.woke };
  }

  /**
   * Closes root runs that never started a child, many in one statement and one round trip (a group commit of
   * independent workflows finishing together): locks the runs in run id order, fences each (token, status, journal
   * head) and writes only those that pass: their events, the signals they journaled taken out of the inboxes, the
   * close. Runs that fail the fence are left untouched, and so are runs that are not plain roots after all (a parent,
   * or a predecessor whose open children they inherited): `plain` false, for the caller's transactional path.
   */
  async closeRootsTogether(
    q: Queryable,
    items: Array<ClosingRun & { token: string }>,
    now: number,
  ): Promise<Map<string, { written: boolean; plain: boolean; status: RunStatus; leaseToken: string | null; lastSeq: number }>> {
    const docs = closingDocs(items);
    const r = await q.query<{ run_id: string; status: RunStatus; lease_token: string | null; last_seq: number; plain: boolean; written: boolean }>(
      `WITH v AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::text[], $7::integer[])
           AS v(run_id, status, result, error, last_seq, token, after_seq)
       ), me AS (
         SELECT r.run_id, r.status, r.lease_token, r.last_seq, r.parent_run_id IS NULL AND r.continued_from IS NULL AS plain
         FROM ${this.s}.runs r WHERE r.run_id IN (SELECT run_id FROM v)
         ORDER BY r.run_id COLLATE "C"
         FOR UPDATE
       ), ok AS (
         SELECT v.* FROM v JOIN me ON me.run_id = v.run_id
         WHERE me.plain AND me.lease_token = v.token AND me.status = 'running' AND me.last_seq = v.after_seq
       ), ${this.closingWrites('ok', '$8', '$9', '$10', '$11')}, cl AS (
         UPDATE ${this.s}.runs r SET ${closedSet('ok', '$8')}
         FROM ok WHERE r.run_id = ok.run_id
         RETURNING r.run_id
       )
       SELECT me.run_id, me.status, me.lease_token, me.last_seq, me.plain, EXISTS (SELECT 1 FROM cl WHERE cl.run_id = me.run_id) AS written
       FROM me`,
      [
        ...closedColumns(items),
        items.map((x) => x.token),
        items.map((x) => x.afterSeq),
        now,
        docs.events,
        docs.signalRuns,
        docs.signalIds,
      ],
    );
    return new Map(r.rows.map((x) => [x.run_id, { written: x.written, plain: x.plain, status: x.status, leaseToken: x.lease_token, lastSeq: x.last_seq }]));
  }

  /** Locks the parents of these runs (parent before child), in run id order so concurrent batches never deadlock. */
  async lockParentsOf(q: Queryable, runIds: string[]): Promise<void> {
    await q.query(
      `SELECT p.run_id FROM ${this.s}.runs p
       WHERE p.run_id IN (SELECT c.parent_run_id FROM ${this.s}.runs c WHERE c.run_id = ANY($1::text[]) AND c.parent_run_id IS NOT NULL)
       ORDER BY p.run_id FOR UPDATE OF p`,
      [runIds],
    );
  }

  /** Locks these runs (after their parents), in run id order; the caller fences each against its lease. */
  async lockRuns(q: Queryable, runIds: string[]): Promise<Map<string, { status: RunStatus; leaseToken: string | null; lastSeq: number; parentRunId: string | null }>> {
    const r = await q.query<{ run_id: string; status: RunStatus; lease_token: string | null; last_seq: number; parent_run_id: string | null }>(
      `SELECT run_id, status, lease_token, last_seq, parent_run_id FROM ${this.s}.runs
       WHERE run_id = ANY($1::text[]) ORDER BY run_id FOR UPDATE`,
      [runIds],
    );
    return new Map(r.rows.map((x) => [x.run_id, { status: x.status, leaseToken: x.lease_token, lastSeq: x.last_seq, parentRunId: x.parent_run_id }]));
  }

  /** Appends the events of several runs in one statement: (run id, seq, type, payload) rows. */
  async insertEventsMany(q: Queryable, rows: { runId: string; seq: number; type: string; json: string }[], now: number): Promise<void> {
    if (!rows.length) return;
    await q.query(
      `INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
       SELECT e.r, e.s, e.t, e.p, $2 FROM json_to_recordset($1::json) AS e(r text, s integer, t text, p json)`,
      [eventsDocument(rows), now],
    );
  }

  /**
   * Closes several runs (locked and fenced by the caller) in one statement, which also appends their last events and
   * takes the signals those journal out of the inboxes (a group commit's writes, one round trip); returns the runs that
   * have open children (their policies then apply).
   */
  async closeRuns(q: Queryable, items: Array<ClosingRun & { childless: boolean }>, now: number): Promise<string[]> {
    if (!items.length) return [];
    const docs = closingDocs(items);
    const r = await q.query<{ run_id: string; open_children: boolean }>(
      `WITH v AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[], $7::boolean[]) AS v(run_id, status, result, error, last_seq, childless)
       ), ${this.closingWrites('v', '$6', '$8', '$9', '$10')}
       UPDATE ${this.s}.runs r SET ${closedSet('v', '$6')}
       FROM v WHERE r.run_id = v.run_id
       RETURNING r.run_id, ${this.openChildrenOf('r', 'v.childless')} AS open_children`,
      [
        ...closedColumns(items),
        now,
        items.map((x) => x.childless),
        docs.events,
        docs.signalRuns,
        docs.signalIds,
      ],
    );
    return r.rows.filter((x) => x.open_children).map((x) => x.run_id);
  }

  /**
   * The writes every close of a batch makes besides its row, as two CTEs: its last events appended, and the signals
   * they journal taken out of its inbox; only for the runs in `rel` (the ones that passed their fence). `now`, the
   * events document (closingDocs) and the signals' run ids and ids are the statement's parameters named.
   */
  private closingWrites(rel: string, now: string, events: string, signalRuns: string, signalIds: string): string {
    return `ev AS (
         INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
         SELECT e.r, e.s, e.t, e.p, ${now} FROM json_to_recordset(${events}::json) AS e(r text, s integer, t text, p json)
         WHERE e.r IN (SELECT run_id FROM ${rel})
       ), taken AS (
         UPDATE ${this.s}.inbox i SET delivered = true
         FROM unnest(${signalRuns}::text[], ${signalIds}::text[]) AS t(run_id, signal_id)
         WHERE i.run_id = t.run_id AND i.signal_id = t.signal_id AND NOT i.delivered AND t.run_id IN (SELECT run_id FROM ${rel})
       )`;
  }

  // ---- continue-as-new ----

  /**
   * Continue-as-new, after the previous run was closed as `continued` (continued_to set) in this transaction: creates
   * the next run (same workflow id, parent, call id, root, depth and parent-close policy; continued_from set) with its
   * RunStarted event, moves the previous run's open children and undelivered signals to it, and rewrites the parent's
   * stored wait so that it waits on the new run where it waited on the old one. One statement. The previous run and
   * its parent are locked by the commit already; the children are locked here, after them (parent before child).
   */
  async continueRun(
    q: Queryable,
    prev: { runId: string; parentRunId: string | null; callId: string | null; rootRunId: string; depth: number; parentClosePolicy: ParentClosePolicy },
    next: { runId: string; workflowId: string; workflow: string; inputJson: string; queue: string; startedJson: string; startAt: number | null },
    now: number,
  ): Promise<void> {
    await q.query(
      `WITH ins AS (
         INSERT INTO ${this.s}.runs (run_id, workflow_id, workflow, status, input, parent_run_id, call_id, root_run_id, depth, queue,
                                     next_wakeup_at, created_at, last_seq, parent_close_policy, continued_from)
         VALUES ($2, $3, $4, 'running', $5::json, $6, $7, $8, $9, $10, coalesce($14::bigint, $11::bigint), $11, 1, $12, $1)
         RETURNING run_id
       ), started AS (
         INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
         SELECT run_id, 1, 'RunStarted', $13::json, $11 FROM ins
       ), moved AS (
         UPDATE ${this.s}.runs c SET parent_run_id = $2 WHERE c.parent_run_id = $1 AND c.status IN ${OPEN}
       ), signals AS (
         UPDATE ${this.s}.inbox SET run_id = $2 WHERE run_id = $1 AND NOT delivered
       ), waiter AS (
         UPDATE ${this.s}.runs p SET
           wait_on_close = array_replace(p.wait_on_close, $1, $2),
           wait_on_failure = array_replace(p.wait_on_failure, $1, $2),
           wait_on_all_closed = array_replace(p.wait_on_all_closed, $1, $2)
         WHERE p.run_id = $6 AND ($1 = ANY(p.wait_on_close) OR $1 = ANY(p.wait_on_failure) OR $1 = ANY(p.wait_on_all_closed))
       )
       SELECT run_id FROM ins`,
      [
        prev.runId,
        next.runId,
        next.workflowId,
        next.workflow,
        next.inputJson,
        prev.parentRunId,
        prev.callId,
        prev.rootRunId,
        prev.depth,
        next.queue,
        now,
        prev.parentClosePolicy,
        next.startedJson,
        next.startAt,
      ],
    );
  }

  // ---- signals ----

  /**
   * A client's signal, in one statement: locks the run, puts the signal in its inbox unless that signal id was ever
   * accepted and makes the run due now (the caller announces it after the commit). The lock makes the status check and
   * the insert atomic with
   * respect to a commit closing the run. Returns the run's status (undefined: unknown run) and whether the signal is new.
   */
  async signal(q: Queryable, runId: string, sg: { signalId: string; name: string; payloadJson: string; traceparent?: string | null }, now: number): Promise<{ status: RunStatus; added: boolean } | undefined> {
    const r = await q.query<{ status: RunStatus; added: boolean }>(
      `WITH target AS (
         SELECT run_id, status FROM ${this.s}.runs WHERE run_id = $1 FOR UPDATE
       ), ins AS (
         INSERT INTO ${this.s}.inbox (run_id, signal_id, name, payload, sent_at, traceparent)
         SELECT run_id, $2, $3, $4::json, $5, $6 FROM target WHERE status IN ${OPEN}
         ON CONFLICT DO NOTHING
         RETURNING run_id
       ), woke AS (
         UPDATE ${this.s}.runs r SET next_wakeup_at = LEAST(r.next_wakeup_at, $5::bigint)
         FROM ins WHERE r.run_id = ins.run_id
         RETURNING r.run_id
       )
       SELECT t.status, w.run_id IS NOT NULL AS added
       FROM target t LEFT JOIN woke w ON true`,
      [runId, sg.signalId, sg.name, sg.payloadJson, now, sg.traceparent ?? null],
    );
    return r.rows[0] && { status: r.rows[0].status, added: r.rows[0].added };
  }

  /**
   * signal() for many signals in one statement (a client's concurrent signals, group-committed), each answered as
   * signal() answers it: its target's status (undefined: no such run) and whether it was added (new, target open).
   * Targets are locked in run id order (no deadlock with another batch or a commit); signals to one run go into its
   * inbox in the order given.
   */
  async signalMany(q: Queryable, sgs: Array<{ runId: string; signalId: string; name: string; payloadJson: string; traceparent?: string | null }>, now: number): Promise<Array<{ status: RunStatus; added: boolean } | undefined>> {
    const r = await q.query<{ ord: string; status: RunStatus | null; added: boolean }>(
      `WITH sg AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $6::text[]) WITH ORDINALITY AS s(run_id, signal_id, name, payload, traceparent, ord)
       ), target AS (
         SELECT r.run_id, r.status FROM ${this.s}.runs r
         WHERE r.run_id IN (SELECT run_id FROM sg)
         ORDER BY r.run_id COLLATE "C"
         FOR UPDATE
       ), ins AS (
         INSERT INTO ${this.s}.inbox (run_id, signal_id, name, payload, sent_at, traceparent)
         SELECT sg.run_id, sg.signal_id, sg.name, sg.payload::json, $5, sg.traceparent FROM sg JOIN target t ON t.run_id = sg.run_id
         WHERE t.status IN ${OPEN}
         ORDER BY sg.ord
         ON CONFLICT DO NOTHING
         RETURNING run_id, signal_id
       ), woke AS (
         UPDATE ${this.s}.runs r SET next_wakeup_at = LEAST(r.next_wakeup_at, $5::bigint)
         FROM (SELECT DISTINCT run_id FROM ins) i WHERE r.run_id = i.run_id
         RETURNING r.run_id
       )
       SELECT sg.ord, t.status, EXISTS (SELECT 1 FROM ins WHERE ins.run_id = sg.run_id AND ins.signal_id = sg.signal_id) AS added
       FROM sg LEFT JOIN target t ON t.run_id = sg.run_id
       ORDER BY sg.ord`,
      [sgs.map((x) => x.runId), sgs.map((x) => x.signalId), sgs.map((x) => x.name), sgs.map((x) => x.payloadJson), now, sgs.map((x) => x.traceparent ?? null)],
    );
    return r.rows.map((x) => (x.status === null ? undefined : { status: x.status, added: x.added }));
  }

  /**
   * Signals from a commit to other runs' inboxes, in one statement whatever their number: exactly once by signal id;
   * a closed or missing target drops its signal. The targets are locked (in run id order) so that none closes between
   * the check and the insert. Returns the runs that got a new signal (made due now; the caller announces them).
   */
  async deliverSignals(q: Queryable, signals: SignalInsert[], now: number): Promise<string[]> {
    const r = await q.query<{ run_id: string }>(
      `WITH sg AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS s(run_id, signal_id, name, payload, ord)
       ), target AS (
         SELECT r.run_id FROM ${this.s}.runs r
         WHERE r.run_id IN (SELECT run_id FROM sg) AND r.status IN ${OPEN}
         ORDER BY r.run_id COLLATE "C"
         FOR UPDATE
       ), ins AS (
         INSERT INTO ${this.s}.inbox (run_id, signal_id, name, payload, sent_at)
         SELECT sg.run_id, sg.signal_id, sg.name, sg.payload::json, $5 FROM sg JOIN target t ON t.run_id = sg.run_id
         ORDER BY sg.ord
         ON CONFLICT DO NOTHING
         RETURNING run_id
       )
       UPDATE ${this.s}.runs r SET next_wakeup_at = LEAST(r.next_wakeup_at, $5::bigint)
       WHERE r.run_id IN (SELECT run_id FROM ins)
       RETURNING r.run_id`,
      [signals.map((x) => x.runId), signals.map((x) => x.signalId), signals.map((x) => x.name), signals.map((x) => x.payloadJson), now],
    );
    return r.rows.map((x) => x.run_id);
  }

  // ---- cancel, terminate, parent-close policies ----

  /**
   * Locks a run that is about to be cancelled, and its parent before it (parent before child: the cancel may close
   * the run and then wake the parent), in one statement: rows are locked in the ORDER BY order. Returns the run's
   * status and parent, or undefined for an unknown run.
   */
  async lockForCancel(q: Queryable, runId: string): Promise<{ status: RunStatus; parentRunId: string | null; parentLocked: boolean } | undefined> {
    const r = await q.query<{ run_id: string; status: RunStatus; parent_run_id: string | null }>(
      `SELECT r.run_id, r.status, r.parent_run_id FROM ${this.s}.runs r
       WHERE r.run_id = $1 OR r.run_id = (SELECT c.parent_run_id FROM ${this.s}.runs c WHERE c.run_id = $1)
       ORDER BY r.run_id = $1
       FOR UPDATE OF r`,
      [runId],
    );
    const row = r.rows.find((x) => x.run_id === runId);
    return row && { status: row.status, parentRunId: row.parent_run_id, parentLocked: r.rows.some((x) => x.run_id === row.parent_run_id) };
  }

  /**
   * A graceful cancel: records the request (an earlier one is kept, with its deadline) and makes the run due now.
   * The lease is voided, so an activation computed before the request (which might start a child) cannot commit:
   * nothing started concurrently escapes the cascade. Whoever takes the run next journals the request first.
   */
  async requestCancel(q: Queryable, runId: string, a: { reason: string; deadline: number; now: number }): Promise<void> {
    await q.query(
      `UPDATE ${this.s}.runs SET
         cancel_reason = CASE WHEN cancel_requested_at IS NULL THEN $2 ELSE cancel_reason END,
         cancel_deadline = CASE WHEN cancel_requested_at IS NULL THEN $3::bigint ELSE cancel_deadline END,
         cancel_requested_at = coalesce(cancel_requested_at, $4::bigint),
         next_wakeup_at = $4::bigint,
         lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
       WHERE run_id = $1`,
      [runId, a.reason, a.deadline, a.now],
    );
  }

  /** Closes a run from outside (cancel, terminate): no more appends, its lease is void. */
  async closeFromOutside(q: Queryable, runId: string, a: { status: 'cancelled' | 'terminated'; errorJson: string; reason: string; now: number }): Promise<void> {
    // The journal ends with the closing event (and, for a cancel, the request), appended by this same statement.
    await q.query(
      `WITH closed AS (
         UPDATE ${this.s}.runs r SET status = $2, error = $3::json, closed_at = $4,
           last_seq = r.last_seq + CASE WHEN $2 = 'terminated' THEN 1 ELSE 2 END, ${CLEARED}
         WHERE run_id = $1
         RETURNING r.run_id, r.last_seq - CASE WHEN $2 = 'terminated' THEN 1 ELSE 2 END AS last_seq,
           CASE WHEN $2 = 'terminated' THEN 'terminate' ELSE 'cancel' END AS policy
       )
       INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
       ${CLOSING_EVENTS('closed', 'last_seq', '$5::text', '$4::bigint')}`,
      [runId, a.status, a.errorJson, a.now, a.reason],
    );
  }

  /**
   * Resumes a blocked run: RunResumed appended, status running, error cleared, due now. Returns the status the run
   * had (undefined: unknown run); nothing changes unless it was blocked.
   */
  async resume(q: Queryable, runId: string, reason: string, now: number): Promise<{ status: RunStatus; resumed: boolean } | undefined> {
    const r = await q.query<{ status: RunStatus; resumed: boolean }>(
      `WITH me AS (
         SELECT run_id, status, last_seq FROM ${this.s}.runs WHERE run_id = $1 FOR UPDATE
       ), up AS (
         UPDATE ${this.s}.runs r SET status = 'running', error = NULL, last_seq = me.last_seq + 1, next_wakeup_at = $3::bigint,
           lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
         FROM me WHERE r.run_id = me.run_id AND me.status = 'blocked'
         RETURNING r.run_id, me.last_seq
       ), ev AS (
         INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
         SELECT run_id, last_seq + 1, 'RunResumed', json_build_object('reason', $2::text), $3::bigint FROM up
       )
       SELECT me.status, EXISTS (SELECT 1 FROM up) AS resumed FROM me`,
      [runId, reason, now],
    );
    return r.rows[0];
  }

  /**
   * Closes children the run stopped waiting for (child timeouts), per the policy the parent gives for each
   * (`abandon` leaves it): only open children of this parent. Locked in run id order. Returns the runs closed.
   */
  async closeChildren(q: Queryable, parentRunId: string, kids: Array<{ runId: string; policy: ParentClosePolicy }>, errorJson: string, reason: string, now: number): Promise<string[]> {
    const r = await q.query<{ run_id: string }>(
      `WITH k AS (
         SELECT c.run_id, c.last_seq, x.policy FROM ${this.s}.runs c
         JOIN unnest($2::text[], $3::text[]) AS x(run_id, policy) ON x.run_id = c.run_id
         WHERE c.parent_run_id = $1 AND c.status IN ${OPEN} AND x.policy <> 'abandon'
         ORDER BY c.run_id COLLATE "C"
         FOR UPDATE OF c
       ), closed AS (
         UPDATE ${this.s}.runs r SET
           status = CASE WHEN k.policy = 'terminate' THEN 'terminated' ELSE 'cancelled' END, error = $4::json, closed_at = $5,
           last_seq = r.last_seq + CASE WHEN k.policy = 'terminate' THEN 1 ELSE 2 END, ${CLEARED}
         FROM k WHERE r.run_id = k.run_id
         RETURNING r.run_id, k.last_seq, k.policy
       ), ev AS (
         INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
         ${CLOSING_EVENTS('closed', 'last_seq', '$6::text', '$5::bigint')}
       )
       SELECT run_id FROM closed`,
      [parentRunId, kids.map((k) => k.runId), kids.map((k) => k.policy), errorJson, now, reason],
    );
    return r.rows.map((x) => x.run_id);
  }

  /**
   * One generation of a cascade, in one statement. `parents` are runs this transaction has locked (and usually
   * closed). Their open children are locked FOR UPDATE, in run id order; each with policy cancel/terminate within
   * `maxDepth` is closed as cancelled/terminated (error CancelledError/TerminatedError carrying `reason`), its lease
   * and wait cleared; one deeper than the bound is left alone (truncated). ParentClosePolicyApplied is appended to each
   * parent that is closed (an open parent's journal belongs to its lease holder), for every child the policy was
   * applied to, in creation order, and the parent's last_seq moved on.
   *
   * A child created concurrently by a parent's commit cannot escape: that commit holds the parent's row lock, which
   * the previous generation (or the caller) took before this statement; this statement starts after it committed,
   * so its snapshot sees the child.
   */
  async cascadeGeneration(q: Queryable, parents: string[], maxDepth: number, reason: string, now: number): Promise<CascadeRow[]> {
    const r = await q.query<{ run_id: string; parent_run_id: string; closed: boolean; truncated: boolean }>(
      `WITH kids AS (
         SELECT c.run_id, c.parent_run_id, c.call_id, c.depth, c.parent_close_policy AS policy, c.created_at, c.last_seq
         FROM ${this.s}.runs c
         WHERE c.parent_run_id = ANY($1::text[]) AND c.status IN ${OPEN}
         ORDER BY c.run_id COLLATE "C"
         FOR UPDATE
       ), closed AS (
         UPDATE ${this.s}.runs r SET
           status = CASE WHEN k.policy = 'terminate' THEN 'terminated' ELSE 'cancelled' END,
           error = json_build_object('name', CASE WHEN k.policy = 'terminate' THEN 'TerminatedError' ELSE 'CancelledError' END, 'message', $3::text),
           closed_at = $4, last_seq = r.last_seq + CASE WHEN k.policy = 'terminate' THEN 1 ELSE 2 END, ${CLEARED}
         FROM kids k WHERE r.run_id = k.run_id AND k.policy <> 'abandon' AND k.depth <= $2
         RETURNING r.run_id, k.last_seq, k.policy
       ), closing AS (
         INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
         ${CLOSING_EVENTS('closed', 'last_seq', '$3::text', '$4::bigint')}
       ), notes AS (
         SELECT k.parent_run_id, k.run_id, k.call_id, k.policy, p.last_seq,
                row_number() OVER (PARTITION BY k.parent_run_id ORDER BY k.created_at, k.run_id COLLATE "C") AS n
         FROM kids k JOIN ${this.s}.runs p ON p.run_id = k.parent_run_id
         WHERE p.status NOT IN ${OPEN} AND NOT (k.policy <> 'abandon' AND k.depth > $2)
       ), appended AS (
         INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
         SELECT parent_run_id, last_seq + n, 'ParentClosePolicyApplied',
                json_build_object('childRunId', run_id, 'callId', coalesce(call_id, ''), 'policy', policy), $4
         FROM notes
       ), moved AS (
         UPDATE ${this.s}.runs p SET last_seq = p.last_seq + x.count
         FROM (SELECT parent_run_id, count(*)::int AS count FROM notes GROUP BY parent_run_id) x
         WHERE p.run_id = x.parent_run_id
       )
       SELECT run_id, parent_run_id, policy <> 'abandon' AND depth <= $2 AS closed, policy <> 'abandon' AND depth > $2 AS truncated
       FROM kids
       ORDER BY array_position($1::text[], parent_run_id), created_at, run_id COLLATE "C"`,
      [parents, maxDepth, reason, now],
    );
    return r.rows.map((x) => ({ runId: x.run_id, parentRunId: x.parent_run_id, closed: x.closed, truncated: x.truncated }));
  }

  // ---- operating: listings, descendants, retries, workers (docs/operating.md; indexes in migrations 8 and 9) ----

  /**
   * A page of runs matching the filter, newest first (created_at, run_id descending), `limit` at most, after the
   * cursor's (created_at, run_id). Keyset pagination: the cursor condition is a row comparison on the last columns of
   * the filter's index (migrations 8, 9), so every page is one backward index range scan, never an OFFSET that re-reads
   * what came before. Several statuses: one such scan per status (a subquery each, `limit` at most), merged. The
   * parameters are bound per call (each status its own), so the planner sees the values: it drops the conditions
   * whose parameter is null and picks, from the statistics, the index of the most selective of the others.
   */
  async listRuns(q: Queryable, f: FilterParams, page: { statuses: RunStatus[] | null; after: { createdAt: number; runId: string } | null; limit: number }): Promise<RunRecord[]> {
    const cursor = `($12::bigint IS NULL OR (r.created_at, r.run_id COLLATE "C") < ($12::bigint, $13::text COLLATE "C"))`;
    const order = `ORDER BY created_at DESC, run_id COLLATE "C" DESC`;
    const values: unknown[] = [...filterValues(f), page.after?.createdAt ?? null, page.after?.runId ?? null, page.limit];
    const scan = (status: string) => `SELECT ${RUN_COLUMNS} FROM ${this.s}.runs r WHERE ${status}${FILTER} AND ${cursor} ${order} LIMIT $14`;
    let text = scan('');
    if (page.statuses?.length === 1) text = scan(`r.status = $${values.push(page.statuses[0]!)} AND `);
    else if (page.statuses) {
      const parts = page.statuses.map((st) => `(${scan(`r.status = $${values.push(st)} AND `)})`);
      text = `SELECT * FROM (${parts.join(' UNION ALL ')}) p ${order} LIMIT $14`;
    }
    const r = await q.query<RunRow>(text, values);
    return r.rows.map(toRun);
  }

  /** Counts of the runs matching the filter, by status. */
  async countRuns(q: Queryable, f: FilterParams, statuses: RunStatus[] | null): Promise<Array<{ status: RunStatus; count: number }>> {
    const r = await q.query<{ status: RunStatus; count: string }>(
      `SELECT r.status, count(*) AS count FROM ${this.s}.runs r
       WHERE ($12::text[] IS NULL OR r.status = ANY($12::text[])) AND ${FILTER}
       GROUP BY r.status`,
      [...filterValues(f), statuses],
    );
    return r.rows.map((x) => ({ status: x.status, count: Number(x.count) }));
  }

  /**
   * A page of a root's tree, breadth first (depth, created_at, run_id), depths in (`fromDepth`, `toDepth`], after the
   * cursor: one range scan of runs_root_idx from the cursor. (Below a root that never continued as new, every run of
   * its tree is its descendant; Journal.listDescendants walks the parent links for any other run: childKeys.)
   */
  async treePage(
    q: Queryable,
    a: { rootRunId: string; fromDepth: number; toDepth: number; after: { depth: number; createdAt: number; runId: string } | null; limit: number },
  ): Promise<RunRecord[]> {
    const r = await q.query<RunRow>(
      `SELECT ${RUN_COLUMNS} FROM ${this.s}.runs r
       WHERE r.root_run_id = $1 AND r.root_run_id <> r.run_id AND r.depth > $2::integer AND r.depth <= $3::integer
         AND ($4::integer IS NULL OR (r.depth, r.created_at, r.run_id COLLATE "C") > ($4::integer, $5::bigint, $6::text COLLATE "C"))
       ORDER BY r.depth, r.created_at, r.run_id COLLATE "C"
       LIMIT $7`,
      [a.rootRunId, a.fromDepth, a.toDepth, a.after?.depth ?? null, a.after?.createdAt ?? null, a.after?.runId ?? null, a.limit],
    );
    return r.rows.map(toRun);
  }

  /**
   * The children of these runs, as keys (run id, parent, created_at): read from runs_parent_idx alone (an index-only
   * scan: the key holds all three), one level of a walk down a tree.
   */
  async childKeys(q: Queryable, parentRunIds: string[]): Promise<Array<{ runId: string; parentRunId: string; createdAt: number }>> {
    const r = await q.query<{ run_id: string; parent_run_id: string; created_at: string }>(
      `SELECT run_id, parent_run_id, created_at FROM ${this.s}.runs WHERE parent_run_id = ANY($1::text[])`,
      [parentRunIds],
    );
    return r.rows.map((x) => ({ runId: x.run_id, parentRunId: x.parent_run_id, createdAt: Number(x.created_at) }));
  }

  /** The runs with these ids (in no order). */
  async runsByIdList(q: Queryable, runIds: string[]): Promise<RunRecord[]> {
    const r = await q.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM ${this.s}.runs WHERE run_id = ANY($1::text[])`, [runIds]);
    return r.rows.map(toRun);
  }

  /**
   * Locks a run about to be retried, and reads the execution timeout its RunStarted carried (so the retry gets the
   * same duration). Undefined for an unknown run.
   */
  async lockForRetry(q: Queryable, runId: string): Promise<{ run: RunRecord; deadline: number | null } | undefined> {
    const r = await q.query<RunRow & { started_deadline: string | null }>(
      `SELECT ${RUN_COLUMNS},
              (SELECT e.payload->>'deadline' FROM ${this.s}.events e WHERE e.run_id = r.run_id AND e.seq = 1) AS started_deadline
       FROM ${this.s}.runs r WHERE r.run_id = $1 FOR UPDATE`,
      [runId],
    );
    const row = r.rows[0];
    return row && { run: toRun(row), deadline: row.started_deadline === null ? null : Number(row.started_deadline) };
  }

  /**
   * Creates the retry of a locked, closed root run, in one statement: the new run (same workflow id, workflow, input
   * text and queue; retry_of set), its RunStarted (built here around the stored input, so its text is kept as
   * written), retried_to on the old run, and the announcement. Returns the new run.
   */
  async insertRetry(q: Queryable, a: { prevRunId: string; runId: string; now: number; deadline: number | null; retryJson: string; traceJson?: string | null }): Promise<RunRecord> {
    const r = await q.query<RunRow>(
      `WITH prev AS (
         SELECT run_id, workflow_id, workflow, input, queue FROM ${this.s}.runs WHERE run_id = $1
       ), ins AS (
         INSERT INTO ${this.s}.runs (run_id, workflow_id, workflow, status, input, parent_run_id, call_id, root_run_id, depth, queue,
                                     next_wakeup_at, created_at, last_seq, parent_close_policy, retry_of)
         SELECT $2, workflow_id, workflow, 'running', input, NULL, NULL, $2, 0, queue, $3::bigint, $3::bigint, 1, 'cancel', run_id FROM prev
         RETURNING ${RUN_COLUMNS}
       ), started AS (
         -- the keys of runStartedPayload, in its order: workflow, workflowId, input, depth, deadline, retry, trace
         INSERT INTO ${this.s}.events (run_id, seq, type, payload, recorded_at)
         SELECT $2, 1, 'RunStarted',
                CASE WHEN $4::bigint IS NULL AND $7::json IS NULL
                  THEN json_build_object('workflow', workflow, 'workflowId', workflow_id, 'input', input, 'depth', 0, 'retry', $5::json)
                  WHEN $7::json IS NULL
                  THEN json_build_object('workflow', workflow, 'workflowId', workflow_id, 'input', input, 'depth', 0, 'deadline', $4::bigint, 'retry', $5::json)
                  WHEN $4::bigint IS NULL
                  THEN json_build_object('workflow', workflow, 'workflowId', workflow_id, 'input', input, 'depth', 0, 'retry', $5::json, 'trace', $7::json)
                  ELSE json_build_object('workflow', workflow, 'workflowId', workflow_id, 'input', input, 'depth', 0, 'deadline', $4::bigint, 'retry', $5::json, 'trace', $7::json)
                END, $3::bigint
         FROM prev
       ), marked AS (
         UPDATE ${this.s}.runs SET retried_to = $2 WHERE run_id = $1
       )
       SELECT ins.*, pg_notify($6, ins.run_id) FROM ins`,
      [a.prevRunId, a.runId, a.now, a.deadline, a.retryJson, this.channel, a.traceJson ?? null],
    );
    return toRun(r.rows[0]!);
  }

  /**
   * A worker's heartbeat: its row created or refreshed (last seen now). A row of an earlier process with the same id
   * (another started_at) is taken over and no longer stopped; the same process stays stopped once it said so. Rows not
   * seen for `retentionMs` are deleted in the same statement.
   */
  async workerHeartbeat(q: Queryable, w: WorkerHeartbeat, now: number, retentionMs: number): Promise<void> {
    await q.query(
      `WITH pruned AS (
         DELETE FROM ${this.s}.workers WHERE last_seen_at < $11::bigint - $12::bigint AND worker_id <> $1
       )
       INSERT INTO ${this.s}.workers AS w (worker_id, host, pid, queues, workflows, activities, concurrency, active_runs, interval_ms, started_at, last_seen_at)
       VALUES ($1, $2, $3, $4::text[], $5::text[], $6::text[], $7, $8, $9, $10, $11)
       ON CONFLICT (worker_id) DO UPDATE SET
         host = EXCLUDED.host, pid = EXCLUDED.pid, queues = EXCLUDED.queues, workflows = EXCLUDED.workflows,
         activities = EXCLUDED.activities, concurrency = EXCLUDED.concurrency, active_runs = EXCLUDED.active_runs,
         interval_ms = EXCLUDED.interval_ms, last_seen_at = EXCLUDED.last_seen_at,
         stopped_at = CASE WHEN w.started_at = EXCLUDED.started_at THEN w.stopped_at END,
         started_at = EXCLUDED.started_at`,
      [w.workerId, w.host, w.pid, w.queues, w.workflows, w.activities, w.concurrency, w.activeRuns, w.heartbeatIntervalMs, w.startedAt, now, retentionMs],
    );
  }

  async workerStopped(q: Queryable, workerId: string, now: number): Promise<void> {
    await q.query(`UPDATE ${this.s}.workers SET stopped_at = $2, last_seen_at = $2 WHERE worker_id = $1`, [workerId, now]);
  }

  /** Workers seen since `since`, as stored (the caller says which are gone). */
  async listWorkers(q: Queryable, since: number): Promise<Array<Omit<WorkerInfo, 'status'>>> {
    const r = await q.query<{
      worker_id: string;
      host: string;
      pid: number;
      queues: string[];
      workflows: string[];
      activities: string[];
      concurrency: number;
      active_runs: number;
      interval_ms: number;
      started_at: string;
      last_seen_at: string;
      stopped_at: string | null;
    }>(`SELECT * FROM ${this.s}.workers WHERE last_seen_at >= $1`, [since]);
    return r.rows.map((w) => ({
      workerId: w.worker_id,
      host: w.host,
      pid: w.pid,
      queues: w.queues,
      workflows: w.workflows,
      activities: w.activities,
      concurrency: w.concurrency,
      activeRuns: w.active_runs,
      heartbeatIntervalMs: w.interval_ms,
      startedAt: Number(w.started_at),
      lastSeenAt: Number(w.last_seen_at),
      stoppedAt: ms(w.stopped_at),
    }));
  }

  async ping(q: Queryable): Promise<void> {
    await q.query('SELECT 1');
  }

  // ---- wake-up listener ----

  /** Both channels, in one round trip. */
  async listen(q: Queryable): Promise<void> {
    await q.query(`LISTEN "${this.channel}"; LISTEN "${this.stopChannel}"; LISTEN "${this.closedChannel}"`);
  }
}
