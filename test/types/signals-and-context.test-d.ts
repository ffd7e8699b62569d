/**
 * Type-level tests of typed signals, the activity context and recursive workflows. Never executed: `tsc --noEmit -p
 * tsconfig.json` (the first half of `npm test`) checks it; each `@ts-expect-error` line must stay an error.
 */
import type { Logger } from 'pino';
import { expectTypeOf } from 'vitest';
import {
  all,
  child,
  Client,
  defineActivity,
  defineSignal,
  startChild,
  waitForSignal,
  workflow,
  type ActivityContext,
  type Command,
  type PayloadOf,
  type SignalDef,
  type WorkflowDef,
} from '../../src/index.js';
import { createTestEnv } from '../../src/testing/index.js';

// ---- typed signals -------------------------------------------------------------------------------------------------

const approve = defineSignal<{ by: string }>('approve');
const ping = defineSignal('ping');
expectTypeOf(approve).toEqualTypeOf<SignalDef<{ by: string }>>();
expectTypeOf<PayloadOf<typeof approve>>().toEqualTypeOf<{ by: string }>();
expectTypeOf(waitForSignal(approve)).toEqualTypeOf<Command<{ by: string }>>();
expectTypeOf(waitForSignal(ping, { timeout: 5 })).toEqualTypeOf<Command<void>>();
// string names keep working (payload typed by the caller, unknown by default)
expectTypeOf(waitForSignal('approve')).toEqualTypeOf<Command<unknown>>();
expectTypeOf(waitForSignal<string>('approve')).toEqualTypeOf<Command<string>>();

const approval = workflow('approval', function* (id: string) {
  const { by } = yield* waitForSignal(approve);
  expectTypeOf(by).toEqualTypeOf<string>();
  // @ts-expect-error a misspelt signal is not a definition in scope
  yield* waitForSignal(aprove);
  // @ts-expect-error the payload is { by: string }, not a string
  const wrong: string = yield* waitForSignal(approve);
  return { id, by, wrong };
});

workflow('parent', function* () {
  const h = yield* startChild(approval, 'a-1');
  yield* h.signal(approve, { by: 'ada' });
  yield* h.signal('approve', 'anything goes with a name');
  yield* h.signal(ping);
  // @ts-expect-error wrong payload type
  yield* h.signal(approve, { by: 42 });
  // @ts-expect-error the payload is required
  yield* h.signal(approve);
  // @ts-expect-error a payload field that does not exist
  yield* h.signal(approve, { who: 'ada' });
  return yield* h.result();
});

export async function sendFromClient(client: Client, runId: string): Promise<void> {
  await client.signal(runId, approve, { by: 'ada' });
  await client.signal(runId, approve, { by: 'ada' }, { signalId: 'once' });
  await client.signal(runId, ping);
  await client.signal(runId, 'approve', { anything: true });
  // @ts-expect-error wrong payload type
  await client.signal(runId, approve, 'ada');
  // @ts-expect-error the payload is required
  await client.signal(runId, approve);
  const env = createTestEnv({ workflows: [approval] });
  await env.signal(runId, approve, { by: 'ada' });
  // @ts-expect-error the test environment checks payloads too
  await env.signal(runId, approve, { by: 1 });
}

// ---- the activity context ------------------------------------------------------------------------------------------

const charge = defineActivity('charge', async (amount: number, ctx) => {
  expectTypeOf(ctx).toEqualTypeOf<ActivityContext>();
  expectTypeOf(ctx.runId).toEqualTypeOf<string>();
  expectTypeOf(ctx.workflowId).toEqualTypeOf<string>();
  expectTypeOf(ctx.activityId).toEqualTypeOf<string>();
  expectTypeOf(ctx.attempt).toEqualTypeOf<number>();
  expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>();
  expectTypeOf(ctx.heartbeatDetails).toEqualTypeOf<unknown>();
  expectTypeOf(ctx.log).toEqualTypeOf<Logger>();
  ctx.heartbeat();
  ctx.heartbeat({ done: 3 });
  return { amount, key: ctx.activityId };
});
// An activity that takes only its input still fits.
const plain = defineActivity('plain', (s: string) => s.length);
expectTypeOf(charge.fn).parameter(1).toEqualTypeOf<ActivityContext>();
expectTypeOf(plain.fn).returns.toEqualTypeOf<number | Promise<number>>();

// ---- recursive workflows -------------------------------------------------------------------------------------------

// A workflow that starts itself needs its type on the const (TypeScript cannot infer a type that depends on itself):
// one annotation, and the body's parameter and every yield* stay checked.
const fib: WorkflowDef<number, number> = workflow('fib', function* (n) {
  expectTypeOf(n).toEqualTypeOf<number>();
  if (n < 2) return n;
  const [a, b] = yield* all([child(fib, n - 1), child(fib, n - 2)]);
  expectTypeOf(a).toEqualTypeOf<number>();
  return a + b;
});
workflow('fibWrong', function* () {
  // @ts-expect-error fib takes a number
  return yield* child(fib, 'ten');
});
// @ts-expect-error the annotation is checked against the body: this one returns a string
const badFib: WorkflowDef<number, number> = workflow('badFib', function* (n) {
  if (n < 2) return 'x';
  return yield* child(badFib, n - 1);
});
