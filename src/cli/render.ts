import type { OpenWait, RunDescription } from '../client/client.js';
import type { RunCounts, RunRecord, RunStatus } from '../journal/journal.js';
import type { SerializedError } from '../runtime/errors.js';
import type { JournalEvent } from '../runtime/events.js';
import { cut, duration, fields, longTime, shortJson, shortTime, table } from './format.js';

/** How runs, events and errors read in the CLI's human output (the `--json` output is the API's own objects). */

/** `TypeError: boom` and, indented, its stack and causes (`full`), or only the first line. */
export function errorText(err: SerializedError | null | undefined, full = true): string {
  if (!err) return '-';
  const head = `${err.name}: ${err.message}`;
  if (!full) return head;
  const lines = [head];
  const stack = err.stack?.split('\n').slice(1).map((l) => l.trim()).filter(Boolean) ?? [];
  for (const l of stack) lines.push(`  ${l}`);
  if (err.details !== undefined) lines.push(`  details: ${shortJson(err.details, 200)}`);
  if (err.cause) lines.push(`caused by ${errorText(err.cause, true)}`);
  return lines.join('\n');
}

/** `3 running, 5 completed, 1 failed` (statuses with runs, in RUN_STATUSES order), or `no runs`. */
export function countsText(counts: RunCounts): string {
  const parts = Object.entries(counts.byStatus)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`);
  return parts.length ? parts.join(', ') : 'no runs';
}

/** One line on what an open wait is. */
export function waitText(w: OpenWait, now = Date.now()): string {
  const since = `since ${shortTime(w.since)} (${duration(Math.max(0, now - w.since))})`;
  const member = w.groupId !== undefined ? ` [member ${(w.index ?? 0) + 1}/${w.size ?? '?'} of all() at ${w.groupId}]` : '';
  switch (w.kind) {
    case 'child':
      return `child ${w.workflow ?? '?'} ${w.childWorkflowId ?? ''} (${w.childRunId ?? '?'})${w.attempt && w.attempt > 1 ? ` attempt ${w.attempt}` : ''}${w.deadline ? `, gives up at ${shortTime(w.deadline)}` : ''}, ${since}${member}`;
    case 'activity':
      return `activity ${w.activity ?? '?'}, ${since}${member}`;
    case 'timer':
      return `timer firing at ${shortTime(w.fireAt)}, ${since}${member}`;
    case 'signal':
      return `signal '${w.signal ?? '?'}'${w.deadline ? `, times out at ${shortTime(w.deadline)}` : ''}, ${since}${member}`;
  }
}

/** The human form of `client.describe`. */
export function describeText(d: RunDescription, now = Date.now()): string {
  const r = d.run;
  const ext = d as RunDescription & { worker?: unknown; error?: SerializedError | null };
  const out: string[] = [];
  out.push(
    fields([
      ['run', r.runId],
      ['workflow id', r.workflowId],
      ['workflow', r.workflow],
      ['status', `${r.status}${r.cancelRequest ? ` (cancelling: ${r.cancelRequest.reason}; closes by ${shortTime(r.cancelRequest.deadline)})` : ''}`],
      ['queue', r.queue],
      ['started', longTime(r.createdAt, now)],
      ['closed', r.closedAt === null ? null : `${longTime(r.closedAt, now)}, took ${duration(r.closedAt - r.createdAt)}`],
      ['parent', r.parentRunId],
      ['root', r.rootRunId === r.runId ? `${r.rootRunId} (this run)` : r.rootRunId],
      ['depth', r.depth ? String(r.depth) : null],
      ['continued from', r.continuedFrom],
      ['continued to', r.continuedTo],
      ['retry of', r.retryOf ?? null],
      ['retried as', r.retriedTo ?? null],
      ['held by', r.leaseOwner ? `worker ${r.leaseOwner}${r.leaseExpiresAt ? ` (lease until ${shortTime(r.leaseExpiresAt)})` : ''}` : null],
      ['next wake-up', r.nextWakeupAt !== null && d.status === 'running' ? longTime(r.nextWakeupAt, now) : null],
      ['input', shortJson(r.input, 200)],
      ['result', r.status === 'completed' || (r.status === 'cancelled' && r.result !== undefined && r.result !== null) ? shortJson(r.result, 400) : null],
      ['events', String(r.lastSeq)],
    ]),
  );

  if (d.waitingFor?.kind === 'operator') {
    out.push('', `waiting for   an operator, since ${longTime(d.waitingFor.since, now)}: the run is blocked by a bug or a code change;`);
    out.push(`              deploy a fix, then \`skein runs resume ${r.workflowId}\` (or terminate it)`);
  } else if (d.waitingFor?.kind === 'worker') {
    out.push('', `waiting for   a worker serving queue '${d.waitingFor.queue}' with workflow '${d.waitingFor.workflow}', since ${longTime(d.waitingFor.since, now)}`);
    out.push(`              (no such worker has started the run yet: see \`skein workers\`)`);
  }
  if (r.stall) {
    const s = r.stall;
    out.push(
      '',
      `stalled       activity '${s.activity}' (path ${s.path}) is not registered on worker ${s.workerId}: released ${s.attempts} time${s.attempts === 1 ? '' : 's'}`,
      `              since ${longTime(s.since, now)}; next attempt ${longTime(s.nextAttemptAt, now)}`,
    );
  }

  if (d.openWaits.length) {
    out.push('', `waits on (${d.openWaitCount > d.openWaits.length ? `first ${d.openWaits.length} of ${d.openWaitCount}` : d.openWaitCount}, ${d.waitKind ?? '-'} first)`);
    for (const w of d.openWaits) out.push(`  ${w.path.padEnd(6)}${waitText(w, now)}`);
  }

  const error = ext.error !== undefined ? ext.error : r.error;
  if (error && r.status !== 'completed') out.push('', `error         ${errorText(error).split('\n').join('\n              ')}`);

  const kids = d.lineage.children;
  if (kids.length) {
    out.push('', `children (${kids.length})`);
    out.push(indent(table(['status', 'workflow id', 'workflow', 'run id'], kids.map((c) => [c.status, c.workflowId, c.workflow, c.runId]))));
  }

  if (d.timeline.length) {
    const shown = d.timeline.slice(-10);
    out.push('', `timeline (${shown.length < d.timeline.length ? `last ${shown.length} of ${d.timeline.length} events; all: skein runs history ${r.runId}` : `${d.timeline.length} events`})`);
    out.push(indent(table(['seq', 'at', 'event', 'path'], shown.map((e) => [String(e.seq), shortTime(e.at), e.type, e.path ?? '']))));
  }
  return out.join('\n');
}

