/**
 * The three worked examples of docs/testing.md. The guide quotes this file; keep the two in step.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { activity, child, defineActivity, now, random, workflow } from '../../src/index.js';
import { NonDeterminismError } from '../../src/index.js';
import { createTestEnv, fuzzWorkflow, FuzzFailure, HistoryReplayError, replayHistories, replayHistory } from '../../src/testing/index.js';

const DAY = 24 * 60 * 60 * 1000;

// ---------------------------------------------------------------------------------------------------------------
// (a) The fuzzer catches a workflow that reads Math.random() or Date.now() directly.

type Order = { id: string; total: number };
const chargeCard = defineActivity('chargeCard', async (p: { orderId: string; amount: number }) => ({ charged: p.amount }));
const sendInvoice = defineActivity('sendInvoice', async (p: { orderId: string; dueAt: number }) => `invoice for ${p.orderId}`);

/** BUG: a 1-in-10 discount drawn with Math.random() in the workflow body. */
const checkoutWithMathRandom = workflow('checkout', function* (order: Order) {
  const lucky = Math.random() < 0.1;
  const amount = lucky ? order.total * 0.8 : order.total;
  return yield* activity(chargeCard, { orderId: order.id, amount });
});

/** BUG: the due date computed from Date.now() in the workflow body. */
const checkoutWithDateNow = workflow('checkout', function* (order: Order) {
  yield* activity(chargeCard, { orderId: order.id, amount: order.total });
  const dueAt = Date.now() + 30 * DAY;
  return yield* activity(sendInvoice, { orderId: order.id, dueAt });
});

/** Fixed: random() and now() are recorded in the journal once and replayed. */
const checkout = workflow('checkout', function* (order: Order) {
  const lucky = (yield* random()) < 0.1;
  const amount = lucky ? order.total * 0.8 : order.total;
  yield* activity(chargeCard, { orderId: order.id, amount });
  const dueAt = (yield* now()) + 30 * DAY;
  return yield* activity(sendInvoice, { orderId: order.id, dueAt });
});

const orders = fc.record({ id: fc.string({ minLength: 1, maxLength: 8 }), total: fc.integer({ min: 1, max: 10_000 }) });

describe('guide (a): non-determinism', () => {
  it('fails a workflow that calls Math.random() directly, naming the line that did it', async () => {
    const err = await fuzzWorkflow(checkoutWithMathRandom, { input: orders, activities: [chargeCard], numRuns: 50 }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.message).toMatch(/Failure: the workflow code read Math\.random\(\) directly at test\/testing\/guide-examples\.test\.ts:\d+:\d+ \(1 direct read\(s\) in this case\)/);
    expect(err.numRuns).toBe(1); // the first case: any direct read fails it, whatever the draw
    // The shrunk counterexample, as a schedule, and how to reproduce it.
    expect(err.message).toContain('1. t=0     activate checkout-1: calls chargeCard(');
    expect(err.message).toMatch(/Reproduce: fuzzWorkflow\(checkout, \{ \.\.\.the same options, seed: -?\d+, path: "[\d:]+" \}\)/);
    expect(err.caseError.reason).toBe('ambient');

    // seed + path replay exactly that counterexample.
    const again = await fuzzWorkflow(checkoutWithMathRandom, { input: orders, activities: [chargeCard], seed: err.seed, path: err.path }).catch((e) => e);
    expect(again).toBeInstanceOf(FuzzFailure);
    expect(again.schedule).toEqual(err.schedule);
  });

  it('fails a workflow that calls Date.now() directly', async () => {
    const err = await fuzzWorkflow(checkoutWithDateNow, { input: orders, activities: [chargeCard, sendInvoice], numRuns: 50 }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.message).toMatch(/the workflow code read Date\.now\(\) directly at test\/testing\/guide-examples\.test\.ts:\d+:\d+/);
  });

  it('with allowAmbientReads, the replay check still catches it, naming the seq and both commands', async () => {
    const err = await fuzzWorkflow(checkoutWithMathRandom, { input: orders, activities: [chargeCard], numRuns: 50, allowAmbientReads: true }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.message).toMatch(/journal event seq 2 recorded ActivityScheduled\(path 0, activity 'chargeCard', input hash \w+\), but the code now issued ActivityScheduled\(path 0, activity 'chargeCard', input hash \w+\)/);
    expect(err.message).toContain('read Math.random()/Date.now()/new Date() directly');
    expect(err.cause).toBeInstanceOf(NonDeterminismError);
  });

  it('passes once the workflow uses random() and now()', async () => {
    const stats = await fuzzWorkflow(checkout, { input: orders, activities: [chargeCard, sendInvoice], numRuns: 100 });
    expect(stats.cases).toBe(100);
    expect(stats.crashes).toBeGreaterThan(0); // crash-and-resume was exercised, and replays matched
  });
});

