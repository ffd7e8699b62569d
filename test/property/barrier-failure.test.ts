/**
 * Barrier semantics (SPEC section 4) against a reference model, for random nested barriers: plain arrays and
 * objects, nested all() (and allSettled()) commands, with child workflows and activities as leaves, random per-leaf
 * outcomes, random close times (children sleep 0-10 ms first; ticks of 0 make close times tie) and random delivery
 * orders (the schedule picks which run or activity goes next).
 *
 * Leaves are labelled L<leaf index> (depth-first, left to right), so counterexamples read directly.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isOpen } from '../../src/journal/journal.js';
import type { JournalEvent } from '../../src/runtime/events.js';
import type { SimAction, Simulation } from '../../src/testing/simulator.js';
import {
  PROPERTY_TIMEOUT,
  RUNS,
  barrierArb,
  barrierModel,
  barrierSimulation,
  bleaves,
  bparent,
  scheduleArb,
  type Barrier,
  type LeafClose,
  type Schedule,
} from './programs.js';

const PARENT = 'p';

/**
 * 'random': any action may go next (the parent included, so it may see failures in any order and activation).
 * 'parentLast': the parent activates only when nothing else can happen, not even a child's timer, so every child has
 * closed before it sees any.
 */
type Policy = 'random' | 'parentLast';

interface Outcome {
  sim: Simulation;
  result: unknown;
  parentEvents: JournalEvent[];
  /** Close of each leaf, by leaf index. */
  closes: Map<number, LeafClose>;
  /** The failed leaf the model picks: earliest close, then lowest leaf index, among the failed leaves visible at
   * the first activation of the parent that sees any failure. null when it never saw one. */
  visibleChoice: number | null;
  /** 'activate' actions of the parent after the one that issued the barrier (activity results not counted). */
  wakes: number;
}

const leafIndexOfPath = (path: string): number => Number(path.split('.')[1]);

async function runBarrier(b: Barrier, s: Schedule, policy: Policy): Promise<Outcome> {
  const sim = barrierSimulation();
  await sim.start(bparent, b, { workflowId: PARENT, runId: PARENT });
  const closes = new Map<number, LeafClose>();
  const childLeaf = new Map<string, number>(); // child run id -> leaf index
  let issued = false;
  let visibleChoice: number | null = null;
  let wakes = 0;

  const closedChildren = (): void => {
    for (const r of sim.journal.allRuns()) {
      const i = childLeaf.get(r.runId);
      if (i !== undefined && !isOpen(r.status) && !closes.has(i)) closes.set(i, { ok: r.status === 'completed', closedAt: r.closedAt! });
    }
  };

  /** The earliest wake-up (timer) of a leaf child still open, if any. */
  const nextChildWakeup = (): number | null => {
    let next = Infinity;
    for (const r of sim.journal.allRuns()) {
      if (childLeaf.has(r.runId) && isOpen(r.status) && r.nextWakeupAt !== null && r.nextWakeupAt > sim.clock.now()) next = Math.min(next, r.nextWakeupAt);
    }
    return Number.isFinite(next) ? next : null;
  };

  let step = 0;
  for (;;) {
    const acts = sim.actions();
    if (!acts.length) {
      if (sim.advanceToNextTimer()) continue;
      break;
    }
    if (step > 500) throw new Error('barrier simulation did not settle');
    const others = acts.filter((a) => !(a.kind === 'activate' && a.runId === PARENT));
    // parentLast: while a child still runs, its next step (or timer) comes before the parent's wake-up.
    if (policy === 'parentLast' && !others.length) {
      const next = nextChildWakeup();
      if (next !== null) {
        sim.clock.set(next);
        continue;
      }
    }
    const pool = policy === 'parentLast' && others.length ? others : acts;
    const a: SimAction = pool[s.choices[step % s.choices.length]! % pool.length]!;

    if (a.runId === PARENT && issued) {
      // What this activation of the parent will see: every child closed by now, and this activity's result.
      closedChildren();
      if (a.kind === 'activity') {
        const i = leafIndexOfPath(a.path);
        const leaf = bleaves(b.items)[i]!;
        closes.set(i, { ok: leaf.ok, closedAt: sim.clock.now() });
      }
      if (a.kind === 'activate') wakes++;
      if (visibleChoice === null) {
        const failed = [...closes.entries()].filter(([, c]) => !c.ok);
        failed.sort(([ia, ca], [ib, cb]) => ca.closedAt - cb.closedAt || ia - ib);
        if (failed.length) visibleChoice = failed[0]![0];
      }
    }
    await sim.perform(a);
    if (a.runId === PARENT && !issued) {
      issued = true;
      for (const e of await sim.history(PARENT)) if (e.type === 'ChildScheduled') childLeaf.set(e.payload.childRunId, leafIndexOfPath(e.payload.path));
    }
    sim.clock.advance(s.ticks[step % s.ticks.length]!);
    step++;
  }
  closedChildren();
  const parent = await sim.run(PARENT);
  expect(parent.status).toBe('completed');
  return { sim, result: parent.result, parentEvents: await sim.history(PARENT), closes, visibleChoice, wakes };
}

function barrierFailedEvents(events: JournalEvent[]) {
  return events.flatMap((e) => (e.type === 'BarrierFailed' ? [e.payload] : []));
}

/** Whether every leaf is a child (then the parent is woken only by a failure or by the last close). */
const childrenOnly = (b: Barrier): boolean => bleaves(b.items).every((l) => l.t === 'child');

