import { assign, fromPromise, setup, type ActorRefFrom } from 'xstate';
import type { Logger } from 'pino';
import { runActivity, unavailableActivityBackoffMs } from '../runtime/activities.js';
import { comparePaths, type ActivityTask, type RunEngine } from '../runtime/engine.js';
import { LeaseLostError } from '../runtime/errors.js';
import type { NewEvent } from '../runtime/events.js';
import type { ChildOutcome, CommitResult, Lease, NewRun, RunStall, WaitSpec } from '../journal/journal.js';
import { block, freshEngine, isBlocking, loadEngine, mergeOutputs, outcomeDelivery, step, type RunHost, type StepResult } from './activation.js';

/**
 * The run actor: one XState actor per active run, driving its generator through activations.
 *
 *   starting ──> loading ──> activating ──> closed | blocked   (final: the run is over, or needs an operator)
 *      │                        ^   │   ^
 *      └────────────────────────┘   │   │     (a run this worker just created skips loading: no read needed)
 *                                   │   │
 *                                   v   │  ACTIVITY_DONE / WAKE
 *                                 working  (holds the lease while activities run here; renews it)
 *
 *   activating ──> suspended  (final: lease released, live engine parked in the sticky cache)
 *
 *   any state ──> lost    (final: the lease was taken over or cleared; nothing more is written)
 *   any state ──> stopped (final: STOP, the run was cancelled or terminated from outside)
 *
 * Side effects live in named actors (load, activate, renew) and actions; the machine itself only says when.
 */

/** What a run actor needs from the worker that hosts it. */
export interface RunServices {
  host: RunHost;
  log: Logger;
  leaseMs: number;
  /** Longest time an activation waits for its own in-process activities before committing without them. */
  inlineActivityBudgetMs: number;
  /**
   * How long an activation may spend running the children it starts inline (0: never). A child that closes within
   * it is committed, closed, in the parent's transaction.
   */
  inlineChildBudgetMs: number;
  /** The queues this worker serves: only children on them may run inline. */
  queues: readonly string[];
  /** How many more runs this worker may take now: no more children than that run inline (the rest go elsewhere). */
  capacityLeft(): number;
  /**
   * Called after each commit, so the worker can run newly leased children (whose specs are given, so their actors
   * need not read them back) and route parent wake-ups.
   */
  afterCommit(runId: string, result: CommitResult, timerAt: number | null, created: FreshRun[]): void;
}

/** Activities running in this process for one run; results wait here until the next activation journals them. */
export class LocalWork {
  private readonly inflight = new Map<string, Promise<void>>();
  private ready: NewEvent[] = [];
  /** Paths of the results in `ready`: finished here, not yet handed to an activation. */
  private readonly readyPaths = new Set<string>();
  constructor(private onReady: () => void) {}

  /** Who is told when a result is ready (a run's actor takes over work its parent's actor started for it). */
  setListener(onReady: () => void): void {
    this.onReady = onReady;
  }

  get size(): number {
    return this.inflight.size;
  }

  /** Finished here, result not yet taken. */
  isDone(path: string): boolean {
    return this.readyPaths.has(path);
  }

  /** Resolves when nothing runs here any more. */
  async idle(): Promise<void> {
    await Promise.all([...this.inflight.values()]);
  }

  has(path: string): boolean {
    return this.inflight.has(path);
  }

  /**
   * Starts a task unless it already runs here, or already finished here with its result waiting for the next
   * activation; returns its completion either way. (Each activation first restarts every activity the journal shows
   * open, for runs taken over from a dead worker; without the second check an activity that had just finished here,
   * and whose ACTIVITY_DONE caused that very activation, would be executed a second time.)
   */
  start(task: ActivityTask, run: () => Promise<NewEvent>): Promise<void> {
    const running = this.inflight.get(task.path);
    if (running) return running;
    if (this.readyPaths.has(task.path)) return Promise.resolve();
    const p = run().then((delivery) => {
      this.inflight.delete(task.path);
      this.ready.push(delivery);
      this.readyPaths.add(task.path);
      this.onReady();
    });
    this.inflight.set(task.path, p);
    return p;
  }

  take(): NewEvent[] {
    const r = this.ready;
    this.ready = [];
    this.readyPaths.clear();
    return r;
  }

  get hasReady(): boolean {
    return this.ready.length > 0;
  }
}

/**
 * A run this worker created in its own commit (a child), known without reading the journal; `prepared` when its
 * parent's actor already ran its first activation (its engine holds that uncommitted output).
 */
