/**
 * The worker's own path (XState run actors, eager activities, inline children handed over or committed with their
 * parent, group commits) against the replay engine: random programs from programs.ts run to completion on a real
 * Worker over the in-memory journal, with inline children on (a generous budget, so many children finish inside
 * their parent's activation) or off. Real timing decides which barrier failures win, so results are not compared
 * with a model; what must hold is what replay and durability promise.
 */
import fc from 'fast-check';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { isOpen } from '../../src/journal/journal.js';
import { MemoryJournal } from '../../src/journal/memory.js';
import { ApplicationError } from '../../src/runtime/errors.js';
import { Client } from '../../src/client/client.js';
import { Worker } from '../../src/worker/worker.js';
import { prog, replayFresh, rootProgArb, type Prog } from './programs.js';

/** The programs' one activity, for real: its outcome is written in its input (as the simulator scripts it). */
const act = async (x: { label: string; ok: boolean }) => {
  if (!x.ok) throw new ApplicationError(x.label, { name: 'ActivityBroke', nonRetryable: true });
  return `v:${x.label}`;
};

const RUNS_HERE = Number(process.env.SKEIN_PROPERTY_RUNS ?? 200);

describe('worker path replays exactly (property)', () => {
  /**
   * For random programs (children, handles, nested all/allSettled, activities, sleeps, caught failures), with inline
   * children on or off:
   *  - every run closes, and none is blocked;
   *  - every run's journal, replayed from scratch by a fresh engine, is silent (no new decision) and reaches the
   *    same close: the worker's live path, inline children included, journaled exactly what its code did;
   *  - every child run exists once, with exactly one ChildScheduled naming it, and seqs are gap-free;
   *  - an activity's result is journaled at most once per call path.
   */
  it('runs random programs on a Worker; every journal replays silently', async () => {
    await fc.assert(
      fc.asyncProperty(rootProgArb, fc.boolean(), async (p: Prog, inline) => {
        const journal = new MemoryJournal();
        const worker = new Worker({
          workflows: [prog],
          activities: { act },
          journal,
          logger: pino({ level: 'silent' }),
          pollIntervalMs: 5,
          inlineChildBudgetMs: inline ? 200 : 0,
        });
        worker.start();
        try {
          const client = new Client(journal, { logger: pino({ level: 'silent' }) });
          const ref = await client.start(prog, p, { workflowId: 'root' });
          await client.result(ref, { timeoutMs: 20_000 }).catch(() => undefined);
          // abandoned children outlive their parent: let them finish too
          for (let i = 0; i < 2000 && journal.allRuns().some((r) => isOpen(r.status) && r.status !== 'blocked'); i++) await new Promise((r) => setTimeout(r, 5));
          const runs = journal.allRuns();
          expect(runs.filter((r) => r.status === 'blocked')).toEqual([]);
          // children cancelled by their parent's close are closed too; nothing is left open
          expect(runs.filter((r) => isOpen(r.status)).map((r) => r.workflowId)).toEqual([]);
          const scheduled = new Map<string, number>();
          for (const r of runs) {
            const events = await journal.readEvents(r.runId);
            events.forEach((e, i) => expect(e.seq).toBe(i + 1));
            for (const e of events) if (e.type === 'ChildScheduled') scheduled.set(e.payload.childRunId, (scheduled.get(e.payload.childRunId) ?? 0) + 1);
            const done = events.flatMap((e) => (e.type === 'ActivityCompleted' || e.type === 'ActivityFailed' ? [e.payload.path] : []));
            expect(new Set(done).size).toBe(done.length);
            if (r.status === 'cancelled' || r.status === 'terminated') continue; // closed from outside: its code stopped mid-way
            const { newEvents, engine } = replayFresh(prog, { run: r, events }, {}, Date.now());
            expect(newEvents).toBe(0);
            expect(engine.closed).toBe(true);
          }
          for (const r of runs) if (r.parentRunId) expect(scheduled.get(r.runId)).toBe(1);
          expect([...scheduled.values()].every((n) => n === 1)).toBe(true);
        } finally {
          await worker.shutdown();
        }
      }),
      { numRuns: RUNS_HERE },
    );
  }, 300_000);
});
