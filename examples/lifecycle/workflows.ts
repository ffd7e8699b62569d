/**
 * The README's "Run lifecycle" examples, as a module that compiles and runs: test/integration/readme-examples.test.ts
 * checks that every line the README shows is here, and runs each example on a real journal.
 */
import {
  activity,
  CancelledError,
  child,
  continueAsNew,
  defineActivity,
  startChild,
  waitForSignal,
  workflow,
} from '../../src/index.js';

export type Trip = { id: string; city: string };

/** What the compensations undid, for the test to look at. */
export const undone: string[] = [];

export const bookFlight = defineActivity('bookFlight', async (t: Trip) => ({ flight: `FL-${t.id}` }));
export const cancelFlight = defineActivity('cancelFlight', async (f: { flight: string }) => void undone.push(f.flight));
export const recordAudit = defineActivity('recordAudit', async (o: { id: string }) => `audited ${o.id}`);
export const fetchQuote = defineActivity('fetchQuote', async (r: { item: string }) => ({ item: r.item, price: 42 }));

// #region readme-lifecycle
// Signals: buffered until waited for, delivered once, in send order.
export const approval = workflow('approval', function* (id: string) {
  const who = yield* waitForSignal<string>('approve', { timeout: 86_400_000 }); // SignalTimeoutError after a day
  return { id, approvedBy: who };
});

// Cancellation: CancelledError at the current yield; the catch block may still run activities (grace period).
export const hotelSaga = workflow('hotelSaga', function* (t: Trip) {
  return yield* waitForSignal<string>('hotelConfirmed'); // waits until confirmed, or cancelled with the trip
});
export const trip = workflow('trip', function* (t: Trip) {
  const flight = yield* activity(bookFlight, t);
  try {
    return yield* child(hotelSaga, t); // the child is cancelled with us (parentClosePolicy 'cancel')
  } catch (err) {
    if (err instanceof CancelledError) yield* activity(cancelFlight, flight); // compensation still runs
    throw err;
  }
});

// Parent-close policy per child: what happens to it if the parent closes first (cancel is the default).
export const auditTrail = workflow('auditTrail', function* (o: { id: string }) {
  yield* waitForSignal('flush');
  return yield* activity(recordAudit, o);
});
export const order = workflow('order', function* (o: { id: string }) {
  yield* startChild(auditTrail, o, { parentClosePolicy: 'abandon' }); // outlives its parent
  return `order ${o.id} placed`;
});

// Timeouts and retries on children; continue-as-new for long-lived loops.
export const quote = workflow('quote', function* (req: { item: string }) {
  return yield* activity(fetchQuote, req);
});
export const pricing = workflow('pricing', function* (req: { item: string }) {
  const fallback = { item: req.item, price: 0 }; // returned if the quote takes longer than 2 s
  return yield* child(quote, req, { timeout: 2_000, timeoutValue: fallback, retry: { maximumAttempts: 3 } });
});
export const poller = workflow('poller', function* (s: { cursor: number; n: number }) {
  if (s.n >= 3) return s.cursor; // (a real loop would run for days)
  return yield* continueAsNew({ cursor: s.cursor + 10, n: s.n + 1 }); // same workflow id, fresh history
});
// #endregion readme-lifecycle

export const workflows = [approval, hotelSaga, trip, auditTrail, order, quote, pricing, poller];
export const activities = [bookFlight, cancelFlight, recordAudit, fetchQuote];
