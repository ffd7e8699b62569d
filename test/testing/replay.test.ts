import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activity, child, defineActivity, sleep, workflow } from '../../src/runtime/commands.js';
import { NonDeterminismError, UnknownWorkflowError } from '../../src/runtime/errors.js';
import { Client } from '../../src/client/client.js';
import {
  checkHistories,
  checkHistory,
  createTestEnv,
  HistoryReplayError,
  replayHistories,
  replayHistory,
  type ExportedHistory,
} from '../../src/testing/index.js';

const greet = defineActivity('greet', async (name: string) => `hello ${name}`);
const shout = defineActivity('shout', async (name: string) => `HELLO ${name}`);
const helper = workflow('helper', function* (n: number) {
  return n * 2;
});

const v1 = workflow('greeter', function* (name: string) {
  const a = yield* activity(greet, name);
  const b = yield* child(helper, 21);
  yield* sleep(1000);
  return `${a} ${b}`;
});

let dir: string;
let closed: ExportedHistory;
let midRun: ExportedHistory;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'skein-replay-'));
  const env = createTestEnv({ workflows: [v1, helper], activities: [greet] });
  const done = await env.start(v1, 'ada');
  await env.result(done);
  closed = await env.exportHistory(done.runId);
  const open = await env.start(v1, 'bob');
  await env.runUntilIdle(); // waiting on the timer
  midRun = await env.exportHistory(open.runId);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('replayHistory', () => {
  it('replays a closed history against unchanged code', async () => {
    const r = await replayHistory([v1, helper], closed);
    expect(r).toMatchObject({ ok: true, status: 'completed', result: 'hello ada 42', workflow: 'greeter', events: closed.events.length });
  });

  it('replays a history exported mid-run (the run is still open)', async () => {
    const r = await replayHistory([v1, helper], midRun);
    expect(r.status).toBe('open');
  });

  it('a changed activity is a NonDeterminismError with the seq and both commands', async () => {
    const v2 = workflow('greeter', function* (name: string) {
      const a = yield* activity(shout, name);
      const b = yield* child(helper, 21);
      yield* sleep(1000);
      return `${a} ${b}`;
    });
    const err = await replayHistory([v2, helper], closed).catch((e) => e);
    expect(err).toBeInstanceOf(NonDeterminismError);
    expect(err.seq).toBe(2);
    expect(err.journaled).toMatch(/^ActivityScheduled\(path 0, activity 'greet', input hash \w+\)$/);
    expect(err.issued).toMatch(/^ActivityScheduled\(path 0, activity 'shout', input hash \w+\)$/);

    const r = await checkHistory([v2, helper], closed);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toBeInstanceOf(NonDeterminismError);
  });

  it('a changed child input is caught by its hash', async () => {
    const v2 = workflow('greeter', function* (name: string) {
      const a = yield* activity(greet, name);
      const b = yield* child(helper, 22);
      yield* sleep(1000);
      return `${a} ${b}`;
    });
    const err = await replayHistory([v2, helper], closed).catch((e) => e);
    expect(err).toBeInstanceOf(NonDeterminismError);
    expect(err.message).toMatch(/recorded ChildScheduled\(path 1, workflow 'helper', input hash (\w+)\), but the code now issued ChildScheduled\(path 1, workflow 'helper', input hash (?!\1)\w+\)/);
  });

  it('code that no longer waits where the recorded code waited is caught at the end of an open history', async () => {
    const v2 = workflow('greeter', function* (name: string) {
      const a = yield* activity(greet, name);
      const b = yield* child(helper, 21);
      yield* activity(greet, 'extra'); // the recorded run was sleeping here
      return `${a} ${b}`;
    });
    const err = await replayHistory([v2, helper], midRun).catch((e) => e);
    expect(err).toBeInstanceOf(NonDeterminismError);
  });

  it('code reading Math.random() directly is caught even when the history replays as it was', async () => {
    const flaky = workflow('flaky', function* () {
      if (Math.random() < 0.5) yield* activity(greet, 'heads');
      else yield* activity(greet, 'tails');
      return 'done';
    });
    const env = createTestEnv({ workflows: [flaky], activities: [greet] });
    const ref = await env.start(flaky, undefined);
    await env.result(ref);
    const err = await replayHistory([flaky], await env.exportHistory(ref.runId)).catch((e) => e);
    expect(err).toBeInstanceOf(NonDeterminismError);
  });

  it('reads histories from files and checks their shape; unknown workflows are reported', async () => {
    const file = join(dir, 'closed.json');
    await writeFile(file, JSON.stringify(closed));
    expect((await replayHistory([v1, helper], file)).ok).toBe(true);
    await writeFile(join(dir, 'bad.txt'), '{"nope":1}');
    await expect(replayHistory([v1], join(dir, 'bad.txt'))).rejects.toThrow(/not a skein history/);
    await expect(replayHistory([v1], join(dir, 'missing.json'))).rejects.toThrow(/cannot read history file/);
    await expect(replayHistory([helper], closed)).rejects.toBeInstanceOf(UnknownWorkflowError);
  });

  it('accepts the JSON a Client exports from any journal', async () => {
    const env = createTestEnv({ workflows: [v1, helper], activities: [greet] });
    const ref = await env.start(v1, 'cy');
    await env.result(ref);
    const fromClient = await new Client(env.journal).history(ref.runId);
    const roundTripped = JSON.parse(JSON.stringify(fromClient)) as ExportedHistory;
    expect((await replayHistory([v1, helper], roundTripped)).result).toBe('hello cy 42');
  });
});

describe('replayHistories', () => {
  it('replays a folder of golden files in one go and lists every failure', async () => {
    const golden = join(dir, 'golden');
    const env = createTestEnv({ workflows: [v1, helper], activities: [greet] });
    const ref = await env.start(v1, 'dee', { workflowId: 'greet-dee' });
    await env.result(ref);
    const files = await env.saveHistories(ref.runId, golden);
    expect(files.map((f) => f.slice(golden.length + 1))).toEqual(['greet-dee.json', 'greet-dee_helper_1.json']);

    expect((await replayHistories([v1, helper], golden)).map((r) => r.status)).toEqual(['completed', 'completed']);

    const v2 = workflow('greeter', function* (name: string) {
      return yield* activity(shout, name);
    });
    const err = await replayHistories([v2, helper], golden).catch((e) => e);
    expect(err).toBeInstanceOf(HistoryReplayError);
    expect(err.failures).toHaveLength(1);
    expect(err.message).toContain('1 of 2 histories no longer replay');
    expect(err.message).toContain('greet-dee.json: NonDeterminismError');
    expect((await checkHistories([v2, helper], golden)).map((r) => r.ok)).toEqual([false, true]);

    // A folder with no histories is an error, so a wrong path cannot pass silently.
    const empty = join(dir, 'empty');
    await mkdir(empty);
    await expect(replayHistories([v1], empty)).rejects.toThrow(/no \*\.json histories found/);
  });
});
