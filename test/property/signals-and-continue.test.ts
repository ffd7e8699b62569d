/**
 * Signals and continue-as-new (SPEC sections 8 and 9) under random schedules and worker crashes, on the in-memory
 * journal with the deterministic simulator.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RunEngine } from '../../src/runtime/engine.js';
import { activity, child, continueAsNew, defineActivity, sleep, startChild, waitForSignal, workflow } from '../../src/runtime/commands.js';
import { Simulation } from '../../src/testing/simulator.js';
import { PROPERTY_TIMEOUT, RUNS, scheduleArb } from './programs.js';

// ---------------------------------------------------------------------------------------------------------------
// Signals

interface ReceiverPlan {
  /** The names the run waits for, in order; a sleep of `pauseMs` before each wait. */
  waits: { name: 'a' | 'b'; pauseMs: number }[];
}

const receiver = workflow('receiver', function* (plan: ReceiverPlan) {
  const got: { name: string; payload: unknown }[] = [];
  for (const w of plan.waits) {
    if (w.pauseMs) yield* sleep(w.pauseMs);
    got.push({ name: w.name, payload: yield* waitForSignal(w.name) });
  }
  return got;
});

/** One step of the outside world: an action of the simulation, a signal sent, a re-send of an earlier one, a crash. */
type Move = { k: 'act'; pick: number } | { k: 'send'; name: 'a' | 'b' } | { k: 'resend'; pick: number } | { k: 'crash' } | { k: 'tick'; ms: number };

const moveArb: fc.Arbitrary<Move> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('act' as const), pick: fc.nat(5) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('send' as const), name: fc.constantFrom('a' as const, 'b' as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('resend' as const), pick: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('crash' as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('tick' as const), ms: fc.constantFrom(1, 10, 50) }) },
);

describe('signals (property)', () => {
  /**
   * For random wait plans and random interleavings of sends, re-sends (same signal id), run activations, clock
   * moves and crashes: every signal is journaled by the run exactly once, in send order; the k-th wait on a name
   * gets the k-th signal sent with that name; the run completes exactly when every wait has had its signal.
   */
  it('delivers every signal exactly once, in send order, to the right wait', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ waits: fc.array(fc.record({ name: fc.constantFrom('a' as const, 'b' as const), pauseMs: fc.constantFrom(0, 0, 5, 30) }), { minLength: 1, maxLength: 5 }) }),
        fc.array(moveArb, { maxLength: 40 }),
        async (plan, moves) => {
          const sim = new Simulation({ workflows: [receiver] });
          const runId = await sim.start(receiver, plan, { workflowId: 'recv', runId: 'recv' });
          const sent: { id: string; name: string; payload: number }[] = [];
          const sendOne = async (name: string) => {
            const payload = sent.length;
            const id = `sig-${payload}`;
            try {
              await sim.journal.signal(runId, { name, payload, signalId: id });
              sent.push({ id, name, payload });
            } catch {
              // the run has closed: a signal to a closed run is refused (RunClosedError), nothing recorded
            }
          };
          for (const m of moves) {
            if (m.k === 'act') {
              const acts = sim.actions();
              if (acts.length) await sim.perform(acts[m.pick % acts.length]!);
            } else if (m.k === 'send') await sendOne(m.name);
            else if (m.k === 'resend' && sent.length) {
              const s = sent[m.pick % sent.length]!;
              await sim.journal.signal(runId, { name: s.name, payload: s.payload, signalId: s.id }).catch(() => {});
            } else if (m.k === 'crash') sim.crash();
            else if (m.k === 'tick') sim.clock.advance(m.ms);
          }
          await sim.runUntilIdle();

          const events = await sim.history(runId);
          const received = events.flatMap((e) => (e.type === 'SignalReceived' ? [e.payload] : []));
          // exactly once, in send order
          expect(received.map((r) => r.signalId)).toEqual(sent.map((s) => s.id).slice(0, received.length));
          const run = await sim.run(runId);
          if (run.status === 'running') {
            // still waiting: every sent signal has been journaled, none is left in the inbox
            expect(received.length).toBe(sent.length);
            expect((await sim.journal.inbox(runId)).signals).toEqual([]);
          }
          // the k-th wait on a name got the k-th signal of that name
          const byName = (n: string) => sent.filter((s) => s.name === n).map((s) => s.payload);
          const counters: Record<string, number> = { a: 0, b: 0 };
          const expected: { name: string; payload: unknown }[] = [];
          for (const w of plan.waits) {
            const next = byName(w.name)[counters[w.name]!++];
            if (next === undefined) break;
            expected.push({ name: w.name, payload: next });
          }
          if (expected.length === plan.waits.length) {
            expect(run.status).toBe('completed');
            expect(run.result).toEqual(expected);
          } else {
            expect(run.status).toBe('running');
          }
        },
      ),
      { numRuns: RUNS },
    );
  }, PROPERTY_TIMEOUT);
});

