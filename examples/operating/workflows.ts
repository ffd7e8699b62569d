/**
 * The workflows behind docs/operating.md: every command the page shows was run against a worker of this module
 * (examples/operating/transcript.ts runs them and prints the page's output blocks).
 *
 * Two environment switches stand in for deploys: INVOICE_FIX=1 is the fix of a bug in `invoice` (without it, the run
 * is blocked until resumed), ORDER_V2=1 a change to `order` that old histories no longer replay against.
 */
import { activity, all, ApplicationError, child, defineActivity, waitForSignal, workflow } from '../../src/index.js';

export interface Order {
  id: string;
  amount: number;
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const charge = defineActivity('charge', async (o: Order) => {
  await delay(300 + Math.random() * 700); // a payment provider takes a while
  if (o.amount > 1000) throw new ApplicationError(`amount ${o.amount} over the limit`, { name: 'LimitExceeded', nonRetryable: true });
  return { chargeId: `ch_${o.id}` };
});
export const email = defineActivity('email', async (m: { to: string; subject: string }) => ({ sent: m.subject }));
export const taxRate = defineActivity('taxRate', async (_: { country: string }) => 0.2);

export const order = workflow('order', function* (o: Order) {
  if (process.env.ORDER_V2 === '1') {
    // the next version e-mails first: histories of the current one no longer replay
    yield* activity(email, { to: o.id, subject: 'order received' });
  }
  const { chargeId } = yield* activity(charge, o);
  yield* activity(email, { to: o.id, subject: `receipt ${chargeId}` });
  return { id: o.id, chargeId };
});

export const batch = workflow('batch', function* (ids: string[]) {
  const orders = yield* all(ids.map((id) => child(order, { id, amount: 10 * id.length }, { id })));
  return { paid: orders.length };
});

export const approval = workflow('approval', function* (id: string) {
  const who = yield* waitForSignal<string>('approve');
  return { id, approvedBy: who };
});

export const invoice = workflow('invoice', function* (o: { id: string; amount: number; country: string }) {
  const rate = yield* activity(taxRate, { country: o.country });
  const rates = process.env.INVOICE_FIX === '1' ? { [o.country]: rate } : undefined;
  return { id: o.id, total: o.amount * (1 + rates![o.country]!) }; // TypeError until fixed: the run is blocked
});

export const workflows = [order, batch, approval, invoice];
export const activities = [charge, email, taxRate];
