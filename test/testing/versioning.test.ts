/**
 * docs/versioning.md, run: changing a workflow that has runs in flight. Every code block of the guide is a region of
 * examples/versioning/workflows.ts or of this file (checked verbatim below), and every step runs here: the replay
 * check against a history recorded with version 1 before the change (committed, test/testing/golden/versioning/), the
 * deploy with a run in flight, new runs, and removing the patch.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NonDeterminismError } from '../../src/index.js';
import { createTestEnv, fuzzWorkflow, HistoryReplayError, replayHistories } from '../../src/testing/index.js';
import { activities, shipOrderNaive, shipOrderV1, shipOrderV2, shipOrderV3, shipOrderV4 } from '../../examples/versioning/workflows.js';

const root = resolve(import.meta.dirname, '../..');
const GOLDEN = 'test/testing/golden/versioning';

// #region record
// Record what a run in flight looks like under version 1 (or export one from production: client.history(runId)).
async function recordV1(dir: string): Promise<void> {
  const env = createTestEnv({ workflows: [shipOrderV1], activities });
  const ref = await env.start(shipOrderV1, { id: 'o-1', total: 250 }, { workflowId: 'ship-o-1' });
  await env.runUntilIdle(); // the label is printed; the run now waits out its day: in flight
  await env.saveHistory(ref.runId, join(dir, 'ship-o-1.json'));
}
// #endregion record

describe('versioning: a change with runs in flight (docs/versioning.md)', () => {
  it('the history recorded with version 1 before the change is in the repository', async () => {
    // Recorded once, with version 1's code, and committed: it must not be re-recorded by later code.
    if (!existsSync(join(GOLDEN, 'ship-o-1.json')) || process.env.SKEIN_UPDATE_GOLDEN === '1') await recordV1(GOLDEN);
    const h = JSON.parse(readFileSync(join(GOLDEN, 'ship-o-1.json'), 'utf8'));
    expect(h.events.map((e: { type: string }) => e.type)).toEqual(['RunStarted', 'ActivityScheduled', 'ActivityCompleted', 'TimerStarted']);
  });

  it('the naive change fails the replay check, naming the seq and both commands', async () => {
    // #region check-naive
    await expect(replayHistories([shipOrderNaive], GOLDEN)).rejects.toThrow(
      /ship-o-1.json: NonDeterminismError: .*seq 4 recorded TimerStarted\(path 1\), but the code now issued ActivityScheduled\(path 1, activity 'insure'/,
    );
    // #endregion check-naive
    const err = await replayHistories([shipOrderNaive], GOLDEN).catch((e) => e);
    expect(err).toBeInstanceOf(HistoryReplayError);
    expect(err.failures[0].error).toBeInstanceOf(NonDeterminismError);
    expect(err.failures[0].error.seq).toBe(4);
  });

  it('version 2 (patched) replays it, keeping the old path for that run', async () => {
    // #region check-v2
    const [replayed] = await replayHistories([shipOrderV2], GOLDEN);
    expect(replayed!.patches).toEqual({ 'insure-parcels': false }); // the run in flight keeps version 1's path
    // #endregion check-v2
    expect(replayed!.status).toBe('open');
  });

  it('deployed with a run in flight: that run finishes on the old path, new runs take the new one', async () => {
    // #region deploy
    const env = createTestEnv({ workflows: [shipOrderV1], activities });
    const inFlight = await env.start(shipOrderV1, { id: 'o-1', total: 250 });
    await env.runUntilIdle(); // waiting out its day under version 1

    env.deploy([shipOrderV2]); // the worker restarts with version 2: open runs resume by replay
    const started = await env.start(shipOrderV2, { id: 'o-2', total: 250 });

    expect(await env.result(inFlight)).toBe('o-1 handed over with label-o-1');
    expect(await env.result(started)).toBe('o-2 handed over with label-o-2');
    const calls = async (runId: string) => (await env.history(runId)).events.flatMap((e) => (e.type === 'ActivityScheduled' ? [e.payload.name] : []));
    expect(await calls(inFlight.runId)).toEqual(['printLabel', 'handOver']); // version 1's path, to the end
    expect(await calls(started.runId)).toEqual(['printLabel', 'insure', 'handOver']);
    // #endregion deploy
    expect((await env.history(started.runId)).events.some((e) => e.type === 'PatchMarker')).toBe(true);
  });

  it('version 3 (deprecatePatch) replays version 2 histories; version 1 histories tell you to wait', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'skein-versioning-'));
    try {
      // #region record-v2
      const env = createTestEnv({ workflows: [shipOrderV2], activities });
      const ref = await env.start(shipOrderV2, { id: 'o-2', total: 250 }, { workflowId: 'ship-o-2' });
      await env.runUntilIdle();
      await env.saveHistory(ref.runId, join(dir, 'ship-o-2.json')); // has the marker: patched() was true
      // #endregion record-v2
      // #region check-v3
      await replayHistories([shipOrderV3], dir); // version 2 runs replay: deprecatePatch takes their marker
      await expect(replayHistories([shipOrderV3], GOLDEN)).rejects.toThrow(/ship-o-1.json: NonDeterminismError/); // version 1 runs do not
      // #endregion check-v3
      // #region check-v4
      await expect(replayHistories([shipOrderV4], dir)).rejects.toThrow(/recorded PatchMarker\('insure-parcels'\)/);
      // #endregion check-v4
      expect((await replayHistories([shipOrderV2], dir))[0]!.patches).toEqual({ 'insure-parcels': true });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the fuzzer runs both paths of every patch: new runs, and runs started before it', async () => {
    const seen = { before: 0, after: 0 };
    // #region fuzz
    await fuzzWorkflow(shipOrderV2, {
      input: fc.record({ id: fc.constantFrom('o-1', 'o-2'), total: fc.integer({ min: 1, max: 500 }) }),
      activities,
      check: (result, ctx) => {
        const insured = ctx.activities().some((c) => c.name === 'insure');
        // #endregion fuzz
        if (ctx.prePatch) seen.before++;
        else seen.after++;
        // #region fuzz
        if (ctx.prePatch || ctx.input.total <= 100) expect(insured).toBe(false);
        else expect(insured).toBe(true);
      },
      numRuns: 60,
    });
    // #endregion fuzz
    expect(seen.before).toBeGreaterThan(0);
    expect(seen.after).toBeGreaterThan(0);
  });

  it("the guide's code blocks are regions of the example module and of this test, verbatim", () => {
    const guide = readFileSync(join(root, 'docs/versioning.md'), 'utf8');
    const sources = [readFileSync(join(root, 'examples/versioning/workflows.ts'), 'utf8'), readFileSync(join(root, 'test/testing/versioning.test.ts'), 'utf8')];
    const regions = new Map<string, string>();
    const indents = new Map<string, number>();
    for (const src of sources) {
      for (const m of src.matchAll(/^([ \t]*)\/\/ #region (\S+)\n([\s\S]*?)^[ \t]*\/\/ #endregion \2$/gm)) {
        if (!indents.has(m[2]!)) indents.set(m[2]!, m[1]!.length);
        const indent = indents.get(m[2]!)!;
        // (a region may be cut in two around lines the guide leaves out: its parts are joined)
        const body = m[3]!
          .split('\n')
          .filter((l) => !/^\s*\/\/ #(end)?region /.test(l))
          .map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length)))
          .join('\n');
        regions.set(m[2]!, (regions.get(m[2]!) ?? '') + body);
      }
    }
    const blocks = [...guide.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
    expect(blocks.length).toBeGreaterThanOrEqual(8);
    const values = [...regions.values()];
    for (const b of blocks) expect(values, `a code block of docs/versioning.md is no region:\n${b}`).toContain(b);
  });
});
