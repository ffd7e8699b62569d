/**
 * docs/versioning.md's example: one workflow changed three times while runs are in flight. The guide's code blocks
 * are regions of this file and of test/testing/versioning.test.ts, checked verbatim by that test, which also runs
 * every step (the replay check against a history recorded with version 1, the deploy, the new runs).
 */
import { activity, defineActivity, deprecatePatch, patched, sleep, workflow } from '../../src/index.js';

export type Order = { id: string; total: number };
const DAY = 24 * 60 * 60 * 1000;

export const printLabel = defineActivity('printLabel', async (id: string) => `label-${id}`);
export const insure = defineActivity('insure', async (id: string) => `policy-${id}`);
export const handOver = defineActivity('handOver', async (p: { id: string; label: string }) => `${p.id} handed over with ${p.label}`);

// #region v1
// Version 1, in production: print a label, wait a day for the courier's pickup window, hand the parcel over.
export const shipOrderV1 = workflow('ship-order', function* (o: Order) {
  const label = yield* activity(printLabel, o.id);
  yield* sleep(DAY);
  return yield* activity(handOver, { id: o.id, label });
});
// #endregion v1

// #region naive
// The change, made naively: parcels worth more than 100 are insured before the wait.
export const shipOrderNaive = workflow('ship-order', function* (o: Order) {
  const label = yield* activity(printLabel, o.id);
  if (o.total > 100) yield* activity(insure, o.id);
  yield* sleep(DAY);
  return yield* activity(handOver, { id: o.id, label });
});
// #endregion naive

// #region v2
// Version 2: the same change behind patched(). Runs that already passed this point keep version 1's path.
export const shipOrderV2 = workflow('ship-order', function* (o: Order) {
  const label = yield* activity(printLabel, o.id);
  if ((yield* patched('insure-parcels')) && o.total > 100) yield* activity(insure, o.id);
  yield* sleep(DAY);
  return yield* activity(handOver, { id: o.id, label });
});
// #endregion v2

// #region v3
// Version 3, once no open run started before version 2: the old path is gone, the marker stays readable.
export const shipOrderV3 = workflow('ship-order', function* (o: Order) {
  const label = yield* activity(printLabel, o.id);
  yield* deprecatePatch('insure-parcels');
  if (o.total > 100) yield* activity(insure, o.id);
  yield* sleep(DAY);
  return yield* activity(handOver, { id: o.id, label });
});
// #endregion v3

// #region v4
// Version 4, once no open run has the marker either (all started before version 3 have closed).
export const shipOrderV4 = workflow('ship-order', function* (o: Order) {
  const label = yield* activity(printLabel, o.id);
  if (o.total > 100) yield* activity(insure, o.id);
  yield* sleep(DAY);
  return yield* activity(handOver, { id: o.id, label });
});
// #endregion v4

export const activities = [printLabel, insure, handOver];
