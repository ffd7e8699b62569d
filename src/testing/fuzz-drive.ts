import type { WorkflowDef } from '../runtime/commands.js';
import type { EngineOptions } from '../runtime/engine.js';
import { RunClosedError, SkeinError } from '../runtime/errors.js';
import type { JournalEvent } from '../runtime/events.js';
import { hashText, journalValue } from '../runtime/json.js';
import type { ActivitiesInput } from '../runtime/registry.js';
import type { RunRecord } from '../journal/journal.js';
import { ManualClock } from '../journal/memory.js';
import { Simulation, type ActivityOutcome, type SimAction, type SimActivityCall } from './simulator.js';
import { Entropy, instrument } from './entropy.js';
import { MINUTE, START, TIMER_PICK, type FullCase, type FuzzOutcome } from './fuzz-case.js';
import type { TraceEntry } from './schedule.js';

/**
 * Drives one fuzz case on the simulator (which runs the worker's own activation: see simulator.ts) and records what
 * the oracles need: the trace, every run's journal, the signals the journal acknowledged, the results as a client
 * saw them after each step, every activity's effects. Also re-drives a case's trace without crashes, for the
 * crash-free comparison.
 *
 * Design boundary: this module turns a case into actions; it judges nothing (fuzz-oracles.ts does), and it knows
 * nothing of fast-check (fuzz-case.ts draws the cases).
 */

export interface DriveSetup {
  /** Every workflow known (the user's definitions; children learned from the commands that start them are added). */
  defs: Map<string, WorkflowDef>;
  root: string;
  rootWorkflowId: string;
  activities: ActivitiesInput;
  engineOptions: EngineOptions;
  fuzzChildActivities: boolean;
  maxSteps: number;
  /** Signal names the user gave payloads for (sent first); names the code waited for are learned from the journal. */
  signalNames: string[];
}

export interface Drive {
  sim: Simulation;
  entropy: Entropy;
  trace: TraceEntry[];
  steps: number;
  simError: unknown;
  /** Virtual time at which the case started. */
  t0: number;
  runs: RunRecord[];
  histories: Map<string, JournalEvent[]>;
  /** The roots started (the root, and its twin when the case has one). */
  roots: string[];
  /** Signals the journal acknowledged: they must reach their run. `afterSeq`: the run's journal head then. */
  acknowledged: { runId: string; signalId: string; name: string; afterSeq: number }[];
  /** A run whose result, as a client reads it, changed after it was first reported; null when none did. */
  changed: { runId: string; before: string; after: string } | null;
  /** Which activity executions finished within their activation (by run and path), to re-drive the same way. */
  quick: Map<string, boolean>;
}

export const runIdOf = (workflowId: string): string => `run-${workflowId}`;
export const twinOf = (workflowId: string): string => `${workflowId}~twin`;

const key = (runId: string, path: string) => `${runId}\u0000${path}`;

function inputText(v: unknown): string {
  try {
    return JSON.stringify(v) ?? 'undefined';
  } catch {
    return String(v);
  }
}

/**
 * Every known workflow, instrumented for one simulation. A child workflow nobody listed is learned from the command
 * that starts it (its definition travels with the command) and registered before its run activates.
 */
function instrumentAll(setup: DriveSetup, entropy: Entropy, sim: () => Simulation): WorkflowDef[] {
  const wrap = (d: WorkflowDef): WorkflowDef =>
    instrument(d, entropy, {
      onChild: (c) => {
        if (sim().registry.hasWorkflow(c.name)) return;
        if (!setup.defs.has(c.name)) setup.defs.set(c.name, c);
        sim().registry.addWorkflow(wrap(c));
      },
    });
  return [...setup.defs.values()].map(wrap);
}

