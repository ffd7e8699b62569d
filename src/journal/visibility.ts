import { InvalidArgumentError, RunStateError } from '../runtime/errors.js';
import {
  DEFAULT_PAGE_LIMIT,
  MAX_PAGE_LIMIT,
  RETRYABLE_STATUSES,
  RUN_STATUSES,
  WORKER_GONE_INTERVALS,
  type RunCounts,
  type RunFilter,
  type RunRecord,
  type RunStatus,
} from './journal.js';

/**
 * What both journals share to answer the visibility queries the same way (listRuns, countRuns, listDescendants,
 * listWorkers): the checked page size, the opaque cursors, the filter as the memory journal applies it (the
 * PostgreSQL journal's statements in sql.ts say the same in SQL) and when a worker is gone.
 */

/** The page size asked for, checked: an integer from 1 to MAX_PAGE_LIMIT (default DEFAULT_PAGE_LIMIT). */
export function pageLimit(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_PAGE_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_LIMIT) {
    throw new InvalidArgumentError('limit', `it must be an integer from 1 to ${MAX_PAGE_LIMIT}, got ${String(limit)}`);
  }
  return limit;
}

/** The statuses of a filter as a list (null: any), each checked. */
export function statusList(status: RunStatus | RunStatus[] | undefined): RunStatus[] | null {
  if (status === undefined) return null;
  const list = ([] as RunStatus[]).concat(status);
  for (const s of list) if (!RUN_STATUSES.includes(s)) throw new InvalidArgumentError('status', `'${String(s)}' is not a run status (${RUN_STATUSES.join(', ')})`);
  return list;
}

/**
 * A cursor is the key of the last run of a page, as base64url JSON: `[createdAt, runId]` for listRuns, `[depth,
 * createdAt, runId]` for listDescendants. Callers treat it as opaque; a cursor that does not decode is an
 * InvalidArgumentError.
 */
export function encodeCursor(key: Array<string | number>): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

export function decodeRunCursor(cursor: string | null | undefined): { createdAt: number; runId: string } | null {
  const k = decode(cursor, 2);
  return k && { createdAt: k[0] as number, runId: k[1] as string };
}

export function decodeTreeCursor(cursor: string | null | undefined): { depth: number; createdAt: number; runId: string } | null {
  const k = decode(cursor, 3);
  return k && { depth: k[0] as number, createdAt: k[1] as number, runId: k[2] as string };
}

function decode(cursor: string | null | undefined, n: number): unknown[] | null {
  if (cursor === undefined || cursor === null) return null;
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(String(cursor), 'base64url').toString());
  } catch {
    key = undefined;
  }
  const ok =
    Array.isArray(key) &&
    key.length === n &&
    key.slice(0, n - 1).every((x) => typeof x === 'number' && Number.isFinite(x)) &&
    typeof key[n - 1] === 'string';
  if (!ok) throw new InvalidArgumentError('cursor', 'it is not a cursor this query returned');
  return key as unknown[];
}

/** Bytewise order of run ids (PostgreSQL's COLLATE "C"; run ids are ASCII, so UTF-16 order is the same). */
export const compareIds = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Newest first: created_at, then run id, descending (listRuns' order). */
export const newestFirst = (a: Pick<RunRecord, 'createdAt' | 'runId'>, b: Pick<RunRecord, 'createdAt' | 'runId'>): number => b.createdAt - a.createdAt || compareIds(b.runId, a.runId);

/** Breadth first: depth, then created_at and run id ascending (listDescendants' order). */
type TreeKey = Pick<RunRecord, 'depth' | 'createdAt' | 'runId'>;
export const breadthFirst = (a: TreeKey, b: TreeKey): number => a.depth - b.depth || a.createdAt - b.createdAt || compareIds(a.runId, b.runId);

/** The filter as a predicate over run records (the memory journal's listRuns and countRuns). */
export function runMatcher(filter: RunFilter): (r: RunRecord) => boolean {
  const statuses = statusList(filter.status);
  const set = statuses && new Set(statuses);
  const f = filter;
  return (r) =>
    (!set || set.has(r.status)) &&
    (f.workflow === undefined || r.workflow === f.workflow) &&
    (f.queue === undefined || r.queue === f.queue) &&
    (f.parentRunId === undefined || r.parentRunId === f.parentRunId) &&
    (f.rootRunId === undefined || r.rootRunId === f.rootRunId) &&
    (f.workflowId === undefined || r.workflowId === f.workflowId) &&
    (f.workflowIdPrefix === undefined || r.workflowId.startsWith(f.workflowIdPrefix)) &&
    (f.startedAfter === undefined || r.createdAt >= f.startedAfter) &&
    (f.startedBefore === undefined || r.createdAt < f.startedBefore) &&
    (f.closedAfter === undefined || (r.closedAt !== null && r.closedAt >= f.closedAfter)) &&
    (f.closedBefore === undefined || (r.closedAt !== null && r.closedAt < f.closedBefore));
}

/** Counts by status, every status present (0 when none). */
export function countsOf(rows: Iterable<{ status: RunStatus; count: number }>): RunCounts {
  const byStatus = Object.fromEntries(RUN_STATUSES.map((s) => [s, 0])) as Record<RunStatus, number>;
  let total = 0;
  for (const { status, count } of rows) {
    byStatus[status] = (byStatus[status] ?? 0) + count;
    total += count;
  }
  return { total, byStatus };
}

/** Whether a worker is gone at `now`: stopped, or not seen for WORKER_GONE_INTERVALS of its heartbeat intervals. */
export function workerStatus(w: { lastSeenAt: number; stoppedAt: number | null; heartbeatIntervalMs: number }, now: number): 'alive' | 'gone' {
  return w.stoppedAt === null && now - w.lastSeenAt <= WORKER_GONE_INTERVALS * w.heartbeatIntervalMs ? 'alive' : 'gone';
}

/** Alive first, then the most recently started first, then by id. */
export const workerOrder = (a: { status: string; startedAt: number; workerId: string }, b: { status: string; startedAt: number; workerId: string }): number =>
  (a.status === 'alive' ? 0 : 1) - (b.status === 'alive' ? 0 : 1) || b.startedAt - a.startedAt || compareIds(a.workerId, b.workerId);

/** listDescendants' maxDepth, checked: a positive integer, default all levels. */
export function levels(maxDepth: number | undefined): number {
  if (maxDepth === undefined) return Number.MAX_SAFE_INTEGER;
  if (!Number.isInteger(maxDepth) || maxDepth < 1) throw new InvalidArgumentError('maxDepth', `it must be a positive integer, got ${String(maxDepth)}`);
  return maxDepth;
}

/** Throws RunStateError unless the run is a closed root run that may be retried (RETRYABLE_STATUSES). */
export function checkRetryable(run: RunRecord): void {
  if (run.parentRunId !== null) {
    throw new RunStateError(run.runId, run.status, 'retry', 'only a root run can be retried; a child is retried by its parent (the retry option of child())');
  }
  if (RETRYABLE_STATUSES.has(run.status)) return;
  const why: Partial<Record<RunStatus, string>> = {
    running: 'it is still open',
    blocked: 'it is still open: resume it after a fix, or terminate it and retry',
    completed: 'it completed',
    continued: `it continued as new: retry the newest run of its workflow id (${run.continuedTo ?? '?'})`,
  };
  throw new RunStateError(run.runId, run.status, 'retry', why[run.status] ?? 'not a retryable status');
}
