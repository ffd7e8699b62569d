import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { WorkflowDef } from '../runtime/commands.js';
import { describeEvent, RunEngine, type EngineOptions } from '../runtime/engine.js';
import { NonDeterminismError, SkeinError, serializeError, type SerializedError } from '../runtime/errors.js';
import type { JournalEvent } from '../runtime/events.js';
import { journalValue } from '../runtime/json.js';
import { Registry, type WorkflowsInput } from '../runtime/registry.js';
import type { ExportedHistory } from '../client/client.js';
import { Entropy, instrument, type Closing } from './entropy.js';

/**
 * The replay tester: does today's code still replay yesterday's histories? Each history is replayed with a fresh
 * RunEngine, exactly as a worker rebuilds a run after a crash or a cache eviction; a command that no longer matches
 * the journal is a NonDeterminismError naming the seq and both commands.
 *
 * Each history is replayed twice, with direct `Math.random()` answering near 0 and then near 1, and `Date.now()` /
 * `new Date()` 40 days, 12 hours and a millisecond behind and then ahead (another hour of the day, half a day away,
 * another day of the week and of the month, another month). Code that reads them directly instead of `random()` and
 * `now()` therefore takes the other branch in one of the two replays, and the tester reports the divergence even
 * when the history itself happened to replay.
 */

export interface ReplayOptions {
  maxChildDepth?: number;
}

interface ReplayBase {
  runId: string;
  workflowId: string;
  workflow: string;
  /** The file the history came from, when it came from one. */
  source?: string;
}

export interface ReplayOk extends ReplayBase {
  ok: true;
  events: number;
  /** How the run stands after the replay: closed as journaled, or still open (a history exported mid-run). */
  status: 'completed' | 'failed' | 'open';
  /** The value today's code returns at the end of the history (when it closes). Not compared with the journal. */
  result?: unknown;
  error?: SerializedError;
  /**
   * What each `patched(id)` answered on this history: true where its journal has the marker (the new code), false
   * where the run passed that point before the patch. A history that never reached a patch does not list it.
   */
  patches: Record<string, boolean>;
}

export interface ReplayFailure extends ReplayBase {
  ok: false;
  /** NonDeterminismError for a divergence; CorruptJournalError, UnknownWorkflowError or TypeError for bad input. */
  error: Error;
}

export type ReplayResult = ReplayOk | ReplayFailure;

/** Thrown by `replayHistories` when at least one history no longer replays; lists them all. */
export class HistoryReplayError extends SkeinError {
  constructor(readonly failures: ReplayFailure[], readonly total: number) {
    super(
      `${failures.length} of ${total} histor${total === 1 ? 'y' : 'ies'} no longer replay:\n` +
        failures.map((f) => `  ${f.source ?? f.workflowId}: ${f.error.name}: ${f.error.message}`).join('\n'),
      { cause: failures[0]?.error },
    );
  }
}

/** How far replays move direct clock reads: 40 days, 12 hours and 1 ms (the hour, the day and the month all change). */
const SHIFT_MS = (40 * 24 + 12) * 3_600_000 + 1;

/** The two ways replays answer ambient reads (see the module comment). */
export const REPLAY_PROFILES = [
  { label: 'Math.random() near 0, Date.now() 40 days and 12 hours earlier', random: (r: () => number) => () => r() * 0.001, clockOffsetMs: -SHIFT_MS },
  { label: 'Math.random() near 1, Date.now() 40 days and 12 hours later', random: (r: () => number) => () => 0.999 + r() * 0.000999, clockOffsetMs: SHIFT_MS },
] as const;

export interface EngineReplay {
  error: Error | null;
  /** How the body ended during the replay (undefined if it did not end). */
  closing?: Closing;
  engine: RunEngine;
  profile: string;
}

/**
 * Replays one run's events with a fresh engine under each ambient profile; returns the first failure, or the
 * outcome of the last replay. Shared by the replay tester and the fuzzer.
 */
export function replayRun(
  def: WorkflowDef,
  run: { runId: string; workflowId: string; depth: number; queue: string },
  events: readonly JournalEvent[],
  engineOptions: EngineOptions,
  seed = 0,
  /** Extra check of each profile's replay (the fuzzer compares the body's ending with the journaled close). */
  verify?: (r: EngineReplay) => Error | null,
): EngineReplay {
  let last: EngineReplay | undefined;
  const at = events.length ? events[events.length - 1]!.recordedAt : 0;
  for (const p of REPLAY_PROFILES) {
    let closing: Closing | undefined;
    const entropy = new Entropy({ seed, clock: { now: () => at }, userRandom: p.random(rngFor(seed)), userClockOffsetMs: p.clockOffsetMs });
    const engine = new RunEngine(instrument(def, entropy, { onClose: (c) => (closing = c) }), run, engineOptions);
    try {
      engine.replay(events, at);
      const trailing = engine.takeOutput().events;
      // Every activation commits what the code decided up to its next wait, so at the end of a history written by
      // a worker the code is waiting. If it now decides more, it no longer waits where the recorded code did.
      if (trailing.length && events.length > 1 && !engine.closed) {
        throw new NonDeterminismError(events.length + 1, 'nothing more (the recorded code was waiting here)', describeEvent(trailing[0]!));
      }
      last = { error: null, closing, engine, profile: p.label };
      const bad = verify?.(last);
      if (bad) {
        done(engine, entropy);
        return { ...last, error: bad };
      }
    } catch (err) {
      done(engine, entropy);
      return { error: err as Error, closing, engine, profile: p.label };
    }
    done(engine, entropy);
  }
  return last!;
}