/** How a case's activity calls end: from the case's pools (the first time a call is performed; it keeps it). */
function pooledOutcomes(setup: DriveSetup, c: FullCase<unknown>, roots: Set<string>): (call: SimActivityCall) => ActivityOutcome | undefined {
  const memo = new Map<string, FuzzOutcome>();
  const drawn = new Map<string, number>();
  return (call) => {
    if (!setup.fuzzChildActivities && !roots.has(call.runId)) return undefined;
    const pool = c.outcomes[call.name];
    if (!pool?.length) return undefined;
    const k = key(call.runId, call.path);
    let e = memo.get(k);
    if (!e) {
      // The entry the call's input hashes to, then the next for each further call with the same input (a retry loop
      // goes round the pool). Keyed by input, not by call order: shrinking the input keeps the other calls' outcomes.
      const same = `${call.name}\u0000${inputText(call.input)}`;
      const i = drawn.get(same) ?? 0;
      drawn.set(same, i + 1);
      e = pool[(parseInt(hashText(same).slice(0, 7), 16) + i) % pool.length]!;
      memo.set(k, e);
    }
    if (e.kind === 'real') return undefined;
    // The same JSON round trip a real activity result gets, so live code sees what replay will see.
    if (e.kind === 'ok') return { ok: true, value: journalValue(e.value, `fuzzed result of activity '${call.name}'`) };
    return { ok: false, error: e.error };
  };
}

interface DriveMode {
  /** Crash where the case says (false: the crash-free re-drive). */
  faults: boolean;
  /** Activity outcomes to answer instead of the pools (the crash-free re-drive answers what the first drive journaled). */
  recorded?: Map<string, ActivityOutcome>;
  /** Quick decisions to reuse (the crash-free re-drive). */
  quick?: Map<string, boolean>;
}

function newSimulation(setup: DriveSetup, c: FullCase<unknown>, mode: DriveMode): { sim: Simulation; entropy: Entropy; quick: Map<string, boolean>; roots: string[] } {
  const clock = new ManualClock(START + c.clock * MINUTE);
  const entropy = new Entropy({ seed: c.seed, clock });
  const roots = [runIdOf(setup.rootWorkflowId), ...(c.twin ? [runIdOf(twinOf(setup.rootWorkflowId))] : [])];
  const outcome = mode.recorded ? (call: SimActivityCall) => mode.recorded!.get(key(call.runId, call.path)) : pooledOutcomes(setup, c, new Set(roots));
  const quick = mode.quick ?? new Map<string, boolean>();
  const decideQuick = (call: SimActivityCall): boolean => {
    const k = key(call.runId, call.path);
    let q = quick.get(k);
    if (q === undefined) {
      q = mode.quick ? false : (c.quick[quick.size] ?? false);
      quick.set(k, q);
    }
    return q;
  };
  const engine: EngineOptions = { ...setup.engineOptions, ...(c.prePatch ? { prePatch: () => true } : {}) };
  const sim: Simulation = new Simulation({
    workflows: instrumentAll(setup, entropy, () => sim),
    activities: setup.activities,
    engine,
    clock,
    cacheCapacity: c.evict && mode.faults ? 0 : 10_000,
    activityOutcome: outcome,
    quickActivity: decideQuick,
    inlineChildren: c.inline,
  });
  return { sim, entropy, quick, roots };
}

async function startRoots(setup: DriveSetup, sim: Simulation, c: FullCase<unknown>): Promise<void> {
  const wf = sim.registry.workflow(setup.root);
  await sim.start(wf, c.input, { workflowId: setup.rootWorkflowId, runId: runIdOf(setup.rootWorkflowId) });
  if (c.twin) await sim.start(wf, c.input, { workflowId: twinOf(setup.rootWorkflowId), runId: runIdOf(twinOf(setup.rootWorkflowId)) });
}

/** The newest run of a root's continue-as-new chain. */
function currentRun(sim: Simulation, runId: string): string {
  let r = sim.journal.peekRun(runId);
  while (r?.continuedTo) r = sim.journal.peekRun(r.continuedTo);
  return r?.runId ?? runId;
}

/** Signal names to choose from: the user's, then those the root's code has waited for (sorted). */
async function signalNames(setup: DriveSetup, sim: Simulation, runId: string): Promise<string[]> {
  const learned = new Set<string>();
  for (const e of await sim.journal.readEvents(runId)) if (e.type === 'SignalWaitStarted' && !setup.signalNames.includes(e.payload.name)) learned.add(e.payload.name);
  return [...setup.signalNames, ...[...learned].sort()];
}

