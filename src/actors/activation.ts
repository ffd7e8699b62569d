import { continuedRunId, RunEngine, type ActivationOutput, type EngineClose, type EngineOptions } from '../runtime/engine.js';
import { CorruptJournalError, NonDeterminismError, serializeError, WorkflowCodeError } from '../runtime/errors.js';
import { storedWaits } from '../runtime/waits.js';
import { runStartedPayload, type NewEvent } from '../runtime/events.js';
import type { Registry } from '../runtime/registry.js';
import { emitChildEvents, telemetry } from '../runtime/telemetry.js';
import { isOpen, OUTCOME_EVENT, type ChildOutcome, type ClosedStatus, type Commit, type CommitResult, type Journal, type Lease, type NewRun, type RunRecord, type RunStall, type WaitSpec } from '../journal/journal.js';

/**
 * One activation, as every host performs it (the XState run actor in a worker, and the deterministic simulator of
 * skein/testing): read what is new, let the engine decide, commit it all in one fenced journal transaction.
 */

export interface RunHost {
  journal: Journal;
  registry: Registry;
  engineOptions: EngineOptions;
  cache: EngineCache;
}

/**
 * Suspended runs' live engines (sticky execution), bounded, least recently used evicted first. A wake-up of a
 * cached run costs one activation, whatever the length of its history; an evicted run is rebuilt by replay.
 */
export class EngineCache {
  private readonly map = new Map<string, RunEngine>();
  hits = 0;
  misses = 0;
  constructor(readonly capacity = 1000) {}

  /** Removes and returns the engine of a run if it is exactly at `lastSeq` (anything else would be stale). */
  take(runId: string, lastSeq: number): RunEngine | undefined {
    const e = this.map.get(runId);
    if (!e) {
      this.misses++;
      return undefined;
    }
    this.map.delete(runId);
    if (e.lastSeq !== lastSeq || e.closed) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return e;
  }

  put(runId: string, engine: RunEngine): void {
    if (this.capacity <= 0 || engine.closed) return;
    this.map.delete(runId);
    this.map.set(runId, engine);
    while (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value!);
  }

  delete(runId: string): void {
    this.map.delete(runId);
  }

  clear(): void {
    this.map.clear();
  }

  get size(): number {
    return this.map.size;
  }
}

/** Gets the run's engine at the journal's current state: from the cache, or rebuilt by replaying the journal. */
export async function loadEngine(host: RunHost, run: RunRecord, options: { cacheChecked?: boolean } = {}): Promise<RunEngine> {
  const cached = options.cacheChecked ? undefined : host.cache.take(run.runId, run.lastSeq);
  if (cached) return cached;
  const events = await host.journal.readEvents(run.runId);
  const def = host.registry.workflow(run.workflow);
  const engine = new RunEngine(def, { runId: run.runId, workflowId: run.workflowId, depth: run.depth, queue: run.queue }, host.engineOptions);
  engine.replay(events, host.journal.clock.now());
  return engine;
}

/**
 * The engine of a run this worker has just created and leased (a child from its own commit), built without reading
 * the journal: its history is exactly the RunStarted event written with it.
 */
export function freshEngine(host: RunHost, run: NewRun & { parentRunId: string; depth: number }): RunEngine {
  const def = host.registry.workflow(run.workflow);
  const engine = new RunEngine(def, { runId: run.runId, workflowId: run.workflowId, depth: run.depth, queue: run.queue }, host.engineOptions);
  const now = host.journal.clock.now();
  engine.replay(
    [
      {
        seq: 1,
        recordedAt: now,
        type: 'RunStarted',
        payload: runStartedPayload(run, run.input, run.depth),
      },
    ],
    now,
  );
  return engine;
}

/**
 * The deliveries a parent journals for a child that moved on: ChildStarted when its chain has a newer run than the
 * parent knows (continue-as-new), then its outcome once that run has closed.
 */
