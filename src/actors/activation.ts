import type { Logger } from 'pino';
import { runActivity, unavailableActivityBackoffMs } from '../runtime/activities.js';
import type { AbortLatch } from '../runtime/abort-latch.js';
import { comparePaths, RunEngine, type ActivationOutput, type ActivityTask, type EngineClose, type EngineOptions } from '../runtime/engine.js';
import { CancelledError, CorruptJournalError, NonDeterminismError, serializeError, WorkflowCodeError } from '../runtime/errors.js';
import { STORED_WAITS_LIMIT } from '../runtime/waits.js';
import { runStartedPayload, type EventPayloads, type JournalEvent, type NewEvent } from '../runtime/events.js';
import type { Registry } from '../runtime/registry.js';
import { emitChildEvents, telemetry } from '../runtime/telemetry.js';
import { outcomeDeliveries, outcomeDelivery } from '../runtime/runs.js';
import { type ChildOutcome, type Commit, type CommitResult, type Inbox, type Journal, type Lease, type NewRun, type RunRecord, type RunStall, type WaitSpec } from '../journal/journal.js';
import { LocalWork, settleWithin } from './local-work.js';
import { observe, type RunObserver } from './observer.js';
import { activationSpan, forgetActivities, recordActivity, stampRuns } from '../telemetry/otel.js';

