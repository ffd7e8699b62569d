import type { WorkflowDef } from '../runtime/commands.js';
import { describeEvent, type EngineOptions } from '../runtime/engine.js';
import { deserializeError, SkeinError } from '../runtime/errors.js';
import { CLOSE_TYPES, type JournalEvent, type NewEvent } from '../runtime/events.js';
import { isOpen, type RunRecord } from '../journal/journal.js';
import type { FullCase } from './fuzz-case.js';
import { driveCrashFree, type Drive, type DriveSetup } from './fuzz-drive.js';
import { closingAsJournaled, replayRun } from './replay.js';
import { errorText, short } from './schedule.js';

/**
 * What every fuzz case must satisfy, whatever the workflow: each oracle reads a finished drive (fuzz-drive.ts) and
 * says what is wrong, or null. In the order the fuzzer asks them (the first that fails is reported):
 *
 *  1. ambientReads   workflow code read Date.now(), new Date(), Math.random() or crypto.randomUUID() directly;
 *  2. blocked        a run rebuilt by replay (after a crash, an eviction) diverged from its journal;
 *  3. lost           an acknowledged start (a root, a journaled ChildScheduled) has no run, or an acknowledged
 *                    signal never reached its run;
 *  4. resultChanged  a result a client had read changed later;
 *  5. activityEffects a journaled activity outcome is not what any execution of it produced;
 *  6. unfinished     a run is still open once faults stopped and nothing more can happen;
 *  7. replay         every run's final journal replays in a fresh engine to the same close (ambient reads perturbed);
 *  8. crashFree      the same schedule without crashes (cache on) writes the same journals.
 */

export type FuzzReason = 'simulation' | 'ambient' | 'blocked' | 'lost' | 'result-changed' | 'activity-effect' | 'open' | 'replay' | 'crash-free' | 'check';

export interface Verdict {
  reason: FuzzReason;
  headline: string;
  cause?: unknown;
}

export const HINT =
  'A workflow body must not read Math.random(), Date.now(), new Date(), crypto.randomUUID() or other changing state directly; use random(), now(), uuid(), sideEffect() or an activity.';

/** A note on direct reads, added to replay-related failures when reads were allowed (allowAmbientReads). */
export function ambientNote(d: Drive): string {
  return d.entropy.ambientReads ? ` (the workflow code read Math.random()/Date.now()/new Date() directly ${d.entropy.ambientReads} time(s) in this case)` : '';
}

export function ambientReads(d: Drive): Verdict | null {
  const first = d.entropy.firstAmbient;
  if (!first) return null;
  return {
    reason: 'ambient',
    headline: `the workflow code read ${first.what} directly${first.at ? ` at ${first.at}` : ''} (${d.entropy.ambientReads} direct read(s) in this case). ${HINT}`,
  };
}

export function blocked(d: Drive): Verdict | null {
  for (const r of d.runs) {
    if (r.status !== 'blocked') continue;
    return {
      reason: 'blocked',
      headline: `run ${r.workflowId} was blocked by ${errorText(r.error, 1000)} when it was rebuilt by replay${ambientNote(d)}. ${HINT}`,
      // The blocking error as its class again (a NonDeterminismError keeps its seq and both commands).
      cause: r.error ? deserializeError(r.error) : new SkeinError('blocked'),
    };
  }
  return null;
}

/** The runs of a continue-as-new chain, from its first. */
function chain(runs: Map<string, RunRecord>, runId: string): RunRecord[] {
  const out: RunRecord[] = [];
  for (let r = runs.get(runId); r && out.length < 10_000; r = r.continuedTo ? runs.get(r.continuedTo) : undefined) out.push(r);
  return out;
}

export function lost(d: Drive): Verdict | null {
  const byId = new Map(d.runs.map((r) => [r.runId, r]));
  for (const root of d.roots) if (!byId.has(root)) return { reason: 'lost', headline: `the start of ${root} was acknowledged, but the journal has no such run` };
  for (const [runId, evs] of d.histories) {
    for (const e of evs) {
      if (e.type === 'ChildScheduled' && !byId.has(e.payload.childRunId)) {
        return { reason: 'lost', headline: `run ${byId.get(runId)?.workflowId ?? runId} journaled ChildScheduled for ${e.payload.childWorkflowId}, but the journal has no such run` };
      }
    }
  }
  for (const s of d.acknowledged) {
    // The run it was sent to, or the run that continued it (undelivered signals move along the chain).
    const runs = chain(byId, s.runId);
    const got = runs.some((r) => d.histories.get(r.runId)?.some((e) => e.type === 'SignalReceived' && e.payload.signalId === s.signalId));
    const last = runs[runs.length - 1];
    // A run closed from outside (cancelled or terminated at once) never activates again: its inbox is dropped with it.
    const closedFromOutside = last && (last.status === 'cancelled' || last.status === 'terminated');
    // A run that closed in the very activation that took the signal from its inbox, on older news (its timer fired
    // before the signal was sent, say), closed before it: the code never waited for it again. (A choice of the
    // runtime, see docs/semantics.md: the journal keeps no record of such a signal.)
    const after = runs.length === 1 ? (d.histories.get(s.runId) ?? []).filter((e) => e.seq > s.afterSeq) : [];
    const closedFirst = after.length > 0 && after.every((e) => e.recordedAt === after[0]!.recordedAt) && CLOSE_TYPES.has(after[after.length - 1]!.type);
    if (!got && !closedFromOutside && !closedFirst) {
      return { reason: 'lost', headline: `signal ${s.name} (${s.signalId}) was acknowledged by the journal, but run ${last?.workflowId ?? s.runId} (${last?.status}) never received it` };
    }
  }
  return null;
}

