import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { activity, all, child, defineActivity, sleep, uuid, workflow } from '../../src/runtime/commands.js';
import { NonDeterminismError } from '../../src/runtime/errors.js';
import { FuzzCaseError, FuzzFailure, fuzzProperty, fuzzWorkflow, type FuzzCase } from '../../src/testing/index.js';

// The seed scenario: an audit child, then a fan-out over order children, each calling a payment activity.
const audit = workflow('audit', function* (n: number) {
  return yield* activity<string>('log', `batch of ${n}`);
});
const order = workflow('order', function* (o: { id: number; amount: number }) {
  const receipt = yield* activity<string>('payment', o);
  return { id: o.id, receipt };
});
const batchFlow = workflow('batch', function* (ids: number[]) {
  const audited = yield* child(audit, ids.length);
  const orders = yield* all(ids.map((id) => child(order, { id, amount: id * 10 }, { id: `order-${id}` })));
  return { audited, orders };
});

const batchOptions = {
  input: fc.constant<number[]>([1, 2, 3, 4, 5]),
  outcomes: { payment: fc.string({ maxLength: 4 }), log: { value: fc.constant('ok'), canFail: false } },
  workflows: [audit, order],
};

describe('fuzzWorkflow', () => {
  it('passes a correct workflow with children, crashes and evictions, and reports how fast it went', async () => {
    let completed = 0;
    let failed = 0;
    const stats = await fuzzWorkflow(batchFlow, {
      ...batchOptions,
      numRuns: 300,
      check: (result, ctx) => {
        expect(ctx.runs).toHaveLength(7);
        const payments = ctx.activities().filter((a) => a.name === 'payment');
        if (result.status === 'completed') {
          completed++;
          expect(payments.every((p) => p.status === 'completed')).toBe(true);
          expect(result.value.orders.map((o: { id: number }) => o.id)).toEqual([1, 2, 3, 4, 5]);
        } else {
          failed++;
          // all() throws the first failure by close time: the earliest failed payment, ties to the lowest leaf.
          const failures = ctx.children().filter((c) => c.status === 'failed');
          expect(failures.length).toBeGreaterThan(0);
        }
      },
    });
    expect(stats.cases).toBe(300);
    expect(stats.crashes).toBeGreaterThan(0);
    expect(completed).toBeGreaterThan(0);
    expect(failed).toBeGreaterThan(0);
    console.log(
      `fuzzWorkflow(BatchFlow: audit + 5 order children): ${stats.cases} cases, ${stats.steps} steps, ${stats.crashes} crashes in ` +
        `${stats.ms.toFixed(0)} ms = ${stats.casesPerSecond.toFixed(0)} cases/s`,
    );
  });

  it('draws close-time ties and checks that all() throws the earliest failure, ties to the lowest leaf', async () => {
    const leg = workflow('leg', function* (n: number) {
      return yield* activity<string>('work', n);
    });
    const racer = workflow('racer', function* () {
      return yield* all([0, 1, 2].map((n) => child(leg, n, { id: `leg-${n}` })));
    });
    let ties = 0;
    await fuzzWorkflow(racer, {
      outcomes: { work: { value: fc.constant('done'), failureWeight: 6 } }, // mostly failures: we want several at once
      numRuns: 300,
      check: (result, ctx) => {
        if (result.status !== 'failed') return;
        // Children that failed before the parent closed (the parent-close policy cancels the rest). However the
        // parent's activation received them, it throws the earliest close, ties going to the lowest leaf index.
        const failed = ctx.children().filter((c) => c.status === 'failed');
        if (new Set(failed.map((c) => c.closedAt)).size < failed.length) ties++;
        const leaf = (c: { workflowId: string }) => Number(c.workflowId.slice(-1));
        const expected = [...failed].sort((x, y) => x.closedAt! - y.closedAt! || leaf(x) - leaf(y))[0]!;
        expect(result.error.message).toContain(`(${expected.workflowId}) failed`);
        const decided = ctx.history(ctx.rootRunId).find((e) => e.type === 'BarrierFailed');
        expect(decided?.type === 'BarrierFailed' && decided.payload.leafIndex).toBe(leaf(expected));
      },
    });
    expect(ties).toBeGreaterThan(0);
  });

  it('lets children really run, fuzzing their activities, or running the real ones', async () => {
    const outcomes = new Set<string>();
    await fuzzWorkflow(batchFlow, {
      ...batchOptions,
      numRuns: 60,
      check: (_r, ctx) => {
        for (const c of ctx.children()) outcomes.add(c.status);
      },
    });
    // A failed child fails the barrier and the parent; the parent-close policy then cancels the children still open.
    expect(outcomes).toContain('completed');
    expect(outcomes).toContain('failed');

    const realPayments: unknown[] = [];
    await fuzzWorkflow(batchFlow, {
      ...batchOptions,
      fuzzChildActivities: false,
      activities: { payment: (o: unknown) => (realPayments.push(o), 'real receipt'), log: () => 'logged' },
      numRuns: 5,
      check: (r) => {
        expect(r.status).toBe('completed');
      },
    });
    expect(realPayments.length).toBeGreaterThanOrEqual(25);
  });

  it('learns child workflows from the commands that start them', async () => {
    const { workflows: _unused, ...withoutWorkflows } = batchOptions;
    const stats = await fuzzWorkflow(batchFlow, { ...withoutWorkflows, numRuns: 10 });
    expect(stats.cases).toBe(10);
  });

  it('skips time: a workflow sleeping for a day fuzzes in milliseconds, with timers racing the clock', async () => {
    const sleepy = workflow('sleepy', function* () {
      yield* sleep(24 * 60 * 60 * 1000);
      return yield* all([child(audit, 1), activity<string>('payment', { id: 0, amount: 0 })]);
    });
    const stats = await fuzzWorkflow(sleepy, { outcomes: batchOptions.outcomes, numRuns: 50 });
    expect(stats.ms).toBeLessThan(10_000);
  });

  it('gives every case its own reproducible random() and uuid() values', async () => {
    const tagger = workflow('tagger', function* () {
      const id = yield* uuid();
      return yield* activity<string>('payment', { id, amount: 1 });
    });
    const seen = new Set<string>();
    await fuzzWorkflow(tagger, {
      outcomes: { payment: fc.constant('ok') },
      numRuns: 30,
      check: (_r, ctx) => {
        const id = ctx.activities()[0]!.input as { id: string };
        expect(id.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        seen.add(id.id);
      },
    });
    expect(seen.size).toBeGreaterThan(1);
  });

  it('a crash makes a Math.random() workflow diverge on replay: the run is blocked and the case fails', async () => {
    const coin = workflow('coin', function* () {
      return Math.random() < 0.5 ? yield* activity<string>('a', 1) : yield* activity<string>('b', 1);
    });
    // (allowAmbientReads: without it the first direct read fails the case at once, see the next test)
    const property = fuzzProperty(coin, { outcomes: { a: fc.constant('A'), b: fc.constant('B') }, allowAmbientReads: true });
    const base: FuzzCase<undefined> = { input: undefined, picks: [], ticks: [], crashes: [], evict: false, outcomes: { a: [{ kind: 'ok', value: 'A' }], b: [{ kind: 'ok', value: 'B' }] }, seed: 0 };
    const reasons = new Map<string, number>();
    for (let seed = 0; seed < 20; seed++) {
      // Crash after the first activation: the rebuilt generator draws again and takes the other branch half the time.
      const failure = await property.run([{ ...base, seed, crashes: [1] }]);
      const err = (failure as { error: unknown }).error as FuzzCaseError;
      expect(err).toBeInstanceOf(FuzzCaseError);
      reasons.set(err.reason, (reasons.get(err.reason) ?? 0) + 1);
      if (err.reason === 'blocked') {
        expect(err.message).toMatch(/run coin-1 was blocked by NonDeterminismError\('non-deterministic workflow: journal event seq 2 recorded ActivityScheduled\(path 0, activity '(a|b)'/);
        expect(err.message).toContain('CRASH: the worker dies, losing 1 cached engine(s) and 1 in-flight activity; runs resume by replay');
        expect(err.message).toContain('BLOCKED: NonDeterminismError');
      }
    }
    expect(reasons.get('blocked')).toBeGreaterThan(0);
    // Without the crash, the fresh-engine replay check catches it anyway.
    expect(reasons.get('replay') ?? 0).toBeGreaterThan(0);

    // The same with the sticky cache off: every activation is a replay.
    const evicted = (await property.run([{ ...base, evict: true, seed: 3 }])) as { error: FuzzCaseError } | null;
    expect(evicted?.error).toBeInstanceOf(FuzzCaseError);
  });

  it('prints crash points in the shrunk schedule', async () => {
    const err = await fuzzWorkflow(batchFlow, {
      ...batchOptions,
      numRuns: 200,
      check: (_r, ctx) => ctx.crashes === 0, // an "invariant" that any crash breaks, to see one in a counterexample
    }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.message).toContain('the check returned false');
    expect(err.message).toMatch(/\d+\. t=\d+\s+CRASH: the worker dies/);
    expect(err.counterexample.crashes).toHaveLength(1); // shrunk to one crash
  });

  it('reports a user check that throws, with its message, and accepts fast-check parameters', async () => {
    const err = await fuzzWorkflow(batchFlow, {
      ...batchOptions,
      numRuns: 100,
      check: (r) => {
        if (r.status === 'failed') throw new Error(`boom: ${r.error.message}`);
      },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.message).toMatch(/Failure: the check failed: boom: child workflow 'order' \(batch-1\/order-\d\) failed/);
    expect(err.message).toMatch(/activity payment\(\{"id":\d,"amount":\d+\}\) in batch-1\/order-\d -> failed ApplicationError\('payment failed \(fuzzed\)'\)/);
    expect(err.cause).toBeInstanceOf(Error);
    expect(err.numShrinks).toBeGreaterThan(0);
  });

  it('flags a workflow whose replay returns a different result', async () => {
    let n = 0;
    const counter = workflow('counter', function* () {
      yield* activity<string>('a', 1);
      return ++n; // module state: every execution returns something new
    });
    const err = await fuzzWorkflow(counter, { outcomes: { a: fc.constant('A') }, numRuns: 5 }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.message).toMatch(/the replay returned \d+, the journal recorded \d+/);
  });

  it('fails a case whose workflow never settles, instead of hanging', async () => {
    const forever = workflow('forever', function* () {
      for (;;) yield* activity<string>('a', 1);
    });
    const err = await fuzzWorkflow(forever, { outcomes: { a: { value: fc.constant('A'), canFail: false } }, maxSteps: 50, numRuns: 3 }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.message).toContain('did not settle within 50 steps');
  });

  it('rejects an outcomes entry that cannot produce a success', async () => {
    await expect(fuzzWorkflow(batchFlow, { outcomes: { payment: { errors: ['x'] } } })).rejects.toThrow(/outcomes.payment has no `value` arbitrary/);
  });

  it('NonDeterminismError stays the cause, for instanceof checks', async () => {
    const wobbly = workflow('wobbly', function* () {
      return Date.now() % 2 === 0 ? yield* activity<string>('a', 1) : yield* activity<string>('b', 1);
    });
    const err = await fuzzWorkflow(wobbly, { outcomes: { a: fc.constant('A'), b: fc.constant('B') }, numRuns: 20, allowAmbientReads: true }).catch((e) => e);
    expect(err).toBeInstanceOf(FuzzFailure);
    expect(err.cause).toBeInstanceOf(NonDeterminismError);
  });
});