// ---------------------------------------------------------------------------------------------------------------
// (b) The fuzzer catches a saga whose compensation misses one order of events.

const book = defineActivity('book', async (leg: string) => `${leg} confirmed`);
const cancel = defineActivity('cancel', async (leg: string) => `${leg} cancelled`);
const ITINERARY = ['flight', 'hotel', 'car'];

/**
 * BUG: books the legs in the order the customer gave, but on a failure undoes "the legs before the failed one" in
 * the usual itinerary order. Right when the customer books flight first; wrong when, say, the hotel comes first.
 */
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

/** Fixed: undo exactly what was booked, most recent first. */
const trip = workflow('trip', function* (legs: string[]) {
  const booked: string[] = [];
  for (const leg of legs) {
    try {
      yield* activity(book, leg);
      booked.push(leg);
    } catch (err) {
      for (const l of booked.reverse()) yield* activity(cancel, l);
      throw err;
    }
  }
  return 'booked';
});

/** The invariant: either every leg is booked, or nothing is left booked. */
const allOrNothing = {
  input: fc.uniqueArray(fc.constantFrom(...ITINERARY), { minLength: 1, maxLength: 3 }), // legs, in the customer's order
  outcomes: {
    book: { value: fc.constant('confirmed'), errors: ['sold out'] },
    cancel: { value: fc.constant('cancelled'), canFail: false },
  },
  check: (result: { status: string }, ctx: { input: string[]; activities(): { name: string; input: unknown; status: string }[] }) => {
    const calls = ctx.activities();
    const booked = calls.filter((c) => c.name === 'book' && c.status === 'completed').map((c) => c.input as string);
    const cancelled = calls.filter((c) => c.name === 'cancel' && c.status === 'completed').map((c) => c.input as string);
    const held = booked.filter((leg) => !cancelled.includes(leg));
    if (result.status === 'completed') assert.deepEqual(held.sort(), [...ctx.input].sort(), 'completed, but not every leg is booked');
    else assert.deepEqual(held, [], `the trip failed but ${held.join(', ')} ${held.length === 1 ? 'is' : 'are'} left booked`);
  },
};

