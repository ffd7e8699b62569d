/**
 * Cascading cancellation (SPEC section 7), extending the depth-bound property: random run trees, built by really
 * running a `node` workflow on the in-memory journal, mixing open, completed and abandoned children, up to the
 * engine's bound and with deliberate attempts past it; then one node is cancelled (or terminated) with a random
 * cascade bound, while another node's activation that starts a child is in flight.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { collectDeliveries, loadEngine } from '../../src/actors/activation.js';
import { isOpen, type RunRecord } from '../../src/journal/journal.js';
import { startChild, waitForSignal, workflow, type ParentClosePolicy, type WorkflowDef } from '../../src/runtime/commands.js';
import { LeaseLostError, RunClosedError } from '../../src/runtime/errors.js';
import { Simulation } from '../../src/testing/simulator.js';
import { PROPERTY_TIMEOUT, RUNS } from './programs.js';

interface TreeSpec {
  /** Close right after starting the children (they then follow their parent-close policy). */
  done: boolean;
  kids: { policy: ParentClosePolicy; spec: TreeSpec }[];
}

/** A run of the tree: starts its children, then either returns or waits; on signal 'spawn' it starts one more. */
const node: WorkflowDef<TreeSpec, string> = workflow('node', function* (spec: TreeSpec): Generator<any, string, any> {
  for (const [i, k] of spec.kids.entries()) {
    try {
      yield* startChild(node, k.spec, { id: `k${i}`, parentClosePolicy: k.policy });
    } catch {
      // past the depth bound: ChildDepthExceededError, journaled; the node goes on
    }
  }
  if (spec.done) return 'done';
  yield* waitForSignal('spawn');
  yield* startChild(node, { done: false, kids: [] }, { id: 'late' });
  yield* waitForSignal('never');
  return 'unreachable';
});

/** Trees up to `depth` levels below this node: deep enough to try past any bound the property picks. */
function treeArbAt(depth: number): fc.Arbitrary<TreeSpec> {
  const kid = depth === 0 ? fc.constant(null) : treeArbAt(depth - 1);
  return fc.record({
    done: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
    kids:
      depth === 0
        ? fc.constant([])
        : fc.array(fc.record({ policy: fc.constantFrom<ParentClosePolicy>('cancel', 'terminate', 'abandon'), spec: kid as fc.Arbitrary<TreeSpec> }), {
            minLength: depth >= 3 ? 1 : 0,
            maxLength: depth >= 4 ? 3 : 2,
          }),
  });
}
const treeArb = treeArbAt(5);

/** The model: the runs a cancel of `target` with bound `max` must close, and those it must leave as truncated. */
function model(runs: RunRecord[], target: RunRecord, max: number): { closed: Set<string>; truncated: Set<string> } {
  const closed = new Set<string>();
  const truncated = new Set<string>();
  let generation = [target.runId];
  while (generation.length) {
    const next: string[] = [];
    for (const p of generation) {
      for (const c of runs.filter((r) => r.parentRunId === p && isOpen(r.status))) {
        if (c.parentClosePolicy === 'abandon') continue; // not reached by the cascade at any depth
        if (c.depth > max) truncated.add(c.runId);
        else {
          closed.add(c.runId);
          next.push(c.runId);
        }
      }
    }
    generation = next;
  }
  return { closed, truncated };
}

