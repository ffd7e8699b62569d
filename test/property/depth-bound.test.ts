/**
 * The child depth bound (SPEC section 3): random run trees (a spine of up to 8 nested runs with small side trees;
 * children started one by one or in an all(), failures caught or not) against a random maxChildDepth of 1..6.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isOpen } from '../../src/journal/journal.js';
import { NonDeterminismError } from '../../src/runtime/errors.js';
import { Simulation } from '../../src/testing/simulator.js';
import { PROPERTY_TIMEOUT, RUNS, drive, journals, nest, nestArb, nestModel, replayFresh, scheduleArb, type Nest } from './programs.js';

/** How many child() calls the run makes: all kids, unless one fails uncaught when they are started one by one. */
function attempted(n: Nest, depth: number, max: number): number {
  if (n.all || n.catch) return n.kids.length;
  const firstFailure = n.kids.findIndex((k) => depth + 1 > max || 'fail' in nestModel(k, depth + 1, max));
  return firstFailure === -1 ? n.kids.length : firstFailure + 1;
}

describe('child depth bound (property)', () => {
  /**
   * For every tree, bound and schedule (crashes included):
   *  - no run exists deeper than maxChildDepth, and every run closes (by itself, or stopped because its parent
   *    closed first);
   *  - every refused start is journaled as ChildStartFailed with error name ChildDepthExceededError, exactly in the
   *    runs at depth maxChildDepth, once per child() they attempted (and those runs schedule no child at all);
   *  - the offending child() throws ChildDepthExceededError there, and a parent that catches it goes on: every
   *    run's result (or failure) is the model's;
   *  - replaying each journal with a fresh engine and the same bound reproduces the refusal at the same place
   *    silently (no new events); with the bound raised, replay reports a NonDeterminismError at the refusal's seq
   *    instead of silently starting the child.
   */
  it('refuses children past maxChildDepth, deterministically, and the parent can go on', async () => {
    await fc.assert(
      fc.asyncProperty(nestArb, fc.integer({ min: 1, max: 6 }), scheduleArb, async (tree, max, s) => {
        const sim = new Simulation({ workflows: [nest], engine: { maxChildDepth: max } });
        await sim.start(nest, tree, { workflowId: 'root', runId: 'root' });
        await drive(sim, s, 'crash');
        const js = await journals(sim);

        for (const { run, events } of js.values()) {
          expect(run.depth).toBeLessThanOrEqual(max);
          expect(isOpen(run.status), `run ${run.runId} is still ${run.status}`).toBe(false);

          const n = run.input as Nest;
          const model = nestModel(n, run.depth, max);
          // A child still running when its parent closed is stopped by the parent-close policy (default cancel).
          const stopped = run.status === 'cancelled' || run.status === 'terminated';
          if (stopped) {
            expect(run.parentRunId).not.toBeNull();
            expect(isOpen(js.get(run.parentRunId!)!.run.status)).toBe(false);
          } else if ('ok' in model) {
            expect(run.status).toBe('completed');
            expect(run.result).toEqual(model.ok);
          } else {
            expect(run.status).toBe('failed');
            expect(run.error?.name).toBe(model.fail);
          }

          const refused = events.flatMap((e) => (e.type === 'ChildStartFailed' ? [e] : []));
          const scheduled = events.filter((e) => e.type === 'ChildScheduled');
          const attempts = attempted(n, run.depth, max);
          if (run.depth === max) {
            expect(scheduled).toEqual([]);
            if (stopped) expect(refused.length).toBeLessThanOrEqual(attempts);
            else expect(refused).toHaveLength(attempts);
          } else {
            expect(refused).toEqual([]);
            if (stopped) expect(scheduled.length).toBeLessThanOrEqual(attempts);
            else expect(scheduled).toHaveLength(attempts);
          }
          for (const e of refused) {
            expect(e.payload.workflow).toBe('nest');
            expect(e.payload.error).toMatchObject({ name: 'ChildDepthExceededError' });
            expect(e.payload.error.message).toContain(`depth ${max + 1}`);
          }

          const replayed = replayFresh(nest, { run, events }, { maxChildDepth: max }, sim.clock.now());
          if (!stopped) {
            expect(replayed.newEvents).toBe(0);
            expect(replayed.engine.closed).toBe(true);
          }
          if (refused.length) {
            let err: unknown = null;
            try {
              replayFresh(nest, { run, events }, { maxChildDepth: max + 1 }, sim.clock.now());
            } catch (e) {
              err = e;
            }
            expect(err).toBeInstanceOf(NonDeterminismError);
            expect((err as NonDeterminismError).seq).toBe(refused[0]!.seq);
          }
        }
      }),
      { numRuns: RUNS },
    );
  }, PROPERTY_TIMEOUT);
});
