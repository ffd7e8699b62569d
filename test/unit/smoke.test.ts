import { describe, expect, it } from 'vitest';
import { workflow, child, all, activity, startChild, sleep, now, defineActivity } from '../../src/runtime/commands.js';
import { Simulation } from '../../src/testing/simulator.js';
import { ChildFailedError } from '../../src/runtime/errors.js';

const double = defineActivity('double', async (n: number) => n * 2);
const leaf = workflow('leaf', function* (n: number) {
  const d = yield* activity(double, n);
  if (n === 3) throw new Error('three is bad');
  return d;
});
const parent = workflow('parent', function* (ns: number[]) {
  const t0 = yield* now();
  const first = yield* child(leaf, 1);
  const h = yield* startChild(leaf, 2);
  yield* sleep(1000);
  let caught = '';
  try {
    yield* all([child(leaf, 4), [child(leaf, 3), activity(double, 10)]]);
  } catch (e) {
    caught = e instanceof ChildFailedError ? (e.cause as Error).message : 'other';
  }
  const [a, [b, c]] = yield* all([child(leaf, 5), [h.result(), activity(double, 7)]]);
  return { first, a, b, c, caught, t0: typeof t0, ns };
});

describe('smoke', () => {
  it('runs a parent with children, barriers, timers', async () => {
    const sim = new Simulation({ workflows: [parent, leaf], activities: [double] });
    const id = await sim.start(parent, [1]);
    await sim.runUntilIdle();
    const r = await sim.run(id);
    expect(r.status).toBe('completed');
    expect(r.result).toEqual({ first: 2, a: 10, b: 4, c: 14, caught: 'three is bad', t0: 'number', ns: [1] });
  });
});
