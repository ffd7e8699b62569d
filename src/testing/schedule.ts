import type { SerializedError } from '../runtime/errors.js';
import type { JournalEvent } from '../runtime/events.js';
import type { RunRecord } from '../journal/journal.js';

/**
 * Turns what a simulated case did into lines a person can follow: which run was activated and what it decided,
 * which activity finished how and when, where the worker crashed. Built from the journals after the fact (each
 * trace entry remembers the seq range its action appended), so tracing costs nothing while cases pass.
 */

export type TraceEntry =
  | { kind: 'activate'; step: number; at: number; runId: string; before: number; after: number }
  | { kind: 'activity'; step: number; at: number; runId: string; path: string; before: number; after: number }
  | { kind: 'crash'; step: number; at: number; engines: number; inflight: number }
  | { kind: 'timer'; step: number; at: number; chosen: boolean }
  | { kind: 'signal'; step: number; at: number; runId: string; name: string; payload: unknown; signalId: string; accepted: boolean };

export function short(v: unknown, max = 60): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

export function errorText(e: SerializedError | null | undefined, max = 120): string {
  if (!e) return 'Error';
  const m = e.message.length > max ? `${e.message.slice(0, max - 1)}…` : e.message;
  return `${e.name}('${m}')`;
}

export interface ScheduleSource {
  trace: readonly TraceEntry[];
  histories: ReadonlyMap<string, readonly JournalEvent[]>;
  runs: readonly RunRecord[];
  /** Virtual time at which the case started; times print relative to it. */
  t0: number;
}

export function formatSchedule(src: ScheduleSource): string[] {
  const wf = new Map(src.runs.map((r) => [r.runId, r.workflowId]));
  const name = (runId: string) => wf.get(runId) ?? runId;
  const rel = (t: number) => t - src.t0;
  const appended = (runId: string, before: number, after: number) => (src.histories.get(runId) ?? []).filter((e) => e.seq > before && e.seq <= after);
  const activityOf = (runId: string, path: string) => {
    const e = (src.histories.get(runId) ?? []).find((x) => x.type === 'ActivityScheduled' && x.payload.path === path);
    return e?.type === 'ActivityScheduled' ? e.payload : undefined;
  };

  const describe = (runId: string, e: JournalEvent): string | null => {
    switch (e.type) {
      case 'RunStarted':
        return null;
      case 'ChildScheduled':
        return `starts child ${e.payload.childWorkflowId} (${e.payload.workflow})`;
      case 'ChildStartFailed':
        return `cannot start child ${e.payload.workflow}: ${errorText(e.payload.error)}`;
      case 'ActivityScheduled':
        return `calls ${e.payload.name}(${short(e.payload.input)})`;
      case 'TimerStarted':
        return `sleeps until t=${rel(e.payload.fireAt)}`;
      case 'SideEffect':
        return `${e.payload.kind}() = ${short(e.payload.value, 40)}`;
      case 'BarrierFailed':
        return `barrier at path ${e.payload.path} throws the failure of leaf ${e.payload.leafIndex}`;
      case 'FailureHandled':
        return `catches ${errorText(e.payload.error)}`;
      case 'PatchMarker':
        return e.payload.deprecated ? `deprecatePatch('${e.payload.patchId}')` : `patched('${e.payload.patchId}') = true (the new code)`;
      case 'RunCompleted':
        return `COMPLETES -> ${short(e.payload.result)}`;
      case 'RunFailed':
        return `FAILS: ${errorText(e.payload.error)}`;
      case 'RunBlocked':
        return `BLOCKED: ${errorText(e.payload.error, 400)}`;
      case 'ChildCompleted':
        return `sees ${name(e.payload.childRunId)} completed -> ${short(e.payload.result, 40)}`;
      case 'ChildFailed':
        return `sees ${name(e.payload.childRunId)} failed: ${errorText(e.payload.error)}`;
      case 'ChildCancelled':
      case 'ChildTerminated':
      case 'ChildTimedOut':
        return `sees ${name(e.payload.childRunId)} ${e.type.slice(5).toLowerCase()}`;
      case 'ActivityCompleted': {
        const a = activityOf(runId, e.payload.path);
        return `gets ${a?.name ?? 'activity'} -> ${short(e.payload.result, 40)}`;
      }
      case 'ActivityFailed': {
        const a = activityOf(runId, e.payload.path);
        return `gets ${a?.name ?? 'activity'} failed: ${errorText(e.payload.error)}`;
      }
      case 'TimerFired':
        return `timer at path ${e.payload.path} fires`;
      case 'SignalWaitStarted':
        return `waits for signal ${e.payload.name}`;
      case 'SignalReceived':
        return `receives signal ${e.payload.name}(${short(e.payload.payload, 40)})`;
      default:
        // Event types this formatter does not know yet (the runtime grows): show the type and a short payload.
        return `${(e as JournalEvent).type} ${short((e as JournalEvent).payload, 60)}`;
    }
  };

  return src.trace.map((t, i) => {
    let text: string;
    switch (t.kind) {
      case 'crash':
        text = `CRASH: the worker dies, losing ${t.engines} cached engine(s) and ${t.inflight} in-flight activit${t.inflight === 1 ? 'y' : 'ies'}; runs resume by replay`;
        break;
      case 'timer':
        text = t.chosen ? 'the clock runs ahead to the next timer' : 'nothing else is ready: the clock jumps to the next timer';
        break;
      case 'signal':
        text = `signal ${t.name}(${short(t.payload, 40)}) sent to ${name(t.runId)}${t.accepted ? '' : ': refused, the run has closed'}`;
        break;
      case 'activate': {
        const evs = appended(t.runId, t.before, t.after)
          .map((e) => describe(t.runId, e))
          .filter((s): s is string => s !== null);
        text = `activate ${name(t.runId)}${evs.length ? `: ${evs.join('; ')}` : ' (nothing new)'}`;
        break;
      }
      case 'activity': {
        const a = activityOf(t.runId, t.path);
        const evs = appended(t.runId, t.before, t.after);
        const delivery = evs.find((e) => (e.type === 'ActivityCompleted' || e.type === 'ActivityFailed') && e.payload.path === t.path);
        const outcome =
          delivery?.type === 'ActivityCompleted'
            ? `ok ${short(delivery.payload.result, 40)}`
            : delivery?.type === 'ActivityFailed'
              ? `failed ${errorText(delivery.payload.error)}`
              : 'result not journaled (the run was no longer running)';
        const rest = evs
          .filter((e) => e !== delivery)
          .map((e) => describe(t.runId, e))
          .filter((s): s is string => s !== null);
        text = `activity ${a?.name ?? '?'}(${short(a?.input)}) in ${name(t.runId)} -> ${outcome}${rest.length ? `; then ${name(t.runId)} ${rest.join('; ')}` : ''}`;
        break;
      }
    }
    return `${String(i + 1).padStart(3)}. t=${String(rel(t.at)).padEnd(5)} ${text}`;
  });
}