describe('guide (b): a saga with a compensation bug', () => {
  it('finds the failure order that leaves a leg booked, shrunk to a short schedule', async () => {
    const err = await fuzzWorkflow(tripBuggy, { ...allOrNothing, numRuns: 200 }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.caseError.reason).toBe('check');
    // Which legs stay booked depends on the case fast-check finds and how far it shrinks (usually one leg).
    expect(err.message).toMatch(/the check failed: the trip failed but (hotel|car)(, (hotel|car))? (is|are) left booked/);
    // Shrunk to a short case (usually two legs, sometimes three): a leg books fine, then a leg earlier in the
    // itinerary is sold out, and the buggy compensation leaves the booked one. Which leg failed is read from the
    // schedule (it is not always the last of the input).
    const legs = err.caseError.input as string[];
    expect(legs.length).toBeGreaterThanOrEqual(2);
    const failed = /activity book\("(\w+)"\) in trip-1 -> failed ApplicationError\('sold out'\)/.exec(err.message)?.[1];
    expect(failed && legs.includes(failed)).toBe(true);
    const left = legs.find((l) => ITINERARY.indexOf(l) > ITINERARY.indexOf(failed!) && err.message.includes(`but ${l}`));
    expect(left).toBeTruthy();
    expect(err.message).toContain(`activity book("${left}") in trip-1 -> ok "confirmed"`);
    expect(err.message).toMatch(/Reproduce: fuzzWorkflow\(trip, \{ \.\.\.the same options, seed: -?\d+, path: "[\d:]+" \}\)/);
  });

  it('passes once the compensation undoes exactly what was booked', async () => {
    await fuzzWorkflow(trip, { ...allOrNothing, numRuns: 200 });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// (c) The replay tester catches a changed child call against a golden history.

const reserveItems = defineActivity('reserveItems', async (items: string[]) => items.map((i) => `${i}:reserved`));
const ship = defineActivity('ship', async (orderId: string) => `${orderId}:shipped`);

const reserveStock = workflow('reserve-stock', function* (items: string[]) {
  return yield* activity(reserveItems, items);
});
const payment = workflow('payment', function* (p: { orderId: string; amount: number }) {
  return yield* activity(chargeCard, p);
});
const paymentV2 = workflow('payment-v2', function* (p: { orderId: string; amount: number; currency: string }) {
  return yield* activity(chargeCard, { orderId: p.orderId, amount: p.amount });
});

type FulfilInput = { id: string; items: string[]; total: number };

/** Version 1, the code that wrote the golden history. */
const fulfilV1 = workflow('fulfil-order', function* (o: FulfilInput) {
  const reserved = yield* child(reserveStock, o.items);
  const paid = yield* child(payment, { orderId: o.id, amount: o.total });
  const shipped = yield* activity(ship, o.id);
  return { reserved, paid, shipped };
});

/** Version 2: payment moved to a new child workflow. Runs started by version 1 can no longer replay. */
const fulfilV2 = workflow('fulfil-order', function* (o: FulfilInput) {
  const reserved = yield* child(reserveStock, o.items);
  const paid = yield* child(paymentV2, { orderId: o.id, amount: o.total, currency: 'EUR' });
  const shipped = yield* activity(ship, o.id);
  return { reserved, paid, shipped };
});

const GOLDEN = join(import.meta.dirname, 'golden');
const v1 = [fulfilV1, reserveStock, payment];
const v2 = [fulfilV2, reserveStock, paymentV2];

/** Records the golden histories from a test-environment run (set SKEIN_UPDATE_GOLDEN=1 to re-record). */
async function recordGolden(dir: string): Promise<void> {
  const env = createTestEnv({ workflows: v1, activities: [reserveItems, chargeCard, ship] });
  const ref = await env.start(fulfilV1, { id: 'o-1', items: ['apple', 'pear'], total: 12 }, { workflowId: 'fulfil-o-1' });
  await env.result(ref);
  await env.saveHistories(ref.runId, dir);
}

describe('guide (c): replaying golden histories', () => {
  it('records golden histories once', async () => {
    if (process.env.SKEIN_UPDATE_GOLDEN || !existsSync(join(GOLDEN, 'fulfil-o-1.json'))) await recordGolden(GOLDEN);
    expect(existsSync(join(GOLDEN, 'fulfil-o-1.json'))).toBe(true);
  });

  it('the code that wrote them replays them', async () => {
    const results = await replayHistories(v1, GOLDEN);
    expect(results.map((r) => r.workflowId)).toEqual(['fulfil-o-1', 'fulfil-o-1/payment@1', 'fulfil-o-1/reserve-stock@0']);
    expect(results.every((r) => r.status === 'completed')).toBe(true);
  });

  it('a changed child call is a NonDeterminismError naming the seq and both commands', async () => {
    const err = await replayHistory(v2, join(GOLDEN, 'fulfil-o-1.json')).catch((e) => e);
    expect(err).toBeInstanceOf(NonDeterminismError);
    expect(err.seq).toBe(4);
    expect(err.journaled).toMatch(/^ChildScheduled\(path 1, workflow 'payment', input hash \w+\)$/);
    expect(err.issued).toMatch(/^ChildScheduled\(path 1, workflow 'payment-v2', input hash \w+\)$/);
    expect(err.message).toContain("journal event seq 4 recorded ChildScheduled(path 1, workflow 'payment'");

    // The folder-wide check lists every history that broke (here the parent; the children did not change).
    const all = await replayHistories(v2, GOLDEN).catch((e) => e);
    expect(all).toBeInstanceOf(HistoryReplayError);
    expect(all.failures.map((f: { workflowId: string }) => f.workflowId)).toEqual(['fulfil-o-1', 'fulfil-o-1/payment@1']);
    expect(all.message).toContain('2 of 3 histories no longer replay');
  });

  it('recording is deterministic: two recordings are byte for byte the same', async () => {
    const a = await mkdtemp(join(tmpdir(), 'skein-golden-'));
    const b = await mkdtemp(join(tmpdir(), 'skein-golden-'));
    try {
      await recordGolden(a);
      await recordGolden(b);
      const files = (await readdir(a)).sort();
      expect(files).toEqual(['fulfil-o-1.json', 'fulfil-o-1_payment_1.json', 'fulfil-o-1_reserve-stock_0.json']);
      for (const f of files) expect(await readFile(join(a, f), 'utf8')).toBe(await readFile(join(b, f), 'utf8'));
    } finally {
      await rm(a, { recursive: true, force: true });
      await rm(b, { recursive: true, force: true });
    }
  });
});