export function outcomeDeliveries(path: string, knownRunId: string, o: ChildOutcome): NewEvent[] {
  const out: NewEvent[] = [];
  if (o.currentRunId !== knownRunId) {
    // One ChildStarted per run of the chain. Successor run ids are derived (see RunEngine's continue-as-new), so
    // the intermediate runs are known without reading them.
    const chain: string[] = [];
    for (let id = knownRunId; id !== o.currentRunId && chain.length < 10_000; ) {
      id = continuedRunId(id);
      chain.push(id);
    }
    if (chain[chain.length - 1] !== o.currentRunId) chain.splice(0, chain.length, o.currentRunId);
    for (const id of chain) out.push({ type: 'ChildStarted', payload: { path, callId: o.callId, childRunId: id, closedAt: o.closedAt || 0 } });
  }
  if (isOpen(o.status) || o.status === 'continued') return out;
  out.push(outcomeDelivery(path, { ...o, childRunId: o.currentRunId }));
  return out;
}

/** The delivery a parent journals for a closed child. */
export function outcomeDelivery(path: string, o: ChildOutcome): NewEvent {
  const base = { path, callId: o.callId, childRunId: o.childRunId, closedAt: o.closedAt };
  const type = OUTCOME_EVENT[o.status as ClosedStatus];
  if (type === 'ChildCompleted') return { type, payload: { ...base, result: o.result } };
  if (type === 'ChildFailed') return { type, payload: { ...base, error: o.error ?? { name: 'Error', message: 'child failed' } } };
  return { type, payload: { ...base, ...(o.error ? { error: o.error } : {}) } } as NewEvent;
}

/**
 * Everything new for the run: closed children not yet journaled, due timers, results of local work and, when
 * `checkInbox` (the run was woken from outside, or just loaded), signals and a cancel request.
 */
export async function collectDeliveries(host: RunHost, engine: RunEngine, local: NewEvent[], checkInbox = true): Promise<NewEvent[]> {
  const out = local.slice();
  const now = host.journal.clock.now();
  out.push(...engine.dueTimers(now));
  const open = engine.openChildren();
  const [outcomes, inbox] = await Promise.all([
    open.length ? host.journal.childOutcomes(engine.run.runId, open) : [],
    checkInbox ? host.journal.inbox(engine.run.runId) : null,
  ]);
  for (const o of outcomes) {
    const at = engine.childPath(o.childRunId);
    if (at) out.push(...outcomeDeliveries(at.path, at.currentRunId, o));
  }
  if (inbox) {
    if (inbox.cancel && !engine.cancelRequested) {
      const c = inbox.cancel;
      out.push({ type: 'CancelRequested', payload: { reason: c.reason, deadline: c.deadline, closedAt: c.requestedAt } });
    }
    for (const sg of inbox.signals) {
      if (!engine.hasSignal(sg.signalId)) out.push({ type: 'SignalReceived', payload: { signalId: sg.signalId, name: sg.name, payload: sg.payload, closedAt: sg.sentAt } });
    }
  }
  return out;
}

/** The journal's form of the engine's close. */
function closeOf(close: EngineClose): NonNullable<Commit['close']> {
  switch (close.status) {
    case 'completed':
      return { status: 'completed', result: close.result };
    case 'failed':
      return { status: 'failed', error: close.error };
    case 'cancelled':
      return { status: 'cancelled', error: close.error, ...(close.result !== undefined ? { result: close.result } : {}) };
    case 'continued':
      return { status: 'continued', next: close.next };
    case 'timed_out':
      return { status: 'timed_out', error: close.error };
  }
}

export interface StepOptions {
  /** Give up the lease in the same commit when nothing local is pending. */
  releaseWhenIdle: boolean;
  /** Lease new children to this worker so it can run them at once. */
  leaseChildren: boolean;
  /** Read the run's inbox (signals, cancel request). Default true. */
  checkInbox?: boolean;
  /**
   * Sees the run's wait before a commit that does not close it. A host that cannot go on with the run (an open
   * activity it does not have, and nothing else it runs) returns the wait to commit instead (not busy, due at the
   * next attempt) and the stall to record: the run is then released in that commit (RunRecord.stall).
   */
  stall?: (wait: WaitSpec) => { wait: WaitSpec; stall: RunStall } | undefined;
}

