/**
 * The bugs the fuzzer must find. Each is a small workflow with one real bug of its class; each test states within how
 * many cases the fuzzer finds it, what it reports, and what the counterexample shrinks to (the smallest case that
 * still fails). Each class passed the fuzzer before: the clock shift never changed the hour, no two runs shared a
 * process, no signal was ever sent, a mistyped mock or outcomes entry was ignored, compensation stopped at three legs.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { activity, defineActivity, now, sleep, SignalTimeoutError, waitForSignal, workflow } from '../../src/index.js';
import { createTestEnv, fuzzWorkflow, FuzzFailure } from '../../src/testing/index.js';

const HOUR = 3_600_000;

describe('time of day', () => {
  const greet = defineActivity('greet', async (text: string) => text);

  it('a direct Date.now() read deciding by the hour fails the first case, naming its line', async () => {
    const greeter = workflow('greeter', function* (name: string) {
      const morning = new Date(Date.now()).getUTCHours() < 12; // BUG: the hour of whichever replay runs this
      return yield* activity(greet, `${morning ? 'good morning' : 'good evening'}, ${name}`);
    });
    const err = await fuzzWorkflow(greeter, { input: fc.string({ maxLength: 5 }), activities: [greet], numRuns: 100 }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.numRuns).toBe(1);
    expect(err.message).toMatch(/the workflow code read Date\.now\(\) directly at test\/testing\/fuzz-bugs\.test\.ts:\d+:\d+/);
    expect(err.counterexample.input).toBe(''); // shrunk: the smallest input, the first action
    expect(err.schedule.length).toBeLessThanOrEqual(2);
  });

  it('a bug at some hours of the journaled clock is found by starting cases at other times, shrunk to the first such minute', async () => {
    // The call is due "at 9:00 tomorrow" — BUG: before 9:00 it should be today, so early-morning orders wait a day more.
    const callBack = workflow('callBack', function* () {
      const t = yield* now();
      const hour = new Date(t).getUTCHours();
      yield* sleep((24 - hour + 9) * HOUR);
      return yield* activity(greet, 'calling back');
    });
    const err = await fuzzWorkflow(callBack, {
      activities: [greet],
      numRuns: 300,
      check: (_r, ctx) => {
        // What the code decided (activities may take any time): when it asked, and when it set the call for.
        const h = ctx.history(ctx.rootRunId);
        const asked = h.find((e) => e.type === 'SideEffect')!.payload as { value: number };
        const timer = h.find((e) => e.type === 'TimerStarted')!.payload as { fireAt: number };
        const wait = timer.fireAt - asked.value;
        assert.ok(wait <= 24 * HOUR, `the call back is set ${(wait / HOUR).toFixed(1)} h after the order`);
      },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.message).toMatch(/the check failed: the call back is set \d+\.\d h after the order/);
    // The base time is 22:13 UTC; the first failing start is 00:00, 107 minutes later (fast-check shrinks to it).
    expect(err.counterexample.clock).toBe(107);
  });
});

describe('state kept at module scope', () => {
  const reserveStock = defineActivity('reserveStock', async (sku: string) => `reserved ${sku}`);
  const queueForLater = defineActivity('queueForLater', async (sku: string) => `queued ${sku}`);
  let active = 0; // BUG: module scope, shared by every run in the process
  const reserve = workflow('reserve', function* (sku: string) {
    active++;
    try {
      if (active > 1) return yield* activity(queueForLater, sku); // "someone else is reserving": another run's count
      return yield* activity(reserveStock, sku);
    } finally {
      active--;
    }
  });
  const options = { input: fc.constantFrom('apple', 'pear'), activities: [reserveStock, queueForLater], crashes: false, evictions: false } as const;

  it('one run at a time never shows it (a run and its replays agree)', async () => {
    await fuzzWorkflow(reserve, { ...options, twin: false, numRuns: 100 });
  });

  it('a twin run interleaved in the same process shows it within 50 cases, shrunk to the first interleaving', async () => {
    const err = await fuzzWorkflow(reserve, { ...options, numRuns: 50 }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.message).toMatch(/replaying run reserve-1(~twin)? with a fresh engine .* gave NonDeterminismError: .*recorded ActivityScheduled\(path 0, activity 'queueForLater'/);
    expect(err.counterexample.twin).toBe(true);
    expect(err.counterexample.picks.every((p: number) => p === 0)).toBe(true); // the canonical order interleaves them
    expect(err.schedule.slice(0, 2).join('\n')).toContain(': calls queueForLater');
  });
});

describe('a branch taken on a signal', () => {
  const reserveItem = defineActivity('reserveItem', async (id: string) => `reserved ${id}`);
  const releaseItem = defineActivity('releaseItem', async (id: string) => `released ${id}`);
  const ship = defineActivity('ship', async (id: string) => `shipped ${id}`);
  const order = workflow('order', function* (id: string) {
    yield* activity(reserveItem, id);
    try {
      yield* waitForSignal('cancel', { timeout: HOUR }); // the customer may cancel within the hour
      return 'cancelled'; // BUG: the reservation is never released
    } catch (e) {
      if (!(e instanceof SignalTimeoutError)) throw e;
      return yield* activity(ship, id);
    }
  });
  const released = {
    input: fc.constant('o-1'),
    activities: [reserveItem, releaseItem, ship],
    check: (result: { status: string; value?: unknown }, ctx: { activities(): { name: string; status: string }[] }) => {
      const calls = ctx.activities();
      if (result.status === 'completed' && result.value === 'cancelled') {
        assert.ok(calls.some((c) => c.name === 'releaseItem' && c.status === 'completed'), 'cancelled, but the item is still reserved');
      }
    },
  };

  it('without signals the cancel branch is never taken', async () => {
    await fuzzWorkflow(order, { ...released, signals: false, numRuns: 100 });
  });

  it('signals sent at random points take it within 100 cases, shrunk to one signal', async () => {
    const err = await fuzzWorkflow(order, { ...released, numRuns: 100 }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.message).toContain('the check failed: cancelled, but the item is still reserved');
    expect(err.counterexample.signals).toHaveLength(1);
    expect(err.message).toMatch(/signal cancel\(null\) sent to order-1/);
  });

  it('payloads come from the arbitrary given for the name', async () => {
    const seen = new Set<unknown>();
    const withReason = workflow('withReason', function* () {
      try {
        return yield* waitForSignal<string>('cancel', { timeout: HOUR });
      } catch {
        return 'timeout';
      }
    });
    await fuzzWorkflow(withReason, {
      signals: { cancel: fc.constantFrom('too slow', 'found cheaper') },
      // About 4% of cases deliver each payload before the timeout (measured over 1,000 cases), so 60 cases missed one
      // of them about once in twelve runs; at 400 a miss is about 1 in 10^7.
      numRuns: 400,
      check: (r) => {
        if (r.status === 'completed') seen.add(r.value);
      },
    });
    expect([...seen].sort()).toEqual(['found cheaper', 'timeout', 'too slow']);
  });
});

describe('a mistyped activity name', () => {
  const chargeCard = defineActivity('chargeCard', async (amount: number) => ({ charged: amount }));
  const checkout = workflow('checkout', function* (amount: number) {
    return yield* activity(chargeCard, amount);
  });

  it('mockActivity of a name nothing registers throws, suggesting the name', () => {
    const env = createTestEnv({ workflows: [checkout], activities: [chargeCard] });
    expect(() => env.mockActivity('chargeCrad', async () => ({ charged: 0 }))).toThrow(
      /mockActivity\('chargeCrad'\): no activity of that name is registered in this environment \(did you mean 'chargeCard'\?\)/,
    );
  });

  it('an outcomes entry no case used fails the fuzz run, suggesting the name', async () => {
    const err = await fuzzWorkflow(checkout, { input: fc.nat(), activities: [chargeCard], outcomes: { chargeCrad: fc.constant({ charged: 0 }) }, numRuns: 20 }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(/outcomes\.chargeCrad: no run called an activity 'chargeCrad' in 20 case\(s\) \(did you mean 'chargeCard'\?\)/);
  });
});

describe('compensation (docs/testing.md, example (b))', () => {
  const ITINERARY = ['flight', 'hotel', 'car'];
  const book = defineActivity('book', async (leg: string) => `booked ${leg}`);
  const cancel = defineActivity('cancel', async (leg: string) => `cancelled ${leg}`);
  const tripBuggy = workflow('trip', function* (legs: string[]) {
    for (const leg of legs) {
      try {
        yield* activity(book, leg);
      } catch (err) {
        const before = ITINERARY.slice(0, ITINERARY.indexOf(leg)).filter((l) => legs.includes(l));
        for (const l of before) yield* activity(cancel, l);
        throw err;
      }
    }
    return 'booked';
  });
  const allOrNothing = {
    input: fc.uniqueArray(fc.constantFrom(...ITINERARY), { minLength: 1, maxLength: 3 }),
    activities: [book, cancel],
    outcomes: { book: { value: fc.constant('confirmed'), errors: ['sold out'] }, cancel: { value: fc.constant('cancelled'), canFail: false } },
    check: (result: { status: string }, ctx: { input: string[]; activities(): { name: string; status: string; input: unknown }[] }) => {
      const calls = ctx.activities();
      const booked = calls.filter((c) => c.name === 'book' && c.status === 'completed').map((c) => c.input as string);
      const cancelled = calls.filter((c) => c.name === 'cancel' && c.status === 'completed').map((c) => c.input as string);
      const held = booked.filter((leg) => !cancelled.includes(leg));
      if (result.status === 'completed') assert.deepEqual(held.sort(), [...ctx.input].sort());
      else assert.deepEqual(held, [], `the trip failed but ${held.join(', ')} ${held.length === 1 ? 'is' : 'are'} left booked`);
    },
  };

  it('is found within 200 cases and always shrunk to two legs: one booked, then an earlier one sold out', async () => {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const err = await fuzzWorkflow(tripBuggy, { ...allOrNothing, numRuns: 200, seed }).catch((e) => e);
      expect(err, `seed ${seed}`).toBeInstanceOf(FuzzFailure);
      const legs = err.counterexample.input as string[];
      expect(legs, `seed ${seed}`).toHaveLength(2);
      expect(ITINERARY.indexOf(legs[1]!), `seed ${seed}`).toBeLessThan(ITINERARY.indexOf(legs[0]!));
    }
  });
});
