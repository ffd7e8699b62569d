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
  | { type: 'RUN_ENDED'; runId: string; reason: RunEndReason; wakePending: boolean };

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
        // Already running here (a duplicate claim of our own lease): just make sure it looks again.
        existing.send({ type: 'WAKE' });
        return;
      }
      const slot = new RunSlot();
      context.runs.set(runId, slot);
      const input = {
        runId,
        lease: event.lease,
        services: context.services,
        report: (e: RunEnded) => queueMicrotask(() => self.send(e)),
        ...(event.fresh ? { fresh: event.fresh } : {}),
      };
      queueMicrotask(() => {
        if (context.runs.get(runId) === slot) slot.attach(createActor(runMachine, { id: runId, input }));
      });
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
    reapRun: ({ context, event }) => {
      if (event.type !== 'RUN_ENDED') return;
      const actor = context.runs.get(event.runId)?.actor;
      context.runs.delete(event.runId);
      if (actor) queueMicrotask(() => actor.stop());
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
    RUN_ENDED: { actions: 'reapRun' },
  },
  exit: 'stopAll',
});