/** A replay is over: its generator is closed (finally blocks run: state the code cleans up is cleaned up). */
function done(engine: RunEngine, entropy: Entropy): void {
  engine.dispose();
  entropy.closeEffects();
}

function rngFor(seed: number): () => number {
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

/** What a body's ending journals as: the same JSON round trip the engine applies. */
export function closingAsJournaled(c: Closing, workflow: string): { status: 'completed'; result: unknown } | { status: 'failed'; error: SerializedError } {
  if (!c.ok) return { status: 'failed', error: serializeError(c.error) };
  try {
    return { status: 'completed', result: journalValue(c.value, `result of workflow '${workflow}'`) };
  } catch (err) {
    return { status: 'failed', error: serializeError(err) };
  }
}

/** Reads a history from an object or a .json file, checking its shape. */
export async function loadHistory(source: ExportedHistory | string): Promise<{ history: ExportedHistory; source?: string }> {
  if (typeof source === 'string') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(source, 'utf8'));
    } catch (err) {
      throw new TypeError(`cannot read history file ${source}: ${(err as Error).message}`);
    }
    return { history: validate(parsed, source), source };
  }
  return { history: validate(source, undefined) };
}

function validate(h: unknown, source: string | undefined): ExportedHistory {
  const where = source ? ` (${source})` : '';
  const o = h as Partial<ExportedHistory> | null;
  if (!o || typeof o !== 'object' || o.format !== 'skein-history/1') {
    throw new TypeError(`not a skein history${where}: expected { format: 'skein-history/1', … } as returned by client.history(runId)`);
  }
  if (typeof o.runId !== 'string' || typeof o.workflow !== 'string' || !Array.isArray(o.events)) {
    throw new TypeError(`malformed skein history${where}: runId, workflow and events are required`);
  }
  return o as ExportedHistory;
}

/** Replays one history; never throws for a replay failure, returns `{ ok: false, error }` instead. */
export async function checkHistory(workflows: WorkflowsInput, history: ExportedHistory | string, options: ReplayOptions = {}): Promise<ReplayResult> {
  const { history: h, source } = await loadHistory(history);
  return checkLoaded(new Registry(workflows), h, source, options);
}

function checkLoaded(registry: Registry, h: ExportedHistory, source: string | undefined, options: ReplayOptions): ReplayResult {
  const base: ReplayBase = { runId: h.runId, workflowId: h.workflowId, workflow: h.workflow, ...(source ? { source } : {}) };
  let def: WorkflowDef;
  try {
    def = registry.workflow(h.workflow);
  } catch (err) {
    return { ...base, ok: false, error: err as Error };
  }
  const started = h.events[0];
  const depth = started?.type === 'RunStarted' ? started.payload.depth ?? 0 : 0;
  const r = replayRun(def, { runId: h.runId, workflowId: h.workflowId, depth, queue: 'default' }, h.events, {
    ...(options.maxChildDepth !== undefined ? { maxChildDepth: options.maxChildDepth } : {}),
  });
  if (r.error) return { ...base, ok: false, error: r.error };
  const closed = r.engine.closed && r.closing ? closingAsJournaled(r.closing, h.workflow) : null;
  return {
    ...base,
    ok: true,
    events: h.events.length,
    patches: Object.fromEntries(r.engine.patchesSeen),
    status: closed ? closed.status : 'open',
    ...(closed?.status === 'completed' ? { result: closed.result } : {}),
    ...(closed?.status === 'failed' ? { error: closed.error } : {}),
  };
}

/**
 * Replays one exported history (the object `client.history(runId)` returns, or a path to it saved as JSON) against
 * today's code. Throws the NonDeterminismError (with `seq`, `journaled` and `issued`) when the code diverges, or the
 * error that made the history unusable. Use `checkHistory` for a result object instead.
 */
export async function replayHistory(workflows: WorkflowsInput, history: ExportedHistory | string, options: ReplayOptions = {}): Promise<ReplayOk> {
  const r = await checkHistory(workflows, history, options);
  if (!r.ok) throw r.error;
  return r;
}

/** Every `*.json` history in `dir` (sorted by name), each replayed; never throws for replay failures. */
export async function checkHistories(workflows: WorkflowsInput, dir: string, options: ReplayOptions = {}): Promise<ReplayResult[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  const registry = new Registry(workflows);
  const out: ReplayResult[] = [];
  for (const f of files) {
    const path = join(dir, f);
    try {
      const { history } = await loadHistory(path);
      out.push(checkLoaded(registry, history, path, options));
    } catch (err) {
      out.push({ ok: false, runId: '', workflowId: f, workflow: '', source: path, error: err as Error });
    }
  }
  return out;
}

/**
 * Replays a folder of golden histories in one test. Throws HistoryReplayError listing every history that no longer
 * replays (and an error if the folder holds none, so a wrong path cannot pass silently).
 */
export async function replayHistories(workflows: WorkflowsInput, dir: string, options: ReplayOptions = {}): Promise<ReplayOk[]> {
  const results = await checkHistories(workflows, dir, options);
  if (!results.length) throw new SkeinError(`no *.json histories found in ${dir}`);
  const failures = results.filter((r): r is ReplayFailure => !r.ok);
  if (failures.length) throw new HistoryReplayError(failures, results.length);
  return results as ReplayOk[];
}