// ---------------------------------------------------------------------------------------------------------------
// Continue-as-new

const step = defineActivity('step', async (k: number) => k * 10);

/** Continues as new `n` times (doing an activity each time), then returns its final marker. */
const chain = workflow('chain', function* (input: { n: number; k: number }) {
  const v = yield* activity(step, input.k);
  if (input.k < input.n) return yield* continueAsNew({ n: input.n, k: input.k + 1 });
  return `final-${input.k}-${v}`;
});

const chainParent = workflow('chainParent', function* (input: { n: number; viaHandle: boolean }) {
  if (input.viaHandle) {
    const h = yield* startChild(chain, { n: input.n, k: 0 }, { id: 'c' });
    const r = yield* h.result();
    return { r, runId: h.runId, callId: h.callId };
  }
  const r = yield* child(chain, { n: input.n, k: 0 }, { id: 'c' });
  return { r, runId: null, callId: null };
});

describe('continue-as-new (property)', () => {
  /**
   * For random chains (1-5 runs) under random schedules with crashes, the parent receives exactly the final run's
   * result (never an intermediate marker); the handle's runId is the final run and its callId is shared by every run
   * of the chain; the parent journals one ChildStarted per continuation; replaying the parent's journal from scratch
   * is silent and gives the same result.
   */
  it('the parent gets the final run result and replays deterministically', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 4 }), fc.boolean(), scheduleArb, async (n, viaHandle, s) => {
        const sim = new Simulation({ workflows: [chainParent, chain], activities: [step] });
        const parentId = await sim.start(chainParent, { n, viaHandle }, { workflowId: 'p', runId: 'p' });
        const crashAt = new Set(s.crashes);
        await sim.runUntilIdle({
          choose: (() => {
            let i = 0;
            return (len: number) => s.choices[i++ % s.choices.length]! % len;
          })(),
          tick: (() => {
            let i = 0;
            return () => s.ticks[i++ % s.ticks.length]!;
          })(),
          crashBefore: (() => {
            let i = 0;
            return () => crashAt.has(i++);
          })(),
        });
        const parent = await sim.run(parentId);
        expect(parent.status).toBe('completed');
        const out = parent.result as { r: string; runId: string | null; callId: string | null };
        expect(out.r).toBe(`final-${n}-${n * 10}`);

        const runs = sim.journal.allRuns().filter((r) => r.workflow === 'chain');
        expect(runs).toHaveLength(n + 1);
        const final = runs.find((r) => r.status === 'completed')!;
        expect(runs.filter((r) => r.status === 'continued')).toHaveLength(n);
        expect(new Set(runs.map((r) => r.callId)).size).toBe(1);
        expect(new Set(runs.map((r) => r.workflowId)).size).toBe(1);
        if (viaHandle) {
          expect(out.runId).toBe(final.runId);
          expect(out.callId).toBe(final.callId);
        }
        const events = await sim.history(parentId);
        expect(events.filter((e) => e.type === 'ChildStarted')).toHaveLength(n);

        const fresh = new RunEngine(chainParent, { runId: parent.runId, workflowId: parent.workflowId, depth: 0, queue: parent.queue });
        fresh.replay(events, sim.clock.now());
        expect(fresh.takeOutput().events).toEqual([]);
        expect(fresh.closed).toBe(true);
      }),
      { numRuns: RUNS },
    );
  }, PROPERTY_TIMEOUT);
});