export type FreshRun = NewRun & { parentRunId: string; depth: number; prepared?: PreparedRun };

export interface RunActorInput {
  runId: string;
  lease: Lease;
  /** Set when the worker itself just created this run: the actor builds its engine without reading the journal. */
  fresh?: FreshRun;
  services: RunServices;
  /** Tells the actor system this run actor has ended (it is then stopped and forgotten). */
  report: (event: RunEnded) => void;
}

export interface RunEnded {
  type: 'RUN_ENDED';
  runId: string;
  reason: RunEndReason;
  wakePending: boolean;
}

export type RunEndReason = 'closed' | 'suspended' | 'blocked' | 'lost' | 'failed' | 'stopped';

export interface RunContext {
  runId: string;
  lease: Lease;
  fresh: FreshRun | undefined;
  services: RunServices;
  report: (event: RunEnded) => void;
  engine: RunEngine | null;
  work: LocalWork | null;
  /** A wake-up arrived while an activation was in flight: activate again before suspending. */
  wakePending: boolean;
  /** This activation was caused by a wake-up from outside (or is the first): read the inbox. */
  checkInbox: boolean;
  activations: number;
  error: string | null;
  /** Renewals in a row that failed on something other than a lost lease (see 'renewing'). */
  renewFailures: number;
}

export type RunEvent = { type: 'WAKE' } | { type: 'ACTIVITY_DONE' } | { type: 'STOP' } | { type: 'LEASE'; lease: Lease };

async function activate(ctx: RunContext): Promise<StepResult> {
  const { services, lease } = ctx;
  const engine = ctx.engine!;
  const work = ctx.work!;
  const host = services.host;
  // (only activities registered here: one that is not is not run, nor failed, see stallOf)
  const startAll = (w: LocalWork, tasks: ActivityTask[]) =>
    tasks.filter((t) => host.registry.hasActivity(t.name)).map((t) => w.start(t, () => runActivity(host.registry, t, { clock: host.journal.clock })));
  // Activities the journal shows unfinished and nobody here runs (the previous owner died): run them again.
  startAll(work, engine.openActivities());
  const prepared = new Map<string, PreparedRun>();
  let stalled: { stall: RunStall; timerAt: number | null } | undefined;
  const stall = (wait: WaitSpec) => {
    const s = stallOf(ctx, wait);
    if (s) stalled = { stall: s.stall, timerAt: wait.timerAt };
    return s;
  };
  const result = await step(host, lease, engine, work.take(), { releaseWhenIdle: true, leaseChildren: true, checkInbox: ctx.checkInbox, stall }, async (first) => {
    let output = first;
    const deadline = Date.now() + Math.max(services.inlineActivityBudgetMs, services.inlineChildBudgetMs);
    const attempted = new Set<string>();
    for (;;) {
      let deliveries: NewEvent[] = [];
      const now = host.journal.clock.now();
      // Inline children: a child this activation starts runs its first activation right here; if it closes (it
      // needed only quick activities), it is committed closed in this same transaction and its outcome is journaled
      // here at once. Otherwise its actor takes over the engine and the activities already running.
      const fresh =
        services.inlineChildBudgetMs > 0
          ? output.children.filter(
              (c) => !attempted.has(c.runId) && !c.completed && (c.startAt ?? now) <= now && services.queues.includes(c.queue) && host.registry.hasWorkflow(c.workflow),
            )
          : [];
      // Never more than this worker will run: a child given back to other workers would redo its activities.
      fresh.splice(Math.max(0, services.capacityLeft() - prepared.size));
      if (fresh.length && Date.now() < deadline) {
        const tries = await Promise.all(
          fresh.map((c) => attemptInline(services, { ...c, parentRunId: ctx.runId, depth: c.depth ?? engine.run.depth + 1 }, deadline)),
        );
        fresh.forEach((c, i) => {
          attempted.add(c.runId);
          const t = tries[i]!;
          if (t.kind === 'completed') {
            c.completed = t.completed;
            deliveries.push(outcomeDelivery(engine.childPath(c.runId)!.path, t.outcome));
          } else if (t.kind === 'prepared') prepared.set(c.runId, t.prepared);
        });
      } else {
        // Eager activities: run what this activation issued right away and, if they finish within the budget,
        // journal the results in this same commit (one transaction instead of two).
        // (the engine says which are open: an output handed over from an inline attempt lists some already done)
        const started = startAll(work, engine.openActivities());
        if (started.length && services.inlineActivityBudgetMs > 0) await settleWithin(Promise.all(started), deadline);
        deliveries = work.take();
      }
      if (!deliveries.length || engine.closed) break;
      const more = engine.activate(deliveries, host.journal.clock.now());
      output = mergeOutputs(output, more);
      if (output.close || !more.events.length) break; // nothing new came of it: commit what we have
    }
    return output;
  });
  // Activities issued and not finished inline keep running here; their results come with ACTIVITY_DONE.
  if (result.kind === 'committed' && !engine.closed) startAll(work, engine.openActivities());
  const created: FreshRun[] =
    result.kind === 'committed'
      ? result.output.children
          .filter((c) => !c.completed)
          .map((c) => {
            const p = prepared.get(c.runId);
            return { ...c, parentRunId: ctx.runId, depth: c.depth ?? engine.run.depth + 1, ...(p ? { prepared: p } : {}) };
          })
      : [];
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
function stallOf(ctx: RunContext, wait: WaitSpec): { wait: WaitSpec; stall: RunStall } | undefined {
  const registry = ctx.services.host.registry;
  const open = ctx.engine!.openActivities();
  const missing = open.filter((a) => !registry.hasActivity(a.name));
  if (!missing.length || missing.length < open.length || ctx.work!.size > 0) return undefined;
  const first = missing.sort((a, b) => comparePaths(a.path, b.path))[0]!;
  const prev = ctx.lease.stall;
  const same = prev?.reason === 'activity_unavailable' && prev.path === first.path && prev.activity === first.name;
  const now = ctx.services.host.journal.clock.now();
  const attempts = same ? prev.attempts + 1 : 1;
  const nextAttemptAt = now + unavailableActivityBackoffMs(attempts);
  const stall: RunStall = { reason: 'activity_unavailable', activity: first.name, path: first.path, workerId: ctx.lease.owner, attempts, since: same ? prev.since : now, nextAttemptAt };
  return { wait: { ...wait, busy: false, timerAt: Math.min(wait.timerAt ?? Infinity, nextAttemptAt) }, stall };
}

/** Waits for `p`, but not past `deadline`. One event-loop turn first: most activities are quick, and a fan-out of
 *  thousands of children would otherwise arm thousands of timers. */
async function settleWithin(p: Promise<unknown>, deadline: number): Promise<void> {
  let finished = false;
  void p.then(() => (finished = true));
  await new Promise<void>((r) => setImmediate(r));
  if (finished || Date.now() >= deadline) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))))]);
  clearTimeout(timer);
}