/** Sends a signal; returns whether the journal acknowledged it (a closed run refuses it). */
async function send(sim: Simulation, runId: string, name: string, payload: unknown, signalId: string): Promise<boolean> {
  try {
    await sim.journal.signal(runId, { name, payload, signalId });
    return true;
  } catch (err) {
    if (err instanceof RunClosedError) return false;
    throw err;
  }
}

function resultText(r: Readonly<RunRecord>): string {
  return JSON.stringify({ status: r.status, result: r.result ?? null, error: r.error ? { name: r.error.name, message: r.error.message } : null });
}

/** Runs one case: its schedule with its faults, then on without faults until nothing can happen. */
export async function driveCase(setup: DriveSetup, c: FullCase<unknown>): Promise<Drive> {
  const { sim, entropy, quick, roots } = newSimulation(setup, c, { faults: true });
  const clock = sim.clock;
  const t0 = clock.now();
  const trace: TraceEntry[] = [];
  const acknowledged: Drive['acknowledged'] = [];
  const reported = new Map<string, string>();
  let changed: Drive['changed'] = null;
  const observe = () => {
    for (const r of sim.journal.peekRuns()) {
      if (r.status === 'running' || r.status === 'blocked') continue;
      const now = resultText(r);
      const before = reported.get(r.runId);
      if (before === undefined) reported.set(r.runId, now);
      else if (before !== now && !changed) changed = { runId: r.runId, before, after: now };
    }
  };
  const crashAt = new Set(c.crashes);
  const signalsAt = new Map<number, { name: number; payload: number; i: number }[]>();
  c.signals.forEach((s, i) => signalsAt.set(s.at, [...(signalsAt.get(s.at) ?? []), { ...s, i }]));
  let step = 0;
  let simError: unknown = null;
  try {
    await startRoots(setup, sim, c);
    for (;;) {
      if (step >= setup.maxSteps) throw new SkeinError(`the case did not settle within ${setup.maxSteps} steps (a workflow that never stops?)`);
      if (crashAt.delete(step)) {
        const { engines, inflight } = sim.live;
        trace.push({ kind: 'crash', step, at: clock.now(), engines, inflight });
        sim.crash();
      }
      for (const s of signalsAt.get(step) ?? []) {
        const target = currentRun(sim, roots[0]!);
        const names = await signalNames(setup, sim, target);
        if (!names.length) continue; // no signal is known yet: nothing to send
        const name = names[s.name % names.length]!;
        const pool = c.signalPayloads[name];
        const payload = pool?.length ? journalValue(pool[s.payload % pool.length], `fuzzed payload of signal '${name}'`) : null;
        const signalId = `fuzz-signal-${s.i}`;
        const accepted = await send(sim, target, name, payload, signalId);
        if (accepted) acknowledged.push({ runId: target, signalId, name, afterSeq: sim.journal.peekRun(target)?.lastSeq ?? 0 });
        trace.push({ kind: 'signal', step, at: clock.now(), runId: target, name, payload, signalId, accepted });
      }
      signalsAt.delete(step);
      const acts = sim.actions();
      if (!acts.length) {
        const timer = sim.nextTimer();
        if (timer === null) {
          // Signals still to come are sent now, while the case has runs to send them to (then it goes on).
          const later = [...signalsAt.keys()].sort((a, b) => a - b)[0];
          if (later === undefined) break;
          signalsAt.set(step, signalsAt.get(later)!);
          signalsAt.delete(later);
          continue;
        }
        clock.set(timer);
        trace.push({ kind: 'timer', step, at: timer, chosen: false });
        continue;
      }
      const pick = c.picks[step] ?? 0;
      // One pick in eight (the top of the range, so shrinking toward 0 removes it) lets the clock run ahead to the
      // next timer while other work is ready: a timer then races activities and children.
      if (pick >= TIMER_PICK) {
        const timer = sim.nextTimer();
        if (timer !== null) {
          clock.set(timer);
          trace.push({ kind: 'timer', step, at: timer, chosen: true });
          step++;
          continue;
        }
      }
      const a = acts[pick % acts.length]!;
      const at = clock.now();
      const before = sim.journal.peekRun(a.runId)?.lastSeq ?? 0;
      try {
        await sim.perform(a);
      } finally {
        entropy.closeEffects();
      }
      const after = sim.journal.peekRun(a.runId)?.lastSeq ?? 0;
      trace.push(a.kind === 'activity' ? { kind: 'activity', step, at, runId: a.runId, path: a.path, before, after } : { kind: 'activate', step, at, runId: a.runId, before, after });
      observe();
      clock.advance(c.ticks[step] ?? 1);
      step++;
    }
  } catch (err) {
    simError = err;
  }
  const runs = sim.journal.allRuns();
  const histories = new Map<string, JournalEvent[]>();
  for (const r of runs) histories.set(r.runId, await sim.journal.readEvents(r.runId));
  return { sim, entropy, trace, steps: step, simError, t0, runs, histories, roots, acknowledged, changed, quick };
}