const indent = (s: string, by = '  ') =>
  s
    .split('\n')
    .map((l) => by + l)
    .join('\n');

/** One line per journal event: what it says, briefly. */
export function eventText(e: JournalEvent): string {
  switch (e.type) {
    case 'RunStarted': {
      const p = e.payload;
      return `${p.workflow} (workflow id ${p.workflowId}) input ${shortJson(p.input)}${p.retry ? `, retry of ${p.retry.previousRunId}: ${p.retry.reason}` : ''}`;
    }
    case 'ChildScheduled': {
      const p = e.payload;
      return `path ${p.path}: child ${p.workflow} ${p.childWorkflowId} (${p.childRunId})${p.attempt && p.attempt > 1 ? ` attempt ${p.attempt}` : ''}`;
    }
    case 'ChildStartFailed':
      return `path ${e.payload.path}: child ${e.payload.workflow} not started: ${errorText(e.payload.error, false)}`;
    case 'ActivityScheduled':
      return `path ${e.payload.path}: activity ${e.payload.name} input ${shortJson(e.payload.input)}`;
    case 'ActivityCompleted':
      return `path ${e.payload.path}: -> ${shortJson(e.payload.result)}${e.payload.attempts > 1 ? ` (attempt ${e.payload.attempts})` : ''}`;
    case 'ActivityFailed':
      return `path ${e.payload.path}: ${errorText(e.payload.error, false)} (after ${e.payload.attempts} attempt${e.payload.attempts === 1 ? '' : 's'})`;
    case 'TimerStarted':
      return `path ${e.payload.path}: fires at ${shortTime(e.payload.fireAt)}`;
    case 'TimerFired':
      return `path ${e.payload.path}`;
    case 'SideEffect':
      return `path ${e.payload.path}: ${e.payload.kind} = ${shortJson(e.payload.value)}`;
    case 'SignalWaitStarted':
      return `path ${e.payload.path}: waits for signal '${e.payload.name}'${e.payload.deadline ? ` until ${shortTime(e.payload.deadline)}` : ''}`;
    case 'SignalReceived':
      return `'${e.payload.name}' ${shortJson(e.payload.payload)}`;
    case 'ChildSignalled':
      return `path ${e.payload.path}: sent '${e.payload.name}' to ${e.payload.childRunId}`;
    case 'ChildCompleted':
      return `path ${e.payload.path}: ${e.payload.childRunId} -> ${shortJson(e.payload.result)}`;
    case 'ChildFailed':
    case 'ChildCancelled':
    case 'ChildTerminated':
    case 'ChildTimedOut':
      return `path ${e.payload.path}: ${e.payload.childRunId}${e.payload.error ? `: ${errorText(e.payload.error, false)}` : ''}`;
    case 'ChildStarted':
      return `path ${e.payload.path}: continued as ${e.payload.childRunId}`;
    case 'BarrierFailed':
      return `path ${e.payload.path}: throws the failure of leaf ${e.payload.leafIndex} (${e.payload.leafPath})`;
    case 'FailureHandled':
      return `path ${e.payload.path}: caught ${errorText(e.payload.error, false)}`;
    case 'RunCompleted':
      return `-> ${shortJson(e.payload.result)}`;
    case 'RunFailed':
    case 'RunBlocked':
      return errorText(e.payload.error, false);
    case 'RunCancelled':
      return `${e.payload.reason}${e.payload.forced ? ' (forced)' : ''}`;
    case 'CancelRequested':
      return `${e.payload.reason}, grace until ${shortTime(e.payload.deadline)}`;
    case 'RunResumed':
    case 'RunTerminated':
      return e.payload.reason;
    case 'RunTimedOut':
      return `deadline ${shortTime(e.payload.deadline)}`;
    case 'RunContinued':
      return `as ${e.payload.nextRunId} input ${shortJson(e.payload.input)}`;
    case 'ParentClosePolicyApplied':
      return `${e.payload.policy} ${e.payload.childRunId}`;
    case 'ParentClosePolicyFailed':
      return `${e.payload.policy} ${e.payload.childRunId}: ${errorText(e.payload.error, false)}`;
    default: {
      // an event type this version of the CLI does not know: its payload as it is
      const { path, ...rest } = (e as { payload: { path?: string } }).payload;
      return `${path !== undefined ? `path ${path}: ` : ''}${shortJson(rest, 100)}`;
    }
  }
}

/** The human form of a history: one row per event. */
export function historyText(events: JournalEvent[]): string {
  return table(
    ['seq', 'at', 'event', 'details'],
    events.map((e) => [String(e.seq), shortTime(e.recordedAt), e.type, cut(eventText(e), 120)]),
  );
}

/** Table of runs for `runs list` (an ERROR column when any has one). */
export function runsTable(runs: RunRecord[], now = Date.now()): string {
  const withErrors = runs.some((r) => r.error && r.status !== 'completed');
  const headers = ['status', 'workflow id', 'workflow', 'started', 'took', 'run id', ...(withErrors ? ['error'] : [])];
  return table(
    headers,
    runs.map((r) => [
      r.status,
      r.workflowId,
      r.workflow,
      shortTime(r.createdAt),
      r.closedAt !== null ? duration(r.closedAt - r.createdAt) : `${duration(Math.max(0, now - r.createdAt))}…`,
      r.runId,
      ...(withErrors ? [r.error && r.status !== 'completed' ? cut(`${r.error.name}: ${r.error.message}`, 60) : ''] : []),
    ]),
  );
}

export const CLOSED_OK: ReadonlySet<RunStatus> = new Set(['completed']);
