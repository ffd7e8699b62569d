import { assign, fromPromise, setup, type ActorRefFrom } from 'xstate';
import type { Logger } from 'pino';
import { runActivity } from '../runtime/activities.js';
import type { ActivityTask, RunEngine } from '../runtime/engine.js';
import { CorruptJournalError, LeaseLostError, NonDeterminismError } from '../runtime/errors.js';
import type { NewEvent } from '../runtime/events.js';
import type { CommitResult, Lease, NewRun } from '../journal/journal.js';
import { block, freshEngine, loadEngine, step, type RunHost, type StepResult } from './activation.js';

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
  constructor(private readonly onReady: () => void) {}

  get size(): number {
    return this.inflight.size;
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

/** A run this worker created in its own commit (a child), known without reading the journal. */
export type FreshRun = NewRun & { parentRunId: string; depth: number };

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

export type RunEvent = { type: 'WAKE' } | { type: 'ACTIVITY_DONE' } | { type: 'STOP' };

async function activate(ctx: RunContext): Promise<StepResult> {
  const { services, lease } = ctx;
  const engine = ctx.engine!;
  const work = ctx.work!;
  const host = services.host;
  const startAll = (tasks: ActivityTask[]) => tasks.map((t) => work.start(t, () => runActivity(host.registry, t, { clock: host.journal.clock })));
  // Activities the journal shows unfinished and nobody here runs (the previous owner died): run them again.
  startAll(engine.openActivities());
  const result = await step(host, lease, engine, work.take(), { releaseWhenIdle: true, leaseChildren: true, checkInbox: ctx.checkInbox }, async (output) => {
    // Eager activities: run what this activation issued right away and, if it finishes within the budget, journal
    // the results in this same commit (one transaction instead of two).
    const started = startAll(output.activities);
    if (!started.length || services.inlineActivityBudgetMs <= 0) return work.take();
    const done = Promise.all(started);
    // Most activities are quick: give them one turn of the event loop before arming a timer (a fan-out of thousands
    // of children would otherwise create thousands of timers), then the rest of the budget.
    let finished = false;
    void done.then(() => (finished = true));
    await new Promise<void>((r) => setImmediate(r));
    if (!finished) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, services.inlineActivityBudgetMs)))]);
      clearTimeout(timer);
    }
    return work.take();
  });
  // Activities issued and not finished inline keep running here; their results come with ACTIVITY_DONE.
  if (result.kind === 'committed' && !engine.closed) startAll(engine.openActivities());
  const created: FreshRun[] =
    result.kind === 'committed'
      ? result.output.children.map((c) => ({ ...c, parentRunId: ctx.runId, depth: c.depth ?? engine.run.depth + 1 }))
      : [];
  services.afterCommit(ctx.runId, result.commit, result.kind === 'committed' ? result.wait.timerAt : null, created);
  return result;
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
        return await loadEngine(input.services.host, run);
      } catch (err) {
        // Replay found changed code (or a broken journal): block the run (journaled, status 'blocked') instead of
        // failing the activation, which would bring it back after every lease expiry.
        if (!(err instanceof NonDeterminismError || err instanceof CorruptJournalError)) throw err;
        await block(input.services.host, input.lease, run.lastSeq, err);
        input.services.log.error({ runId: input.runId, err }, 'run blocked: its code no longer replays its journal');
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
    isWorking: ({ context }) => context.work!.size > 0 || (context.engine?.openActivities().length ?? 0) > 0,
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
    // A run this worker just created needs no read: its engine is built here, and the actor starts activating.
    engine: input.fresh ? tryFreshEngine(input.services, input.fresh) : null,
    // An activity can finish after its run's actor has ended (closed from outside, lease lost): nobody to tell then.
    work: new LocalWork(() => {
      if (self.getSnapshot().status === 'active') self.send({ type: 'ACTIVITY_DONE' });
    }),
    wakePending: false,
    checkInbox: false,
    activations: 0,
    error: null,
    renewFailures: 0,
  }),
  initial: 'starting',
  on: {
    WAKE: { actions: 'noteWake' },
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
