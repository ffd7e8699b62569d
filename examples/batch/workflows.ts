/**
 * The example behind `npm start`: a batch parent that audits, then fans out to one child per order. Each order
 * charges a payment and sends an e-mail (activities). One card is declined: the order catches the failure and takes
 * another branch, so the batch still completes.
 */
import { ActivityFailedError, ApplicationError, activity, all, child, defineActivity, sleep, workflow } from '../../src/index.js';

export interface Order {
  id: string;
  amount: number;
  email: string;
}

export const chargePayment = defineActivity(
  'chargePayment',
  async (order: Order) => {
    await new Promise((r) => setTimeout(r, 300 + Math.random() * 2000)); // a payment provider takes a while
    if (order.id === 'o-3') throw new ApplicationError('card declined', { name: 'CardDeclined', nonRetryable: true, details: { orderId: order.id } });
    return { chargeId: `ch_${order.id}`, amount: order.amount };
  },
  { retry: { maximumAttempts: 3, initialIntervalMs: 50 } },
);

export const sendEmail = defineActivity('sendEmail', async (msg: { to: string; subject: string }) => {
  await new Promise((r) => setTimeout(r, 10));
  return { sent: true, to: msg.to, subject: msg.subject };
});

export const audit = workflow('audit', function* (batchSize: number) {
  yield* sleep(200);
  return { audited: batchSize };
});

export const order = workflow('order', function* (o: Order) {
  try {
    const charge = yield* activity(chargePayment, o);
    yield* activity(sendEmail, { to: o.email, subject: `receipt for ${o.id}` });
    return { id: o.id, status: 'paid' as const, chargeId: charge.chargeId };
  } catch (err) {
    if (!(err instanceof ActivityFailedError)) throw err;
    // Handled: the failure is journaled as FailureHandled and the order takes the apology branch.
    yield* activity(sendEmail, { to: o.email, subject: `payment failed for ${o.id}` });
    return { id: o.id, status: 'payment_failed' as const, reason: (err.cause as Error).message };
  }
});

export const batch = workflow('batch', function* (input: { orders: Order[] }) {
  const audited = yield* child(audit, input.orders.length, { id: 'audit' });
  const results = yield* all(input.orders.map((o) => child(order, o, { id: `order-${o.id}` })));
  return {
    audited: audited.audited,
    paid: results.filter((r) => r.status === 'paid').length,
    failed: results.filter((r) => r.status === 'payment_failed').length,
    orders: results,
  };
});

export const workflows = [batch, audit, order];
export const activities = [chargePayment, sendEmail];
