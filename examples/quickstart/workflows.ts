/**
 * The README's first example, as a module that compiles and runs (test/integration/readme-examples.test.ts checks the
 * README's block against the region below and runs the batch).
 */
import { workflow, child, all, activity, defineActivity } from '../../src/index.js';

// #region readme-quickstart
const charge = defineActivity('charge', async (o: { id: string; amount: number }) => ({ chargeId: `ch_${o.id}` }));

const order = workflow('order', function* (o: { id: string; amount: number }) {
  const { chargeId } = yield* activity(charge, o);           // typed: { chargeId: string }
  return { id: o.id, chargeId };
});

export const batch = workflow('batch', function* (ids: string[]) {
  const audit = yield* child(order, { id: 'audit', amount: 0 }, { id: 'audit' });  // start a child, wait for it
  const orders = yield* all(ids.map((id) => child(order, { id, amount: 10 }, { id: `order-${id}` })));
  return { audit: audit.chargeId, orders };                  // orders: { id: string; chargeId: string }[]
});
// #endregion readme-quickstart

export { charge, order };