export function resultChanged(d: Drive): Verdict | null {
  const c = d.changed;
  if (!c) return null;
  const wf = d.runs.find((r) => r.runId === c.runId)?.workflowId ?? c.runId;
  return { reason: 'result-changed', headline: `run ${wf} reported ${c.before}, and later ${c.after}: a reported result never changes` };
}

function sameOutcome(a: NewEvent, b: JournalEvent): boolean {
  if (a.type !== b.type) return false;
  if (a.type === 'ActivityCompleted' && b.type === 'ActivityCompleted') return JSON.stringify(a.payload.result) === JSON.stringify(b.payload.result);
  if (a.type === 'ActivityFailed' && b.type === 'ActivityFailed') return a.payload.error.name === b.payload.error.name && a.payload.error.message === b.payload.error.message;
  return false;
}

export function activityEffects(d: Drive): Verdict | null {
  for (const r of d.runs) {
    for (const e of d.histories.get(r.runId) ?? []) {
      if (e.type !== 'ActivityCompleted' && e.type !== 'ActivityFailed') continue;
      const ran = d.sim.effects.get(`${r.runId}\u0000${e.payload.path}`) ?? [];
      if (ran.some((x) => sameOutcome(x, e))) continue;
      const what = ran.length ? `its ${ran.length} execution(s) produced ${ran.map((x) => short(x.payload, 80)).join(', ')}` : 'it never ran';
      return { reason: 'activity-effect', headline: `run ${r.workflowId} journaled ${describeEvent(e)} ${short(e.payload, 120)} at path ${e.payload.path}, but ${what}` };
    }
  }
  return null;
}

export function unfinished(d: Drive): Verdict | null {
  for (const r of d.runs) {
    if (isOpen(r.status)) return { reason: 'open', headline: `run ${r.workflowId} is still ${r.status} after the faults stopped and the simulation went idle (nothing could wake it)` };
  }
  return null;
}

/** Every run's final journal, in a fresh engine, reaches the same close. */
export function replayDeterminism(d: Drive, defs: Map<string, WorkflowDef>, engineOptions: EngineOptions, seed: number): Verdict | null {
  for (const r of d.runs) {
    const def = defs.get(r.workflow);
    if (!def) return { reason: 'simulation', headline: `run ${r.workflowId} is of workflow '${r.workflow}', which the fuzzer does not know` };
    const rep = replayRun(def, { runId: r.runId, workflowId: r.workflowId, depth: r.depth, queue: r.queue }, d.histories.get(r.runId)!, engineOptions, seed, (x) => {
      // Only these closes come from the body itself; a cancelled or continued run's ending is the engine's.
      if (r.status !== 'completed' && r.status !== 'failed') return null;
      if (!x.closing) return new SkeinError('the replay did not reach the end of the workflow');
      const got = closingAsJournaled(x.closing, r.workflow);
      if (got.status !== r.status) return new SkeinError(`the replay ${got.status === 'completed' ? 'completed' : 'failed'}, the journal says ${r.status}`);
      if (got.status === 'completed' && JSON.stringify(got.result) !== JSON.stringify(r.result)) {
        return new SkeinError(`the replay returned ${short(got.result)}, the journal recorded ${short(r.result)}`);
      }
      if (got.status === 'failed' && (got.error.name !== r.error?.name || got.error.message !== r.error?.message)) {
        return new SkeinError(`the replay failed with ${errorText(got.error)}, the journal recorded ${errorText(r.error)}`);
      }
      return null;
    });
    if (rep.error) {
      return { reason: 'replay', headline: `replaying run ${r.workflowId} with a fresh engine (${rep.profile}) gave ${rep.error.name}: ${rep.error.message}${ambientNote(d)}. ${HINT}`, cause: rep.error };
    }
  }
  return null;
}

/** Journal events compared without what legitimately differs between re-executions (attempt counts, error chains). */
function normalize(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalize);
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (k !== 'attempts' && k !== 'cause' && k !== 'stack') o[k] = normalize(x);
    return o;
  }
  return v;
}

/** The same schedule without crashes (and with the cache on) writes the same journals. */
export async function crashFree(setup: DriveSetup, c: FullCase<unknown>, d: Drive): Promise<Verdict | null> {
  const b = await driveCrashFree(setup, c, d);
  const fail = (headline: string): Verdict => ({ reason: 'crash-free', headline: `${headline}${ambientNote(d)}` });
  if ('error' in b) return fail(b.error);
  const wfName = (runId: string) => d.runs.find((r) => r.runId === runId)?.workflowId ?? runId;
  const idsA = new Set(d.runs.map((r) => r.runId));
  const idsB = new Set(b.runs.map((r) => r.runId));
  for (const id of idsA) if (!idsB.has(id)) return fail(`run ${wfName(id)} exists in the run with crashes but not in a crash-free run of the same schedule`);
  for (const r of b.runs) if (!idsA.has(r.runId)) return fail(`run ${r.workflowId} exists in a crash-free run of the same schedule but not in the run with crashes`);
  for (const r of d.runs) {
    const ea = d.histories.get(r.runId)!;
    const eb = await b.sim.journal.readEvents(r.runId);
    for (let i = 0; i < Math.max(ea.length, eb.length); i++) {
      const x = ea[i];
      const y = eb[i];
      if (x && y && JSON.stringify(normalize(x)) === JSON.stringify(normalize(y))) continue;
      const show = (e: JournalEvent | undefined) => (e ? `${describeEvent(e)} ${short(e.payload, 120)} at t=${e.recordedAt - d.t0}` : 'nothing');
      return fail(`a crash-free run of the same schedule wrote a different journal for run ${r.workflowId}: at seq ${i + 1} the run with crashes has ${show(x)}, the crash-free run has ${show(y)}`);
    }
  }
  return null;
}
