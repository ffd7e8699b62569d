import { assign, fromPromise, setup, type ActorRefFrom } from 'xstate';
import type { Logger } from 'pino';
import type { RunEngine } from '../runtime/engine.js';
import { LeaseLostError } from '../runtime/errors.js';
import type { Inbox, Lease, RunRecord } from '../journal/journal.js';
import type { EventPayloads, JournalEvent } from '../runtime/events.js';
import { abortReason, type RunEndReason } from './local-work.js';
import { observe } from './observer.js';
import {
  activateRun,
  block,
  freshEngine,
  isBlocking,
  loadEngine,
  LocalWork,
  tryFreshEngine,
  replayEngine,
  type ActivationHost,
  type FreshRun,
  type StepResult,
} from './activation.js';

/**
 * The run actor: one XState actor per active run, driving its generator through activations.
 *
 *   starting ──> loading ──> activating ──> closed | blocked   (final: the run is over, or needs an operator)
 *      │                        ^   │   ^
 *      └────────────────────────┘   │   │     (a run this worker just created skips loading: no read needed)
 *                                   │   │
 *                                   v   │  ACTIVITY_DONE / WAKE
 *                                 working  (holds the lease while activities run here)
 *
 *   activating ──> suspended  (final: lease released, live engine parked in the sticky cache)
 *
 *   any state ──> lost    (final: the lease was taken over or cleared; nothing more is written)
 *   any state ──> stopped (final: STOP, the run was cancelled or terminated from outside)
 *
 * Side effects live in a named actor (load) and named actions (activate, ...); the machine itself only says when.
 * An activation is started by `activating`'s entry action and reports back with ACTIVATED or ACTIVATION_FAILED rather
 * than as an invoked promise actor: a run that finishes in one activation (most independent runs) paid as much for
 * that child actor (created, registered, started, stopped) as for the rest of its machine (bench/throughput.ts W4).
 * Only `activating` handles those events, and it is left only by them or for a final state, so a report always
 * belongs to the activation in flight (one ending after a final state finds the actor stopped and is dropped).
 * Leases are renewed by the worker's heartbeat for all its runs at once (Worker.heartbeatLeases), which sends LOST
 * on a lost one.
 */

/** What a run actor needs from the worker that hosts it: the activation's host, and how long its leases last. */
export type RunServices = ActivationHost & {
  log: Logger;
  leaseMs: number;
  /** Bounds how many activations run at once (the worker's Admission); absent: no bound. */
  admit?<T>(activation: () => Promise<T>): Promise<T>;
};
// (ActivationHost.observer, when given, is told of runs started, closed, blocked and resumed: see ./observer.ts)

export type { FreshRun, PreparedRun } from './activation.js';
export { LocalWork } from './activation.js';

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

// (defined with LocalWork, free of XState types: the worker's public health type names it)
export type { RunEndReason } from './local-work.js';

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
  /** The inbox as the lease brought it, for the first activation (then checkInbox is false). */
  inbox: Inbox | null;
  activations: number;
  error: string | null;
}

export type RunEvent =
  | { type: 'WAKE' }
  | { type: 'ACTIVITY_DONE' }
  | { type: 'STOP' }
  | { type: 'LOST' }
  | { type: 'LEASE'; lease: Lease }
  // (sent by the activation the `activate` action started: see the machine's comment)
  | { type: 'ACTIVATED'; output: StepResult }
  | { type: 'ACTIVATION_FAILED'; error: unknown };

/** The input of a done or failed invocation, for parameterized guards and actions (typed, no casts). */
const outputOf = ({ event }: { event: { output: StepResult } }) => ({ output: event.output });
const errorOf = ({ event }: { event: { error: unknown } }) => ({ error: event.error });

/** The run and its journal as its lease brought them (Lease.history), or undefined when it brought none. */
function leasedHistory(runId: string, lease: Lease): { run: Pick<RunRecord, 'runId' | 'workflow' | 'workflowId' | 'depth' | 'queue' | 'lastSeq' | 'status'>; events: JournalEvent[] } | undefined {
  const h = lease.history;
  if (!h || !lease.run || lease.queue === undefined || lease.lastSeq === undefined) return undefined;
  const { workflow, workflowId } = lease.run;
  return { run: { runId, workflow, workflowId, depth: h.depth, queue: lease.queue, lastSeq: lease.lastSeq, status: 'running' }, events: h.events };
}