export { LocalWork, settleWithin } from './local-work.js';

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

  /** Whether an engine of the run is here (at whatever seq). */
  has(runId: string): boolean {
    return this.map.has(runId);
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
export async function loadEngine(
  host: RunHost,
  run: Pick<RunRecord, 'runId' | 'workflow' | 'workflowId' | 'depth' | 'queue' | 'lastSeq'>,
  options: { cacheChecked?: boolean; events?: JournalEvent[] } = {},
): Promise<RunEngine> {
  const cached = options.cacheChecked ? undefined : host.cache.take(run.runId, run.lastSeq);
  if (cached) return cached;
  // (the journal as its lease brought it, else read now)
  return replayEngine(host, run, options.events ?? (await host.journal.readEvents(run.runId)));
}

/** A run's engine rebuilt from its journal (throws what the replay throws: changed code, a broken journal). */
export function replayEngine(host: RunHost, run: Pick<RunRecord, 'runId' | 'workflow' | 'workflowId' | 'depth' | 'queue'>, events: JournalEvent[]): RunEngine {
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

// (the child-outcome -> delivery mapping is the runtime's: runtime/runs.ts)
export { outcomeDeliveries, outcomeDelivery } from '../runtime/runs.js';

/**
 * Everything new for the run: closed children not yet journaled, due timers, results of local work and, when
 * `checkInbox` (the run was woken from outside, or just loaded), signals and a cancel request.
 */
export async function collectDeliveries(host: RunHost, engine: RunEngine, local: NewEvent[], checkInbox = true, knownInbox: Inbox | null = null): Promise<NewEvent[]> {
  const out = local.slice();
  const now = host.journal.clock.now();
  out.push(...engine.dueTimers(now));
  const open = engine.openChildren();
  const [outcomes, inbox] = await Promise.all([
    open.length ? host.journal.childOutcomes(engine.run.runId, open) : [],
    knownInbox ?? (checkInbox ? host.journal.inbox(engine.run.runId) : null),
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
      if (engine.hasSignal(sg.signalId)) continue;
      const received: EventPayloads['SignalReceived'] = { signalId: sg.signalId, name: sg.name, payload: sg.payload, closedAt: sg.sentAt };
      if (sg.traceparent) received.traceparent = sg.traceparent; // (OpenTelemetry: the span link to the sender)
      out.push({ type: 'SignalReceived', payload: received });
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
  /** Lease new children to this worker so it can run them at once: all, or those the function picks (at commit). */
  leaseChildren: boolean | ((output: ActivationOutput) => ReadonlySet<string>);
  /** Read the run's inbox (signals, cancel request). Default true. */
  checkInbox?: boolean;
  /** The inbox as read with the lease (acquireMany): used instead of reading it again. */
  inbox?: Inbox | null;
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
  // OpenTelemetry (null when off): ended only once this activation's commit succeeded (never on replay).
  const span = activationSpan(engine);
  try {
    const deliveries = await collectDeliveries(host, engine, local, options.checkInbox ?? true, options.inbox ?? null);
    // A cancel request voids the run's lease (Journal.cancel). An activation that learns of one from the inbox, rather
    // than with a lease granted after it, checks that its lease still holds before it runs the code's cleanup: eager
    // activities would otherwise run here, fail to commit, and run again wherever the run goes next.
    if (!options.inbox && deliveries.some((d) => d.type === 'CancelRequested')) {
      await host.journal.renew(lease, Math.max(1000, lease.expiresAt - host.journal.clock.now()));
    }
    let output = engine.activate(deliveries, host.journal.clock.now());
    span?.stamp(output);
    if (prepare && !output.close) output = await prepare(output);
    span?.stamp(output);
    let wait = engine.waitSpec();
    const stalled = output.close ? undefined : options.stall?.(wait);
    if (stalled) wait = stalled.wait;
    const release = options.releaseWhenIdle && !wait.busy && !output.close;
    const commit = await host.journal.commit(lease, {
      afterSeq: committedSeq,
      events: output.events,
      children: output.children,
      wait,
      ...(output.close ? {} : { waits: engine.openWaits(STORED_WAITS_LIMIT) }),
      ...(output.close ? { close: closeOf(output.close), ...(engine.startedChildren ? {} : { childless: true }) } : {}),
      ...(output.signals.length ? { signals: output.signals } : {}),
      ...(output.closeChildren.length ? { closeChildren: output.closeChildren } : {}),
      ...(host.engineOptions.maxChildDepth !== undefined ? { maxChildDepth: host.engineOptions.maxChildDepth } : {}),
      release,
      ...(stalled ? { stall: stalled.stall } : {}),
      leaseChildren: typeof options.leaseChildren === 'function' ? options.leaseChildren(output) : options.leaseChildren,
    });
    engine.markCommitted();
    // Telemetry of what this commit journaled (children started and closed), never of replayed history.
    emitChildEvents(engine.run.runId, output.events, engine.events, committedSeq);
    span?.committed(output.events, committedSeq, output);
    return { kind: 'committed', output, wait, commit, released: release || !!output.close };
  } catch (err) {
    if (isBlocking(err)) {
      const blocked = await block(host, lease, committedSeq, err);
      span?.blocked(err, committedSeq);
      return blocked;
    }
    forgetActivities(engine.run.runId);
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

/**
 * Appends `more` to `into`, an output its caller took from the engine (so owns), and returns it. In place: an
 * activation folding rounds of inline work into a large fan-out's output copied all its children every round.
 */
export function appendOutput(into: ActivationOutput, more: ActivationOutput): ActivationOutput {
  for (const key of ['events', 'children', 'activities', 'signals', 'closeChildren'] as const) {
    const to = into[key] as unknown[];
    for (const x of more[key]) to.push(x); // (not push(...more): a spread of 100,000 arguments overflows the stack)
  }
  if (more.close) into.close = more.close;
  return into;
}

// ---------------------------------------------------------------------------------------------------------------
// The activation a host performs for a run it holds: local work (activities run in this process), eager activities,
// inline children. Moved here from the run actor so that every host runs the same code: the worker's run actor
// (run-machine.ts, which keeps only the lifecycle) and the deterministic simulator of skein/testing.

/**
 * What an activation needs from the process that hosts it. The worker gives real time and real activity functions;
 * the simulator gives a virtual clock and scripted activities, so the same code is explored deterministically.
 */
export interface ActivationHost {
  /** The journal, the registered workflows and activities, engine options and the sticky cache. */
  host: RunHost;
  log: Pick<Logger, 'warn'>;
  /** Longest time an activation waits for its own in-process activities before committing without them. */
  inlineActivityBudgetMs: number;
  /**
   * How long an activation may spend running the children it starts inline (0: never). A child that closes within
   * it is committed, closed, in the parent's transaction.
   */
  inlineChildBudgetMs: number;
  /** The queues this host serves (a worker's list): only children on them may run inline. */
  queues: { includes(queue: string): boolean };
  /** How many more runs this host may take now: no more children than that run inline (the rest go elsewhere). */
  capacityLeft(): number;
  /**
   * Called after each commit, so the host can run newly leased children (`created` gives the spec of a child this
   * commit created and left open, so it need not be read back) and route parent wake-ups.
   */
  afterCommit(runId: string, result: CommitResult, timerAt: number | null, created: CreatedChildren): void;
  /**
   * Runs one activity now, in this process (retries included), and resolves with its delivery. Default: the registry's
   * function, with its ActivityContext (`call` says whose it is and the signal that aborts it).
   */
  runActivity?(runId: string, task: ActivityTask, call?: ActivityCall): Promise<NewEvent>;
  /** Waits for `p`, not past `deadline` (on the budget clock). Default: settleWithin (one event-loop turn, then real time). */
  settle?(p: Promise<unknown>, deadline: number): Promise<void>;
  /** The clock budgets are measured on. Default: wall time (Date.now). */
  budgetNow?(): number;
  /**
   * Whether this host can run an activity (one it cannot is not run, nor failed: the run stalls, see stallOf).
   * Default: registered in the registry. (The simulator runs every name: an unknown one fails as runActivity fails it.)
   */
  hasActivity?(name: string): boolean;
  /** Told what happens to the runs (started, closed, blocked, activity retries): the worker's log lines and metrics. */
  observer?: RunObserver;
}

/**
 * A run this host created in its own commit (a child), known without reading the journal; `prepared` when its
 * parent's activation already ran its first activation (its engine holds that uncommitted output).
 */
export type FreshRun = NewRun & { parentRunId: string; depth: number; prepared?: PreparedRun };

/**
 * The children a commit created and left open, by run id (undefined for any other id). A lookup, not a list: a
 * large fan-out leases a few hundred of its children to this worker, and a spec object for each of 100,000 others
 * was built for nothing.
 */
export type CreatedChildren = (childRunId: string) => FreshRun | undefined;

/** A new run's first activation done ahead of time by its parent's activation: the engine (uncommitted) and its work. */
export interface PreparedRun {
  engine: RunEngine;
  work: LocalWork;
}

/** The most an activation spends running a large fan-out's children inline before it commits (see activateRun). */
export const INLINE_FANOUT_CAP_MS = 4000;

/** A run the host holds, as an activation sees it. */
export interface HeldRun {
  runId: string;
  lease: Lease;
  engine: RunEngine;
  work: LocalWork;
  /** This activation was caused by a wake-up from outside (or is the first): read the inbox. */
  checkInbox: boolean;
  /** The inbox the lease brought (first activation of a run leased by acquireMany). */
  inbox?: Inbox | null;
}

/** What an activity's context needs from the activation that starts it. */
export interface ActivityCall {
  workflowId: string;
  /** Aborted by LocalWork (the run's cancel, its actor's end): the activity's `ctx.signal` follows it. */
  signal: AbortLatch;
  /** Told of each failed attempt that is retried (OpenTelemetry attempt spans), when someone listens. */
  onRetry?: (r: { attempt: number; error: unknown; delayMs: number }) => void;
}

/**
 * Whether this host runs a new child itself, now: it is due (a retry's backoff may not be over), on a queue the host
 * serves, of a workflow it registers, and not already closed inline. One rule for the children run inline and those
 * leased to this worker at the commit.
 */
function runsHere(h: ActivationHost, c: NewRun, now: number): boolean {
  return !c.completed && (c.startAt ?? now) <= now && h.queues.includes(c.queue) && h.host.registry.hasWorkflow(c.workflow);
}

function canRun(h: ActivationHost): (name: string) => boolean {
  return h.hasActivity ? (name) => h.hasActivity!(name) : (name) => h.host.registry.hasActivity(name);
}

function activityRunner(h: ActivationHost): (engine: RunEngine, t: ActivityTask, signal: AbortLatch) => Promise<NewEvent> {
  // The logger activities get (bound to their run by runActivity): the worker's, when the host has a full logger.
  const log = typeof (h.log as Partial<Logger>).child === 'function' ? (h.log as Logger) : undefined;
  const clock = h.host.journal.clock;
  return h.runActivity
    ? (engine, t, signal) => {
        // A host's own runner (the simulator) gets attempt spans too: it reports retries through the call.
        const traced = recordActivity(engine.run.runId, t);
        if (!traced) return h.runActivity!(engine.run.runId, t, { workflowId: engine.run.workflowId, signal });
        return h.runActivity!(engine.run.runId, t, { workflowId: engine.run.workflowId, signal, onRetry: (r) => traced.retry(r) }).finally(() => traced.done());
      }
    : (engine, t, signal) => {
        // OpenTelemetry (null when off): attempts are recorded here, emitted by the commit that journals the outcome.
        const traced = recordActivity(engine.run.runId, t);
        const observed = h.observer ? (r: { attempt: number; error: unknown; delayMs: number }) => observe(h.observer, (o) => o.activityRetry(engine.run.runId, engine, t, r)) : undefined;
        const onRetry = traced ? (r: { attempt: number; error: unknown; delayMs: number }) => (traced.retry(r), observed?.(r)) : observed;
        const result = runActivity(h.host.registry, t, {
          clock,
          signal,
          run: { runId: engine.run.runId, workflowId: engine.run.workflowId },
          ...(log ? { log } : {}),
          ...(onRetry ? { onRetry } : {}),
        });
        return traced ? result.finally(() => traced.done()) : result;
      };
}

/**
 * One activation of a held run: restart the activities the journal shows open, let the engine decide, fold in what
 * finishes within the budget (inline children, eager activities), commit, and tell the host what was created.
 */
export async function activateRun(services: ActivationHost, ctx: HeldRun): Promise<StepResult> {
  const { lease, engine, work } = ctx;
  const host = services.host;
  const run = activityRunner(services);
  const settle = services.settle ?? settleWithin;
  const budgetNow = services.budgetNow ?? Date.now;
  const has = canRun(services);
  // (only activities registered here: one that is not is not run, nor failed, see stallOf)
  const startAll = (w: LocalWork, tasks: ActivityTask[]) =>
    tasks.filter((t) => has(t.name)).map((t) => w.start(t, (signal) => run(engine, t, signal)));
  // Activities the journal shows unfinished and nobody here runs (the previous owner died): run them again.
  startAll(work, engine.openActivities());
  // What runs before this activation: a cancel request it journals aborts these (not the cleanup the code starts).
  const cancelledBefore = engine.cancelRequested;
  const before = cancelledBefore ? [] : work.running();
  const prepared = new Map<string, PreparedRun>();
  let stalled: { stall: RunStall; timerAt: number | null } | undefined;
  const stall = (wait: WaitSpec) => {
    const s = stallOf(services, ctx, wait);
    if (s) stalled = { stall: s.stall, timerAt: wait.timerAt };
    return s;
  };
  // The children this worker will run: those prepared inline first, then as many as it has room for. The others are
  // not leased here at all (announced to every worker) instead of leased and given back one by one.
  const leaseChildren = (output: ActivationOutput): ReadonlySet<string> => {
    const take = new Set<string>(prepared.keys());
    let room = services.capacityLeft() - take.size;
    const now = host.journal.clock.now();
    for (const c of output.children) {
      if (room <= 0) break;
      if (take.has(c.runId) || !runsHere(services, c, now)) continue;
      take.add(c.runId);
      room--;
    }
    return take;
  };
  const result = await step(host, lease, engine, work.take(), { releaseWhenIdle: true, leaseChildren, checkInbox: ctx.checkInbox, inbox: ctx.inbox ?? null, stall }, async (first) => {
    let output = first;
    // The inline budget grows with the fan-out (20 ms per 200 children by default, at most INLINE_FANOUT_CAP_MS): a
    // child run inline costs a fraction of one handed over to its own actor, so a fixed budget would make the cost per
    // child grow with N (10,000 children would mostly be handed over).
    const fanout = first.children.length;
    const childBudget = Math.min(services.inlineChildBudgetMs * Math.max(1, fanout / 200), Math.max(services.inlineChildBudgetMs, INLINE_FANOUT_CAP_MS));
    const deadline = budgetNow() + Math.max(services.inlineActivityBudgetMs, childBudget);
    // How far into output.children the inline attempts have looked: the list only grows at its end, so each round
    // reads the new children, not the whole fan-out again (100,000 children were filtered once per round of 1,000).
    let looked = 0;
    for (;;) {
      let deliveries: NewEvent[] = [];
      const now = host.journal.clock.now();
      // Inline children: a child this activation starts runs its first activation right here; if it closes (it
      // needed only quick activities), it is committed closed in this same transaction and its outcome is journaled
      // here at once. Otherwise its actor takes over the engine and the activities already running.
      // Never more than this worker will run: a child given back to other workers would redo its activities.
      const fresh: NewRun[] = [];
      if (services.inlineChildBudgetMs > 0 && budgetNow() < deadline) {
        const room = services.capacityLeft() - prepared.size;
        const children = output.children;
        while (looked < children.length && fresh.length < room) {
          const c = children[looked++]!;
          if (runsHere(services, c, now)) fresh.push(c);
        }
      }
      if (fresh.length) {
        stampRuns(engine, fresh); // (OpenTelemetry: the trace context goes into the RunStarted its engine is built from)
        const tries = await Promise.all(
          fresh.map((c) => attemptInline(services, { ...c, parentRunId: ctx.runId, depth: c.depth ?? engine.run.depth + 1 }, deadline, run, has)),
        );
        fresh.forEach((c, i) => {
          const t = tries[i]!;
          if (t.kind === 'completed') {
            c.completed = t.completed;
            const d = outcomeDelivery(engine.childPath(c.runId)!.path, t.outcome);
            if (d) deliveries.push(d);
          } else if (t.kind === 'prepared') prepared.set(c.runId, t.prepared);
        });
      } else {
        // Eager activities: run what this activation issued right away and, if they finish within the budget,
        // journal the results in this same commit (one transaction instead of two).
        // (the engine says which are open: an output handed over from an inline attempt lists some already done)
        const started = startAll(work, engine.openActivities());
        if (started.length && services.inlineActivityBudgetMs > 0) await settle(Promise.all(started), deadline);
        deliveries = work.take();
      }
      if (!deliveries.length || engine.closed) break;
      const more = engine.activate(deliveries, host.journal.clock.now());
      output = appendOutput(output, more);
      if (output.close || !more.events.length) break; // nothing new came of it: commit what we have
    }
    return output;
  });
  // Activities issued and not finished inline keep running here; their results come with ACTIVITY_DONE.
  if (result.kind === 'committed' && !engine.closed) startAll(work, engine.openActivities());
  // A graceful cancel, journaled: the code got CancelledError at its yield, so the activities it was waiting on are
  // aborted (ctx.signal, reason CancelledError); they end failed with it (journaled as history if the run is still
  // open then). Cleanup activities the code starts from here on run normally.
  if (result.kind === 'committed' && !cancelledBefore && engine.cancelReason !== null) work.abort(new CancelledError(engine.cancelReason), before);
  let byId: Map<string, NewRun> | undefined;
  const created: CreatedChildren = (childRunId) => {
    if (result.kind !== 'committed') return undefined;
    byId ??= new Map(result.output.children.map((c) => [c.runId, c]));
    const c = byId.get(childRunId);
    if (!c || c.completed) return undefined;
    const p = prepared.get(c.runId);
    return { ...c, parentRunId: ctx.runId, depth: c.depth ?? engine.run.depth + 1, ...(p ? { prepared: p } : {}) };
  };
  if (result.kind === 'committed' && stalled) {
    const st = stalled.stall;
    services.log.warn(
      { runId: ctx.runId, activity: st.activity, path: st.path, attempts: st.attempts, nextAttemptAt: st.nextAttemptAt },
      'activity not registered in this worker: run released, to be retried by a worker that has it',
    );
  }
  // (a stalled run's next attempt is not a timer of ours: whichever worker polls first takes it, see stallOf)
  services.afterCommit(ctx.runId, result.commit, result.kind === 'committed' ? (stalled ? stalled.timerAt : result.wait.timerAt) : null, created);
  return result;
}

/**
 * A run that needs an activity this worker does not register, with nothing else to do here (no activity of it runs
 * or is about to run here), is stalled: "not registered here" is not a failure of the activity, so nothing is
 * journaled for it. The commit records the stall (RunRecord.stall), is not busy and wakes the run at its next attempt,
 * after a backoff (unavailableActivityBackoffMs: 1 s doubling to 60 s, jittered), and releases it. Any worker may
 * then claim it; one that has the activity runs it, one that has not stalls it again with `attempts` + 1 (the count
 * comes from the lease, so it survives a hand-over). Among several stalled activities, the first by call path.
 */
function stallOf(services: ActivationHost, ctx: HeldRun, wait: WaitSpec): { wait: WaitSpec; stall: RunStall } | undefined {
  const has = canRun(services);
  const open = ctx.engine.openActivities();
  const missing = open.filter((a) => !has(a.name));
  if (!missing.length || missing.length < open.length || ctx.work.size > 0) return undefined;
  const first = missing.sort((a, b) => comparePaths(a.path, b.path))[0]!;
  const prev = ctx.lease.stall;
  const same = prev?.reason === 'activity_unavailable' && prev.path === first.path && prev.activity === first.name;
  const now = services.host.journal.clock.now();
  const attempts = same ? prev.attempts + 1 : 1;
  const nextAttemptAt = now + unavailableActivityBackoffMs(attempts);
  const stall: RunStall = { reason: 'activity_unavailable', activity: first.name, path: first.path, workerId: ctx.lease.owner, attempts, since: same ? prev.since : now, nextAttemptAt };
  return { wait: { ...wait, busy: false, timerAt: Math.min(wait.timerAt ?? Infinity, nextAttemptAt) }, stall };
}

type InlineAttempt =
  | { kind: 'completed'; completed: NonNullable<NewRun['completed']>; outcome: ChildOutcome }
  | { kind: 'prepared'; prepared: PreparedRun }
  | { kind: 'skipped' };

/**
 * Runs a just-started child's first activation inside its parent's: its generator and its activities, until it
 * closes, issues something that needs its own commit (children, signals, a timer or a wait), or the deadline passes.
 */
async function attemptInline(
  services: ActivationHost,
  spec: FreshRun,
  deadline: number,
  // (the parent activation's activity runner and registry check, made once for all its children)
  run: ReturnType<typeof activityRunner>,
  has: (name: string) => boolean,
): Promise<InlineAttempt> {
  const host = services.host;
  const settle = services.settle ?? settleWithin;
  let engine: RunEngine;
  try {
    engine = freshEngine(host, spec);
  } catch {
    return { kind: 'skipped' };
  }
  const work = new LocalWork(() => {});
  let out = engine.takeOutput();
  for (;;) {
    if (engine.closed || out.children.length || out.signals.length || out.closeChildren.length) break;
    // (an activity not registered here is left to the child's own actor, which stalls the child: see stallOf)
    const pending = engine.openActivities().filter((a) => !work.has(a.path) && !work.isDone(a.path) && has(a.name));
    if (!pending.length && !work.size) break; // waiting on a timer or a signal: its own actor waits
    const started = pending.map((t) => work.start(t, (signal) => run(engine, t, signal)));
    await settle(Promise.all(started.length ? started : [work.idle()]), deadline);
    const ready = work.take();
    if (!ready.length) break; // out of time
    out = appendOutput(out, engine.activate(ready, host.journal.clock.now()));
  }
  const c = engine.closed ? out.close : undefined;
  if (c && c.status !== 'continued' && !out.children.length && !out.signals.length && !out.closeChildren.length && !work.size) {
    const completed: NonNullable<NewRun['completed']> =
      c.status === 'completed' ? { events: out.events, status: 'completed', result: c.result } : { events: out.events, status: c.status, error: c.error };
    const outcome: ChildOutcome = {
      childRunId: spec.runId,
      currentRunId: spec.runId,
      callId: spec.callId ?? '',
      status: c.status,
      result: c.status === 'completed' ? c.result : null,
      error: c.status === 'completed' ? null : c.error,
      closedAt: host.journal.clock.now(),
    };
    return { kind: 'completed', completed, outcome };
  }
  engine.restoreOutput(out);
  return { kind: 'prepared', prepared: { engine, work } };
}

/** The engine of a run the host created itself, or null (then it is loaded the ordinary way). */
export function tryFreshEngine(host: RunHost, fresh: FreshRun): RunEngine | null {
  try {
    return freshEngine(host, fresh);
  } catch {
    return null;
  }
}