describe('barrier failure selection (property)', () => {
  /**
   * all([...]) with random outcomes and random delivery orders: the error thrown (caught by the parent, its leaf
   * label read from the error's cause) is the model's choice, i.e. among the failed leaves visible at the first
   * activation of the parent that sees any failure, the earliest close time, then the lowest leaf index. The
   * BarrierFailed event names that leaf (index and path), exactly once, and FailureHandled its error. The parent is woken ('activate', as
   * opposed to being handed an activity result) at most once after issuing the barrier.
   */
  it('throws the earliest-closed, lowest-index failure visible when the parent wakes', async () => {
    const policy = fc.constantFrom<Policy>('random', 'parentLast');
    await fc.assert(
      fc.asyncProperty(barrierArb({ activities: true, nestedSettled: false, topSettled: false }), scheduleArb, policy, async (b, s, pol) => {
        const o = await runBarrier(b, s, pol);
        const failed = barrierFailedEvents(o.parentEvents);
        expect(o.wakes).toBeLessThanOrEqual(1);
        if (o.visibleChoice === null) {
          expect(bleaves(b.items).every((l) => l.ok)).toBe(true);
          expect(failed).toEqual([]);
          expect(o.result).toEqual(barrierModel(b, () => ({ ok: true, closedAt: 0 })));
          return;
        }
        const label = `L${o.visibleChoice}`;
        expect(o.result).toMatchObject({ failed: label });
        const leaf = bleaves(b.items)[o.visibleChoice]!;
        expect((o.result as { error: string }).error).toBe(leaf.t === 'child' ? 'ChildFailedError' : 'ActivityFailedError');
        expect(failed).toEqual([{ path: '0', leafIndex: o.visibleChoice, leafPath: `0.${o.visibleChoice}` }]);
        // The failure was caught: FailureHandled is journaled once, at the failed leaf's path, with its error.
        const handled = o.parentEvents.flatMap((e) => (e.type === 'FailureHandled' ? [e.payload] : []));
        expect(handled).toHaveLength(1);
        expect(handled[0]).toMatchObject({ path: `0.${o.visibleChoice}`, error: { cause: { message: label } } });
      }),
      { numRuns: RUNS },
    );
  }, PROPERTY_TIMEOUT);

  /**
   * Children only, and the parent activated only after every child has closed: the thrown failure is simply the
   * model's min over ALL failed leaves by (close time, leaf index), whatever order the children ran and closed in.
   */
  it('with every leaf closed first, throws min(closedAt, leafIndex) over all failed leaves', async () => {
    await fc.assert(
      fc.asyncProperty(barrierArb({ activities: false, nestedSettled: false, topSettled: false }), scheduleArb, async (b, s) => {
        const o = await runBarrier(b, s, 'parentLast');
        expect(o.closes.size).toBe(bleaves(b.items).length);
        const expected = barrierModel(b, (i) => o.closes.get(i)!);
        if ('failed' in expected) {
          expect(o.result).toMatchObject({ failed: expected.failed, error: 'ChildFailedError' });
          expect(barrierFailedEvents(o.parentEvents).map((p) => p.leafIndex)).toEqual([Number(expected.failed.slice(1))]);
        } else {
          expect(o.result).toEqual(expected);
        }
      }),
      { numRuns: RUNS },
    );
  }, PROPERTY_TIMEOUT);

  /**
   * When every leaf succeeds, all() returns every value in the original nested shape (arrays, objects with their
   * keys, nested all()), journals no BarrierFailed, and the parent is woken once, by the final close, never once
   * per successful child: with children only, exactly one wake after issuing the barrier (activity results are
   * handed to the parent directly; they do not count as wakes), and exactly one live resumption of its generator.
   */
  it('all-success returns the nested shape and wakes the parent once', async () => {
    const policy = fc.constantFrom<Policy>('random', 'parentLast');
    await fc.assert(
      fc.asyncProperty(barrierArb({ activities: true, nestedSettled: false, topSettled: false, okBias: Infinity }), scheduleArb, policy, async (b, s, pol) => {
        const o = await runBarrier(b, s, pol);
        expect(o.result).toEqual(barrierModel(b, () => ({ ok: true, closedAt: 0 })));
        expect(barrierFailedEvents(o.parentEvents)).toEqual([]);
        const childLeaves = bleaves(b.items).filter((l) => l.t === 'child').length;
        if (childrenOnly(b)) expect(o.wakes).toBe(childLeaves > 0 ? 1 : 0);
        else expect(o.wakes).toBeLessThanOrEqual(1);
        // Every child outcome is journaled in the parent, and the barrier is the only thing it resumed from.
        expect(o.parentEvents.filter((e) => e.type === 'ChildCompleted')).toHaveLength(childLeaves);
        expect(o.sim.activations.get(PARENT)).toBe(1 + o.wakes + bleaves(b.items).filter((l) => l.t === 'act').length);
      }),
      { numRuns: RUNS },
    );
  }, PROPERTY_TIMEOUT);

  /**
   * all() and allSettled() nested inside each other (plain arrays and objects at every level), children only, the
   * parent activated after every child has closed: the result is the model's. allSettled gives each leaf's outcome
   * in the shape of its arguments (plain arrays inside it stay arrays of outcomes), a nested all() gives one outcome
   * (its earliest, lowest-index failure, or its values in shape), and failures inside an allSettled never fail an
   * enclosing all().
   */
  it('nested all/allSettled settle to the model', async () => {
    await fc.assert(
      fc.asyncProperty(barrierArb({ activities: false, nestedSettled: true }), scheduleArb, async (b, s) => {
        const o = await runBarrier(b, s, 'parentLast');
        const expected = barrierModel(b, (i) => o.closes.get(i) ?? { ok: bleaves(b.items)[i]!.ok, closedAt: Infinity });
        if ('failed' in expected) expect(o.result).toMatchObject({ failed: expected.failed });
        else expect(o.result).toEqual(expected);
      }),
      { numRuns: RUNS },
    );
  }, PROPERTY_TIMEOUT);
});