/** The RunResumed an operator journaled last, if the run's committed journal ends with one (it was just resumed). */
function resumedBy(engine: RunEngine): EventPayloads['RunResumed'] | undefined {
  const last = engine.events[engine.committedSeq - 1];
  return last?.type === 'RunResumed' ? last.payload : undefined;
}

/**
 * The engine a run actor can start activating with at once, skipping `loading` (an invoked promise actor and its
 * transitions: a measurable share of a small run's CPU): one this worker just created, one cached at the journal head
 * the lease reports, or one replayed from the journal the lease brought. Anything else (a read; a replay that throws,
 * to be blocked; a resumed run, to be reported) is left to `loading`, which replays again: rare, and correct.
 */
function readyEngine(input: RunActorInput): RunEngine | null {
  const host = input.services.host;
  if (input.fresh) return input.fresh.prepared?.engine ?? tryFreshEngine(host, input.fresh);
  if (input.lease.lastSeq === undefined) return null;
  const cached = host.cache.take(input.runId, input.lease.lastSeq);
  if (cached) return cached;
  const leased = leasedHistory(input.runId, input.lease);
  if (!leased) return null;
  try {
    const engine = replayEngine(host, leased.run, leased.events);
    return resumedBy(engine) ? null : engine;
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
      // (a cached engine at the lease's journal head was taken already, by readyEngine)
      // The lease brought the journal (acquireMany, for a run with no engine here; granted only while it is open),
      // else read the run and its journal.
      const leased = leasedHistory(input.runId, input.lease);
      const run = leased?.run ?? (await input.services.host.journal.getRun(input.runId));
      if (!run || run.status !== 'running') throw new LeaseLostError(input.runId, `run is ${run?.status ?? 'missing'}`);
      try {
        // (the cache was asked already when the lease told us the journal head: once is enough)
        const engine = await loadEngine(input.services.host, run, { cacheChecked: input.lease.lastSeq !== undefined, ...(leased ? { events: leased.events } : {}) });
        // an operator resumed it: its journal ends with RunResumed (a blocked run's engine is never cached; what the
        // replay decided anew comes after committedSeq)
        const resumed = resumedBy(engine);
        if (resumed) observe(input.services.observer, (o) => o.resumed(input.runId, engine, resumed.reason));
        return engine;
      } catch (err) {
        // Replay found changed code (or a broken journal): block the run (journaled, status 'blocked') instead of
        // failing the activation, which would bring it back after every lease expiry.
        if (!isBlocking(err)) throw err;
        await block(input.services.host, input.lease, run.lastSeq, err);
        if (input.services.observer) observe(input.services.observer, (o) => o.blockedOnLoad(input.runId, err));
        else input.services.log.error({ runId: input.runId, err }, 'run blocked: its code no longer replays its journal, or throws a programming error');
        return null;
      }
    }),
  },
  guards: {
    isBlocked: (_, p: { output: StepResult }) => p.output.kind === 'blocked',
    isClosed: ({ context }) => context.engine?.closed === true,
    hasNews: ({ context }) => context.wakePending || context.work!.hasReady,
    /** More news arrived during the activation and the lease is still ours: go again. */
    newsAndHeld: ({ context }, p: { output: StepResult }) =>
      p.output.kind === 'committed' && !p.output.released && (context.wakePending || context.work!.hasReady),
    /** Activities of this run are still open: keep the lease while they run here. */
    isWorking: ({ context }) =>
      context.work!.size > 0 || (context.engine?.openActivities().some((a) => context.services.host.registry.hasActivity(a.name)) ?? false),
    leaseLost: (_, p: { error: unknown }) => p.error instanceof LeaseLostError,
  },
  actions: {
    /** Starts one activation (local work, eager activities, inline children: activation.ts's, shared with the simulator). */
    activate: ({ context, self }) => {
      const engine = context.engine!;
      const observer = context.services.observer;
      // (the run's first activation: nothing but RunStarted committed before it)
      const first = engine.committedSeq === 1;
      const held = { runId: context.runId, lease: context.lease, engine, work: context.work!, checkInbox: context.checkInbox, inbox: context.inbox };
      const activation = () => {
        observe(observer, (o) => o.activating(held.runId));
        return activateRun(context.services, held);
      };
      const report = (event: RunEvent) => {
        if (self.getSnapshot().status === 'active') self.send(event);
      };
      (context.services.admit ? context.services.admit(activation) : activation()).then(
        (output) => {
          observe(observer, (o) => o.activated(held.runId, engine, output, first));
          report({ type: 'ACTIVATED', output });
        },
        (error: unknown) => report({ type: 'ACTIVATION_FAILED', error }),
      );
    },
    noteWake: assign({ wakePending: true }),
    clearWake: assign({
      // Signals and cancel requests arrive with a wake-up; a run created by this worker has none yet. A lease granted
      // by acquireMany brought the inbox with it: the first activation uses that unless news came in since.
      inbox: ({ context }) => (!context.wakePending && context.activations === 0 ? (context.lease.inbox ?? null) : null),
      checkInbox: ({ context }) =>
        context.wakePending || (context.activations === 0 && !context.fresh && !context.lease.inbox && context.lease.inboxPending !== false),
      wakePending: false,
      activations: ({ context }) => context.activations + 1,
    }),
    parkEngine: ({ context }) => {
      if (context.engine) context.services.host.cache.put(context.runId, context.engine);
    },
    dropEngine: ({ context }) => context.services.host.cache.delete(context.runId),
    recordError: assign({ error: (_, p: { error: unknown }) => String(p.error) }),
    logError: ({ context }, p: { error: unknown }) => context.services.log.error({ runId: context.runId, err: p.error }, 'run activation failed'),
    /** A fenced write (commit, renew) was refused: another worker took the run over, or it was closed from outside. */
    logLeaseLost: ({ context }, p: { error: unknown }) =>
      context.services.log.warn({ runId: context.runId, err: p.error }, 'lease lost: run actor stopped, nothing more is written'),
    reportEnd: ({ context }, params: { reason: RunEndReason }) => {
      // Activities still running here are no longer wanted from here: abort them (ctx.signal), drop their results.
      if (params.reason !== 'suspended') {
        context.work?.stop(() => abortReason(params.reason, context.engine?.cancelReason ?? null, context.services.host.journal, context.runId));
      }
      context.report({ type: 'RUN_ENDED', runId: context.runId, reason: params.reason, wakePending: context.wakePending });
    },
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
    engine: readyEngine(input),
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
    inbox: null,
    activations: 0,
    error: null,
  }),
  initial: 'starting',
  on: {
    WAKE: { actions: 'noteWake' },
    // This worker was granted the run again (a new token): every later fenced write uses it.
    LEASE: { actions: assign({ lease: ({ event }) => event.lease }) },
    // The run was cancelled or terminated elsewhere, or the worker is shutting down: stop without writing.
    STOP: { target: '.stopped' },
    // The lease heartbeat found our token no longer holds the run (taken over, voided by a cancel request).
    LOST: {
      target: '.lost',
      actions: [
        assign({ error: 'lease lost (heartbeat)' }),
        {
          type: 'logLeaseLost',
          params: ({ context }) => ({ error: new LeaseLostError(context.runId, "the lease heartbeat found the run held by another token (taken over, or voided)") }),
        },
      ],
    },
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
          { guard: { type: 'leaseLost', params: errorOf }, target: 'lost', actions: [{ type: 'recordError', params: errorOf }, { type: 'logLeaseLost', params: errorOf }] },
          { target: 'failed', actions: [{ type: 'recordError', params: errorOf }, { type: 'logError', params: errorOf }] },
        ],
      },
    },
    activating: {
      entry: ['clearWake', 'activate'],
      on: {
        ACTIVATED: [
          { guard: { type: 'isBlocked', params: outputOf }, target: 'blocked' },
          { guard: 'isClosed', target: 'closed' },
          { guard: { type: 'newsAndHeld', params: outputOf }, target: 'activating', reenter: true },
          { guard: 'isWorking', target: 'working' },
          // Released in the commit; news that came in meanwhile is handled by a new actor (see RUN_ENDED).
          { target: 'suspended' },
        ],
        ACTIVATION_FAILED: [
          { guard: { type: 'leaseLost', params: errorOf }, target: 'lost', actions: [{ type: 'recordError', params: errorOf }, { type: 'logLeaseLost', params: errorOf }] },
          { target: 'failed', actions: [{ type: 'recordError', params: errorOf }, { type: 'logError', params: errorOf }] },
        ],
      },
    },
    // The lease is renewed by the worker's lease heartbeat (one statement for every run it holds, whatever state
    // each is in: loading, activating or working), which sends LOST when a token no longer holds.
    working: {
      always: { guard: 'hasNews', target: 'activating' },
      on: {
        // (noted: a wake-up brings news from outside, signals or a cancel request, so the activation reads the inbox)
        WAKE: { target: 'activating', actions: 'noteWake' },
        ACTIVITY_DONE: { target: 'activating' },
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
