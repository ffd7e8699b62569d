/**
 * Type-level tests of the authoring API. This file is never executed: `tsc --noEmit -p tsconfig.json` (the first
 * half of `npm test`) checks it, so a regression in the typings (a result widened to `any` or `unknown`, a tuple
 * losing its shape, an input no longer checked) fails `npm test`. `expectTypeOf(...).toEqualTypeOf<T>()` is an exact
 * match (`any` does not pass for `string`); each `@ts-expect-error` line must stay an error.
 */
import { expectTypeOf } from 'vitest';
import {
  activity,
  all,
  allSettled,
  child,
  children,
  defineActivity,
  now,
  random,
  sideEffect,
  sleep,
  startChild,
  uuid,
  workflow,
  type ChildHandle,
  type Command,
  type InputOf,
  type OutputOf,
  type Settled,
  type WorkflowDef,
} from '../../src/runtime/commands.js';

const a = workflow('a', function* (x: { n: number }) {
  return `s${x.n}`;
});
const b = workflow('b', function* (n: number) {
  yield* sleep(1);
  return { n, tag: 'b' as const };
});
const len = defineActivity('len', async (s: string) => s.length);
const flag = defineActivity('flag', (n: number) => n > 0);

type B = { n: number; tag: 'b' };

// Workflow definitions carry their input and output types.
expectTypeOf(a).toEqualTypeOf<WorkflowDef<{ n: number }, string>>();
expectTypeOf<InputOf<typeof b>>().toEqualTypeOf<number>();
expectTypeOf<OutputOf<typeof b>>().toEqualTypeOf<B>();
// Commands are typed by what they resolve to.
expectTypeOf(child(a, { n: 1 })).toEqualTypeOf<Command<string>>();
expectTypeOf(activity(len, 'x')).toEqualTypeOf<Command<number>>();
expectTypeOf(activity(flag, 1)).toEqualTypeOf<Command<boolean>>();

export const typed = workflow('typed', function* (input: { ids: string[] }) {
  // yield* child(wf, input) is the workflow's output type.
  const r1 = yield* child(a, { n: 1 });
  expectTypeOf(r1).toEqualTypeOf<string>();
  const r1b = yield* child(b, 2, { id: 'x', queue: 'q', parentClosePolicy: 'abandon' });
  expectTypeOf(r1b).toEqualTypeOf<B>();

  // all([...]) is the exact nested tuple.
  const r2 = yield* all([child(a, { n: 1 }), [activity(len, 'q'), child(b, 2)]]);
  expectTypeOf(r2).toEqualTypeOf<[string, [number, B]]>();
  const [s, [l, bb]] = r2;
  expectTypeOf(s).toEqualTypeOf<string>();
  expectTypeOf(l).toEqualTypeOf<number>();
  expectTypeOf(bb).toEqualTypeOf<B>();

  // Objects keep their keys, at any depth, mixed with arrays and nested all().
  const r3 = yield* all({ p: child(a, { n: 1 }), q: [activity(len, 's'), { deep: activity(flag, 3) }], r: all([child(b, 1)]) });
  expectTypeOf(r3).toEqualTypeOf<{ p: string; q: [number, { deep: boolean }]; r: [B] }>();

  // A mapped array of commands gives an array of results.
  const r4 = yield* all(input.ids.map((id) => child(b, id.length, { id: `order-${id}` })));
  expectTypeOf(r4).toEqualTypeOf<B[]>();

  // allSettled gives Settled<T> shapes.
  const r5 = yield* allSettled([child(a, { n: 1 }), { x: activity(len, 's') }, [child(b, 1)]]);
  expectTypeOf(r5).toEqualTypeOf<[Settled<string>, { x: Settled<number> }, [Settled<B>]]>();
  const first = r5[0];
  if (first.status === 'fulfilled') expectTypeOf(first.value).toEqualTypeOf<string>();
  else expectTypeOf(first.reason).toEqualTypeOf<Error>();

  // startChild gives ChildHandle<O>; handle.result() gives O.
  const h = yield* startChild(b, 3, { id: 'h' });
  expectTypeOf(h).toEqualTypeOf<ChildHandle<B>>();
  expectTypeOf(h.runId).toEqualTypeOf<string>();
  expectTypeOf(h.result()).toEqualTypeOf<Command<B>>();
  const r6 = yield* h.result();
  expectTypeOf(r6).toEqualTypeOf<B>();
  const r7 = yield* all([h.result(), child(a, { n: 2 })]);
  expectTypeOf(r7).toEqualTypeOf<[B, string]>();

  // Replay-safe values.
  expectTypeOf(yield* now()).toEqualTypeOf<number>();
  expectTypeOf(yield* random()).toEqualTypeOf<number>();
  expectTypeOf(yield* uuid()).toEqualTypeOf<string>();
  expectTypeOf(yield* sideEffect(() => ({ k: 1 }))).toEqualTypeOf<{ k: number }>();
  expectTypeOf(yield* sleep(10)).toEqualTypeOf<void>();
  expectTypeOf(yield* children()).toEqualTypeOf<ChildHandle<unknown>[]>();

  // `yield cmd` (no star) is any.
  const any1 = yield child(a, { n: 1 });
  expectTypeOf(any1).toBeAny();
  const any2 = yield all([child(a, { n: 1 })]);
  expectTypeOf(any2).toBeAny();

  // Wrong inputs are compile errors.
  // @ts-expect-error the input of `a` is { n: number }
  yield* child(a, { n: 'x' });
  // @ts-expect-error the input of `b` is a number
  yield* child(b, 'two');
  // @ts-expect-error the input is required
  yield* child(a);
  // @ts-expect-error startChild checks the input too
  yield* startChild(b, { n: 1 });
  // @ts-expect-error the input of activity `len` is a string
  yield* activity(len, 5);
  // @ts-expect-error the input of activity `flag` is a number
  yield* activity(flag, 'yes');
  // @ts-expect-error all() takes commands, arrays and objects of commands, not plain values
  yield* all([child(a, { n: 1 }), 42]);
  // @ts-expect-error the result is a string, not a number
  const wrong: number = yield* child(a, { n: 1 });

  return { r1, r2, r3, r6, wrong };
});

// The workflow's own output is inferred from its return.
expectTypeOf<OutputOf<typeof typed>>().toEqualTypeOf<{
  r1: string;
  r2: [string, [number, B]];
  r3: { p: string; q: [number, { deep: boolean }]; r: [B] };
  r6: B;
  wrong: number;
}>();
expectTypeOf<InputOf<typeof typed>>().toEqualTypeOf<{ ids: string[] }>();