/**
 * Re-drives a case's trace with no crashes and the cache on, activities answering what the first drive journaled and
 * signals sent at the same points; returns the runs and journals it wrote, or the error it met.
 */
export async function driveCrashFree(setup: DriveSetup, c: FullCase<unknown>, first: Drive): Promise<{ runs: RunRecord[]; sim: Simulation } | { error: string }> {
  const recorded = new Map<string, ActivityOutcome>();
  for (const [runId, evs] of first.histories) {
    for (const e of evs) {
      // (with the close time it was journaled with: a result lost in a crash and redone later closes later)
      if (e.type === 'ActivityCompleted') recorded.set(key(runId, e.payload.path), { ok: true, value: e.payload.result, closedAt: e.payload.closedAt });
      if (e.type === 'ActivityFailed') recorded.set(key(runId, e.payload.path), { ok: false, error: e.payload.error, closedAt: e.payload.closedAt });
    }
  }
  const { sim, entropy } = newSimulation(setup, c, { faults: false, recorded, quick: new Map(first.quick) });
  const wfName = (runId: string) => first.runs.find((r) => r.runId === runId)?.workflowId ?? runId;
  try {
    await startRoots(setup, sim, c);
    for (const t of first.trace) {
      if (t.kind === 'crash') continue;
      sim.clock.set(t.at);
      if (t.kind === 'timer') continue;
      if (t.kind === 'signal') {
        if (t.accepted) await send(sim, t.runId, t.name, t.payload, t.signalId);
        continue;
      }
      let a: SimAction | undefined;
      if (t.kind === 'activate') {
        // Performed even when this run would not have been woken here: a crash wakes runs with lost activities, and
        // such an activation may journal news that was already there (a child that closed). An activation nobody
        // asked for is harmless in a real worker too (a poll, an expired lease), so the crash-free run repeats it;
        // what is compared is whether losing the engines and the in-flight work changed any decision.
        a = { kind: 'activate', runId: t.runId };
      } else {
        a = sim.actions().find((x) => x.kind === 'activity' && x.runId === t.runId && x.path === t.path);
        if (!a) {
          if (t.after > t.before) {
            return { error: `a crash-free run of the same schedule has no pending activity at step ${t.step} (${wfName(t.runId)}, path ${t.path}), which the run with crashes performed` };
          }
          continue;
        }
      }
      try {
        await sim.perform(a);
      } finally {
        entropy.closeEffects();
      }
    }
    for (let i = 0; i < setup.maxSteps; i++) {
      const acts = sim.actions();
      if (!acts.length && !sim.advanceToNextTimer()) break;
      if (acts.length) {
        try {
          await sim.perform(acts[0]!);
        } finally {
          entropy.closeEffects();
        }
      }
    }
  } catch (err) {
    return { error: `a crash-free run of the same schedule threw ${(err as Error)?.name}: ${(err as Error)?.message}` };
  }
  return { runs: sim.journal.allRuns(), sim };
}