/** A new run's first activation done ahead of time by its parent's actor: the engine (uncommitted) and its work. */
export interface PreparedRun {
  engine: RunEngine;
  work: LocalWork;
}

type InlineAttempt =
  | { kind: 'completed'; completed: NonNullable<NewRun['completed']>; outcome: ChildOutcome }
  | { kind: 'prepared'; prepared: PreparedRun }
  | { kind: 'skipped' };

/**
 * Runs a just-started child's first activation inside its parent's: its generator and its activities, until it
 * closes, issues something that needs its own commit (children, signals, a timer or a wait), or the deadline passes.
 */
async function attemptInline(services: RunServices, spec: FreshRun, deadline: number): Promise<InlineAttempt> {
  const host = services.host;
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
    const pending = engine.openActivities().filter((a) => !work.has(a.path) && !work.isDone(a.path) && host.registry.hasActivity(a.name));
    if (!pending.length && !work.size) break; // waiting on a timer or a signal: its own actor waits
    const started = pending.map((t) => work.start(t, () => runActivity(host.registry, t, { clock: host.journal.clock })));
    await settleWithin(Promise.all(started.length ? started : [work.idle()]), deadline);
    const ready = work.take();
    if (!ready.length) break; // out of time
    out = mergeOutputs(out, engine.activate(ready, host.journal.clock.now()));
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

/** The engine of a run the worker created itself, or null (then the actor loads it the ordinary way). */
function tryFreshEngine(services: RunServices, fresh: FreshRun): RunEngine | null {
  try {
    return freshEngine(services.host, fresh);
  } catch {
    return null;
  }
}

export const runMachine = setup({
  types: {
    context: {} as RunContext,
    events: {} as RunEvent,
    input: {} as RunActorInput,
  },
  actors: {
    load: fromPromise<RunEngine | null, RunContext>(async ({ input }) => {
      if (input.fresh) return freshEngine(input.services.host, input.fresh);
      // The lease says where the journal stands: a cached engine at that seq is current, no read needed.
      if (input.lease.lastSeq !== undefined) {
        const cached = input.services.host.cache.take(input.runId, input.lease.lastSeq);
        if (cached) return cached;
      }
      const run = await input.services.host.journal.getRun(input.runId);
      if (!run || run.status !== 'running') throw new LeaseLostError(input.runId, `run is ${run?.status ?? 'missing'}`);
      try {
        // (the cache was asked already when the lease told us the journal head: once is enough)
        return await loadEngine(input.services.host, run, { cacheChecked: input.lease.lastSeq !== undefined });
      } catch (err) {
        // Replay found changed code (or a broken journal): block the run (journaled, status 'blocked') instead of
        // failing the activation, which would bring it back after every lease expiry.
        if (!isBlocking(err)) throw err;
        await block(input.services.host, input.lease, run.lastSeq, err);
        input.services.log.error({ runId: input.runId, err }, 'run blocked: its code no longer replays its journal, or throws a programming error');
        return null;
      }
    }),
    activate: fromPromise<StepResult, RunContext>(({ input }) => activate(input)),
    renew: fromPromise<Lease, RunContext>(({ input }) => input.services.host.journal.renew(input.lease, input.services.leaseMs)),
  },
  delays: {
    /**
     * Renew once a third of the lease has gone by since it was granted or last renewed. The deadline comes from the
     * lease itself, not from the time spent in 'working': a run whose activities finish one after another keeps
     * going through 'activating' and back, which restarts this timer each time, and with a fixed delay it would
     * never renew (commits do not extend a lease) and lose its lease to another worker while busy.
     */
    renewEvery: ({ context }) => {
      const third = Math.floor(context.services.leaseMs / 3);
      // after failed renewals (database unreachable): back off, 100 ms doubling, up to a third of the lease
      if (context.renewFailures > 0) return Math.min(third, 100 * 2 ** Math.min(context.renewFailures - 1, 20));
      const renewAt = context.lease.expiresAt - 2 * third;
      return Math.max(20, Math.min(renewAt - context.services.host.journal.clock.now(), third));
    },
  },
  guards: {
    isBlocked: ({ event }) => (event as unknown as { output: StepResult }).output.kind === 'blocked',
    isClosed: ({ context }) => context.engine?.closed === true,
    hasNews: ({ context }) => context.wakePending || context.work!.hasReady,
    /** More news arrived during the activation and the lease is still ours: go again. */
    newsAndHeld: ({ context, event }) => {
      const out = (event as unknown as { output: StepResult }).output;
      return out.kind === 'committed' && !out.released && (context.wakePending || context.work!.hasReady);
    },
    /** Activities of this run are still open: keep the lease while they run here. */
    isWorking: ({ context }) =>
      context.work!.size > 0 || (context.engine?.openActivities().some((a) => context.services.host.registry.hasActivity(a.name)) ?? false),
    leaseLost: ({ event }) => (event as unknown as { error: unknown }).error instanceof LeaseLostError,
  },
  actions: {
    noteWake: assign({ wakePending: true }),
    clearWake: assign({
      // Signals and cancel requests arrive with a wake-up; a run created by this worker has none yet.
      checkInbox: ({ context }) => context.wakePending || (context.activations === 0 && !context.fresh && context.lease.inboxPending !== false),
      wakePending: false,
      activations: ({ context }) => context.activations + 1,
    }),
    parkEngine: ({ context }) => {
      if (context.engine) context.services.host.cache.put(context.runId, context.engine);
    },
    dropEngine: ({ context }) => context.services.host.cache.delete(context.runId),
    recordError: assign({ error: ({ event }) => String((event as unknown as { error: unknown }).error) }),
    logError: ({ context, event }) =>
      context.services.log.error({ runId: context.runId, err: (event as unknown as { error: unknown }).error }, 'run activation failed'),
    /** A fenced write (commit, renew) was refused: another worker took the run over, or it was closed from outside. */
    logLeaseLost: ({ context, event }) =>
      context.services.log.warn(
        { runId: context.runId, err: (event as unknown as { error: unknown }).error },
        'lease lost: run actor stopped, nothing more is written',
      ),
    logRenewRetry: ({ context, event }) => {
      // once per outage, not at every retry
      if (context.renewFailures === 1) {
        context.services.log.warn({ runId: context.runId, err: (event as unknown as { error: unknown }).error }, 'lease renewal failed; will retry');
      }
    },
    reportEnd: ({ context }, params: { reason: RunEndReason }) =>
      context.report({ type: 'RUN_ENDED', runId: context.runId, reason: params.reason, wakePending: context.wakePending }),
  },
}).createMachine({
  id: 'run',
  context: ({ input, self }) => ({
    runId: input.runId,
    lease: input.lease,
    fresh: input.fresh,
    services: input.services,
    report: input.report,
    // A run this worker just created needs no read: its engine is built here (or was, by its parent's actor, which
    // ran its first activation inline), and the actor starts activating.
    engine: input.fresh?.prepared?.engine ?? (input.fresh ? tryFreshEngine(input.services, input.fresh) : null),
    work: (() => {
      // An activity can finish after its run's actor has ended (closed from outside, lease lost): nobody to tell then.
      const notify = () => {
        if (self.getSnapshot().status === 'active') self.send({ type: 'ACTIVITY_DONE' });
      };
      const handed = input.fresh?.prepared?.work;
      if (!handed) return new LocalWork(notify);
      handed.setListener(notify);
      return handed;
    })(),
    wakePending: false,
    checkInbox: false,
    activations: 0,
    error: null,
    renewFailures: 0,
  }),
  initial: 'starting',
  on: {
    WAKE: { actions: 'noteWake' },
    // This worker was granted the run again (a new token): every later fenced write uses it.
    LEASE: { actions: assign({ lease: ({ event }) => event.lease }) },
    // The run was cancelled or terminated elsewhere, or the worker is shutting down: stop without writing.
    STOP: { target: '.stopped' },
  },
  states: {
    starting: {
      always: [{ guard: ({ context }) => context.engine !== null, target: 'activating' }, { target: 'loading' }],
    },
    loading: {
      invoke: {
        src: 'load',
        input: ({ context }) => context,
        onDone: [
          { guard: ({ event }) => event.output === null, target: 'blocked' },
          { target: 'activating', actions: assign({ engine: ({ event }) => event.output }) },
        ],
        onError: [
          { guard: 'leaseLost', target: 'lost', actions: ['recordError', 'logLeaseLost'] },
          { target: 'failed', actions: ['recordError', 'logError'] },
        ],
      },
    },
    activating: {
      entry: 'clearWake',
      invoke: {
        src: 'activate',
        input: ({ context }) => context,
        onDone: [
          { guard: 'isBlocked', target: 'blocked' },
          { guard: 'isClosed', target: 'closed' },
          { guard: 'newsAndHeld', target: 'activating', reenter: true },
          { guard: 'isWorking', target: 'working' },
          // Released in the commit; news that came in meanwhile is handled by a new actor (see RUN_ENDED).
          { target: 'suspended' },
        ],
        onError: [
          { guard: 'leaseLost', target: 'lost', actions: ['recordError', 'logLeaseLost'] },
          { target: 'failed', actions: ['recordError', 'logError'] },
        ],
      },
    },
    working: {
      always: { guard: 'hasNews', target: 'activating' },
      on: {
        WAKE: { target: 'activating' },
        ACTIVITY_DONE: { target: 'activating' },
      },
      after: { renewEvery: { target: 'renewing' } },
    },
    renewing: {
      invoke: {
        src: 'renew',
        input: ({ context }) => context,
        onDone: { target: 'working', actions: assign({ lease: ({ event }) => event.output, renewFailures: 0 }) },
        onError: [
          // Taken over (or closed from outside): stop; the activities' results would be refused anyway.
          { guard: 'leaseLost', target: 'lost', actions: ['recordError', 'logLeaseLost'] },
          // Anything else is the database being unreachable for a moment (restart, network): the lease is still ours
          // until it expires, so keep the activities running and try again at the next renewal. Should the lease
          // expire and the run be taken over meanwhile, our next fenced write fails with LeaseLostError and we stop.
          { target: 'working', actions: [assign({ renewFailures: ({ context }) => context.renewFailures + 1 }), 'logRenewRetry'] },
        ],
      },
    },
    suspended: { type: 'final', entry: ['parkEngine', { type: 'reportEnd', params: { reason: 'suspended' } }] },
    closed: { type: 'final', entry: ['dropEngine', { type: 'reportEnd', params: { reason: 'closed' } }] },
    blocked: { type: 'final', entry: ['dropEngine', { type: 'reportEnd', params: { reason: 'blocked' } }] },
    lost: { type: 'final', entry: ['dropEngine', { type: 'reportEnd', params: { reason: 'lost' } }] },
    stopped: { type: 'final', entry: ['dropEngine', { type: 'reportEnd', params: { reason: 'stopped' } }] },
    failed: { type: 'final', entry: ['dropEngine', { type: 'reportEnd', params: { reason: 'failed' } }] },
  },
});

export type RunActorRef = ActorRefFrom<typeof runMachine>;
