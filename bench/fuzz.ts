/**
 * Cases per second of fuzzWorkflow on the seed scenario (BatchFlow: an audit child, then a fan-out over 5 order
 * children with `id: order-<id>`, each calling a payment activity). Run: npx tsx bench/fuzz.ts
 */
import fc from 'fast-check';
import { activity, all, child, workflow } from '../src/runtime/commands.js';
import { fuzzWorkflow } from '../src/testing/index.js';
const audit = workflow('audit', function* (n: number) { return yield* activity<string>('log', `batch of ${n}`); });
const order = workflow('order', function* (o: { id: number; amount: number }) { const receipt = yield* activity<string>('payment', o); return { id: o.id, receipt }; });
const batchFlow = workflow('batch', function* (ids: number[]) {
  const audited = yield* child(audit, ids.length);
  const orders = yield* all(ids.map((id) => child(order, { id, amount: id * 10 }, { id: `order-${id}` })));
  return { audited, orders };
});
const opts = (x: object) => ({ input: fc.constant<number[]>([1, 2, 3, 4, 5]), workflows: [audit, order], outcomes: { payment: fc.string({ maxLength: 4 }), log: { value: fc.constant('ok'), canFail: false } }, numRuns: 1000, ...x });
for (const [label, x] of [['default (crashes+evictions)', {}], ['no crashes, no evictions', { crashes: false, evictions: false }]] as const) {
  const s = await fuzzWorkflow(batchFlow, opts(x));
  console.log(label, `${s.cases} cases, ${s.steps} steps, ${s.crashes} crashes, ${s.ms.toFixed(0)} ms, ${s.casesPerSecond.toFixed(0)} cases/s`);
}