export type StepResult =
  | { kind: 'committed'; output: ActivationOutput; wait: WaitSpec; commit: CommitResult; released: boolean }
  | { kind: 'blocked'; error: Error; commit: CommitResult };

/**
 * Runs one activation and commits it. A NonDeterminismError or corrupt journal blocks the run (journaled as
 * RunBlocked, status `blocked`) instead of failing it. A LeaseLostError propagates: the caller must drop the engine.
 */
export async function step(
  host: RunHost,
  lease: Lease,
  engine: RunEngine,
  local: NewEvent[],
  options: StepOptions,
  /**
   * Runs before the commit with the activation's output and returns the output to commit: the host may fold more
   * into the same activation (in-process activity results, inline children's outcomes) through `engine.activate`.
   */
  prepare?: (output: ActivationOutput) => Promise<ActivationOutput>,
): Promise<StepResult> {
  const committedSeq = engine.committedSeq;
  try {
    const deliveries = await collectDeliveries(host, engine, local, options.checkInbox ?? true);
    let output = engine.activate(deliveries, host.journal.clock.now());
    if (prepare && !output.close) output = await prepare(output);
    let wait = engine.waitSpec();
    const stalled = output.close ? undefined : options.stall?.(wait);
    if (stalled) wait = stalled.wait;
    const release = options.releaseWhenIdle && !wait.busy && !output.close;
    const commit = await host.journal.commit(lease, {
      afterSeq: committedSeq,
      events: output.events,
      children: output.children,
      wait,
      ...(output.close ? {} : { waits: storedWaits(engine.openWaits()) }),
      ...(output.close ? { close: closeOf(output.close) } : {}),
      ...(output.signals.length ? { signals: output.signals } : {}),
      ...(output.closeChildren.length ? { closeChildren: output.closeChildren } : {}),
      ...(host.engineOptions.maxChildDepth !== undefined ? { maxChildDepth: host.engineOptions.maxChildDepth } : {}),
      release,
      ...(stalled ? { stall: stalled.stall } : {}),
      leaseChildren: options.leaseChildren,
    });
    engine.markCommitted();
    // Telemetry of what this commit journaled (children started and closed), never of replayed history.
    emitChildEvents(engine.run.runId, output.events, engine.events, committedSeq);
    return { kind: 'committed', output, wait, commit, released: release || !!output.close };
  } catch (err) {
    if (isBlocking(err)) return block(host, lease, committedSeq, err);
    throw err;
  }
}

/** Errors that block a run instead of failing it: the code no longer replays its journal, or it has a bug. */
export function isBlocking(err: unknown): err is NonDeterminismError | CorruptJournalError | WorkflowCodeError {
  return err instanceof NonDeterminismError || err instanceof CorruptJournalError || err instanceof WorkflowCodeError;
}

export async function block(host: RunHost, lease: Lease, afterSeq: number, error: Error): Promise<StepResult> {
  // A bug in the workflow code is recorded as the code's own error (name, message, stack), which is what an operator
  // needs to fix it; the wrapper only said "this blocks".
  const serialized = serializeError(error instanceof WorkflowCodeError && error.cause instanceof Error ? error.cause : error);
  const commit = await host.journal.commit(lease, {
    afterSeq,
    events: [{ type: 'RunBlocked', payload: { error: serialized } }],
    children: [],
    wait: { timerAt: null, onClose: [], onFailure: [], onAllClosed: [], busy: false },
    block: serialized,
  });
  telemetry.emitEvent('run.blocked', { runId: lease.runId, error: error.message });
  return { kind: 'blocked', error, commit };
}

export function mergeOutputs(a: ActivationOutput, b: ActivationOutput): ActivationOutput {
  return {
    events: [...a.events, ...b.events],
    children: [...a.children, ...b.children],
    activities: [...a.activities, ...b.activities],
    signals: [...a.signals, ...b.signals],
    closeChildren: [...a.closeChildren, ...b.closeChildren],
    ...(b.close ?? a.close ? { close: (b.close ?? a.close)! } : {}),
  };
}
