import { enqueueActions, setup } from 'xstate';
import type { Lease } from '../journal/journal.js';
import { runMachine, type RunEndReason, type RunServices } from './run-machine.js';

/**
 * The worker's actor system: it spawns one run actor per leased run (its id is the run id), routes wake-ups to the
 * run's actor when it lives here, and stops actors when their run suspends or closes. Whatever it cannot route
 * (a wake-up for a run with no actor here) goes back to the worker, which decides whether to lease that run.
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

type SystemEvent =
  | { type: 'RUN'; lease: Lease }
  | { type: 'WAKE'; runIds: string[] }
  | { type: 'RUN_ENDED'; runId: string; reason: RunEndReason; wakePending: boolean };

export const workerSystemMachine = setup({
  types: {
    context: {} as WorkerSystemInput,
    events: {} as SystemEvent,
    input: {} as WorkerSystemInput,
  },
  actors: { run: runMachine },
}).createMachine({
  id: 'worker',
  context: ({ input }) => input,
  on: {
    RUN: {
      actions: enqueueActions(({ context, event, enqueue, self }) => {
        const runId = event.lease.runId;
        if (self.getSnapshot().children[runId]) {
          // Already running here (a duplicate claim of our own lease): just make sure it looks again.
          enqueue.sendTo(self.getSnapshot().children[runId]!, { type: 'WAKE' });
          return;
        }
        enqueue.spawnChild('run', { id: runId, input: { runId, lease: event.lease, services: context.services } });
      }),
    },
    WAKE: {
      actions: enqueueActions(({ context, event, enqueue, self }) => {
        const children = self.getSnapshot().children;
        const elsewhere: string[] = [];
        for (const id of event.runIds) {
          const ref = children[id];
          if (ref) enqueue.sendTo(ref, { type: 'WAKE' });
          else elsewhere.push(id);
        }
        if (elsewhere.length) enqueue(() => context.hooks.unrouted(elsewhere));
      }),
    },
    RUN_ENDED: {
      actions: enqueueActions(({ context, event, enqueue }) => {
        enqueue.stopChild(event.runId);
        enqueue(() => context.hooks.ended(event.runId, event.reason, event.wakePending));
      }),
    },
  },
});