describe('cancellation cascade (property)', () => {
  /**
   * For every tree, target, mode and bound:
   *  - exactly the target's open, non-abandoned descendants within the bound are closed (cancelled, or terminated
   *    where their policy says so), carrying parent_cancelled / parent_terminated;
   *  - descendants deeper than the bound are untouched and reported as truncated; no run ever exists deeper than
   *    the engine's maxChildDepth;
   *  - nothing outside the target's subtree changes, and completed or abandoned children stay as they were;
   *  - an activation computed before the cascade that starts a child commits only if its run is outside the
   *    cascade (a child started concurrently cannot escape it);
   *  - after the cascade, running everything to rest appends no event to any run it closed.
   */
  it('closes exactly the open, non-abandoned descendants within the bound', async () => {
    await fc.assert(
      fc.asyncProperty(
        treeArb,
        fc.integer({ min: 1, max: 4 }),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 0, max: 9 }),
        fc.integer({ min: 0, max: 5 }),
        fc.constantFrom<'cancel' | 'terminate'>('cancel', 'terminate'),
        async (tree, engineMax, pick, racerPick, anyTarget, cascadeMax, mode) => {
          const sim = new Simulation({ workflows: [node], engine: { maxChildDepth: engineMax } });
          await sim.start(node, tree, { workflowId: 'root', runId: 'root' });
          await sim.runUntilIdle();
          const before = sim.journal.allRuns();
          for (const r of before) expect(r.depth).toBeLessThanOrEqual(engineMax);

          // Mostly an open run (the interesting case), sometimes any run (a closed one must be refused).
          const open = before.filter((r) => isOpen(r.status));
          const pool = anyTarget === 0 || !open.length ? before : open;
          const target = pool[pick % pool.length]!;
          const max = Math.min(cascadeMax, engineMax);

          // An in-flight activation: an open run receives 'spawn' and decides to start a child, not yet committed.
          const racer = open.length ? open[racerPick % open.length]! : undefined;
          let inflight: (() => Promise<unknown>) | undefined;
          if (racer) {
            await sim.journal.signal(racer.runId, { name: 'spawn', signalId: 'spawn-1' });
            const lease = (await sim.journal.acquire(racer.runId, 'racer', 60_000))!;
            const engine = await loadEngine(sim.host, (await sim.journal.getRun(racer.runId))!);
            const out = engine.activate(await collectDeliveries(sim.host, engine, []), sim.clock.now());
            inflight = () =>
              sim.journal.commit(lease, { afterSeq: engine.committedSeq, events: out.events, children: out.children, wait: engine.waitSpec() });
          }

          const expected = model(before, target, max);
          if (!isOpen(target.status)) {
            await expect(sim.journal.cancel(target.runId, { reason: 'r', mode, graceMs: 0, maxChildDepth: max })).rejects.toBeInstanceOf(RunClosedError);
            return;
          }
          const result = await sim.journal.cancel(target.runId, { reason: 'r', mode, graceMs: 0, maxChildDepth: max });
          expect(new Set(result.closed)).toEqual(expected.closed);
          expect(new Set(result.truncated)).toEqual(expected.truncated);

          const after = new Map(sim.journal.allRuns().map((r) => [r.runId, r]));
          for (const b of before) {
            const a = after.get(b.runId)!;
            if (b.runId === target.runId) {
              expect(a.status).toBe(mode === 'terminate' ? 'terminated' : 'cancelled');
            } else if (expected.closed.has(b.runId)) {
              expect(a.status).toBe(b.parentClosePolicy === 'terminate' ? 'terminated' : 'cancelled');
              expect(a.error?.message).toBe(mode === 'terminate' ? 'parent_terminated' : 'parent_cancelled');
              expect(a.leaseOwner).toBeNull();
            } else {
              // outside the cascade: untouched (status and journal)
              expect(a.status).toBe(b.status);
              if (b.runId !== racer?.runId) expect(a.lastSeq).toBe(b.lastSeq);
            }
          }

          // The racing activation: it may commit only if its run was not closed by the cascade.
          if (racer && inflight) {
            const racerClosed = racer.runId === target.runId || expected.closed.has(racer.runId);
            if (racerClosed) await expect(inflight()).rejects.toBeInstanceOf(LeaseLostError);
            else await inflight();
          }
          const seqAfterCascade = new Map(sim.journal.allRuns().map((r) => [r.runId, r.lastSeq]));
          await sim.runUntilIdle();
          for (const r of sim.journal.allRuns()) {
            if (r.runId === target.runId || expected.closed.has(r.runId)) {
              expect(r.lastSeq).toBe(seqAfterCascade.get(r.runId));
              // no child escaped: nothing under a closed run was created after the cascade
              expect(sim.journal.allRuns().filter((c) => c.parentRunId === r.runId && !before.some((b) => b.runId === c.runId))).toEqual([]);
            }
            expect(r.depth).toBeLessThanOrEqual(engineMax);
          }
        },
      ),
      { numRuns: RUNS },
    );
  }, PROPERTY_TIMEOUT);
});
