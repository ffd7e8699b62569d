import { createActor, setup } from 'xstate';
import type { Lease } from '../journal/journal.js';
import { runMachine, type FreshRun, type RunActorRef, type RunEndReason, type RunEnded, type RunEvent, type RunServices } from './run-machine.js';

/**
 * The worker's actor system: it spawns one run actor per leased run (keyed by run id), routes wake-ups to the run's
 * actor when it lives here, and stops actors when their run suspends or closes. Whatever it cannot route (a wake-up
 * for a run with no actor here) goes back to the worker, which decides whether to lease that run.
 *
 * Run actors are kept in a registry (a Map owned by this machine) rather than as XState `spawnChild` children:
 * XState copies a machine's children object on every spawn and stop, which turns a fan-out of thousands of runs
 * into quadratic work. The registry keeps spawn, route and stop O(1).
 */

export interface SystemHooks {
  /** Wake-ups for runs that have no actor in this worker. */
  unrouted(runIds: string[]): void;
  /** A run actor reached a final state and was stopped. */
  ended(runId: string, reason: RunEndReason, wakePending: boolean): void;
}

export interface WorkerSystemInput {
  services: RunServices;
  hooks: SystemHooks;
}

/**
 * A registry entry. Run actors are created and sent events outside this machine's own action execution (XState
 * treats actors created inside an action as nested action work and warns), so an entry exists, and queues events,
 * from the moment the run is handed over until its actor is up.
 */
export class RunSlot {
  actor: RunActorRef | null = null;
  /**
   * A newer lease this worker was granted for the run while its actor lived (it claimed its own voided or expired
   * lease again). The actor adopts it; should the actor still end as 'lost' (an activation in flight used the old
   * token), the run goes on at once in a new actor with this lease instead of waiting for it to expire.
   */
  newerLease: Lease | null = null;
  private queued: RunEvent[] = [];
  send(event: RunEvent): void {
    if (this.actor) {
      const a = this.actor;
      // The actor may reach its final state before the microtask runs; a stopped actor gets nothing.
      queueMicrotask(() => {
        if (a.getSnapshot().status === 'active') a.send(event);
      });
    } else this.queued.push(event);
  }
  attach(actor: RunActorRef): void {
    this.actor = actor;
    actor.start();
    for (const e of this.queued.splice(0)) actor.send(e);
  }
}

interface WorkerSystemContext extends WorkerSystemInput {
  runs: Map<string, RunSlot>;
}

export type SystemEvent =
  | { type: 'RUN'; lease: Lease; fresh?: FreshRun }
  | { type: 'WAKE'; runIds: string[] }
  | { type: 'STOP_RUN'; runId: string }
  | { type: 'LOSE_RUN'; runId: string }
  | { type: 'RUN_ENDED'; runId: string; reason: RunEndReason; wakePending: boolean };

function spawn(context: WorkerSystemContext, runId: string, lease: Lease, fresh: FreshRun | undefined, report: (e: RunEnded) => void): void {
  const slot = new RunSlot();
  context.runs.set(runId, slot);
  const input = { runId, lease, services: context.services, report, ...(fresh ? { fresh } : {}) };
  queueMicrotask(() => {
    if (context.runs.get(runId) === slot) slot.attach(createActor(runMachine, { id: runId, input }));
  });
}

export const workerSystemMachine = setup({
  types: {
    context: {} as WorkerSystemContext,
    events: {} as SystemEvent,
    input: {} as WorkerSystemInput,
  },
  actions: {
    spawnRun: ({ context, event, self }) => {
      if (event.type !== 'RUN') return;
      const runId = event.lease.runId;
      const existing = context.runs.get(runId);
      if (existing) {
        // Already running here: this worker claimed the run again (its lease had been voided by a cancel request, or
        // had expired). The new token is the one that holds: hand it to the actor, and make sure it looks again.
        existing.newerLease = event.lease;
        existing.send({ type: 'LEASE', lease: event.lease });
        existing.send({ type: 'WAKE' });
        return;
      }
      spawn(context, runId, event.lease, event.fresh, (e) => queueMicrotask(() => self.send(e)));
    },
    routeWake: ({ context, event }) => {
      if (event.type !== 'WAKE') return;
      const elsewhere: string[] = [];
      for (const id of event.runIds) {
        const ref = context.runs.get(id);
        if (ref) ref.send({ type: 'WAKE' });
        else elsewhere.push(id);
      }
      if (elsewhere.length) context.hooks.unrouted(elsewhere);
    },
    stopRun: ({ context, event }) => {
      if (event.type !== 'STOP_RUN') return;
      context.runs.get(event.runId)?.send({ type: 'STOP' });
    },
    loseRun: ({ context, event }) => {
      if (event.type !== 'LOSE_RUN') return;
      // Only an actor that is 'working' (waiting on its activities) is told: one that is loading or activating finds
      // out itself at its next fenced write, and may be in the very commit that released the lease on purpose (the
      // heartbeat read the token before that commit).
      const actor = context.runs.get(event.runId)?.actor;
      if (actor?.getSnapshot().value === 'working') actor.send({ type: 'LOST' });
    },
    reapRun: ({ context, event, self }) => {
      if (event.type !== 'RUN_ENDED') return;
      const slot = context.runs.get(event.runId);
      const actor = slot?.actor;
      context.runs.delete(event.runId);
      if (actor) queueMicrotask(() => actor.stop());
      const newer = slot?.newerLease;
      if (event.reason === 'lost' && newer) {
        // The actor may have lost to a token this worker holds itself: carry on with it now. (If that token is the
        // one that was lost, the new actor's first fenced write says so and it ends for good: this happens once.)
        spawn(context, event.runId, newer, undefined, (e) => queueMicrotask(() => self.send(e)));
        return;
      }
      context.hooks.ended(event.runId, event.reason, event.wakePending);
    },
    stopAll: ({ context }) => {
      for (const slot of context.runs.values()) slot.actor?.stop();
      context.runs.clear();
    },
  },
}).createMachine({
  id: 'worker',
  context: ({ input }) => ({ ...input, runs: new Map() }),
  on: {
    RUN: { actions: 'spawnRun' },
    WAKE: { actions: 'routeWake' },
    STOP_RUN: { actions: 'stopRun' },
    LOSE_RUN: { actions: 'loseRun' },
    RUN_ENDED: { actions: 'reapRun' },
  },
  exit: 'stopAll',
});
