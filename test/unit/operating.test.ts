import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Client, isRunId } from '../../src/client/client.js';
import { ManualClock, MemoryJournal } from '../../src/journal/memory.js';
import { activity, child, defineActivity, sleep, waitForSignal, workflow } from '../../src/runtime/commands.js';
import { InvalidArgumentError, UnknownRunError } from '../../src/runtime/errors.js';
import { Worker } from '../../src/worker/worker.js';

/**
 * Operating a fleet (docs/operating.md), on the memory journal with a real Worker:
 *  - the client takes a workflow id wherever it takes a run id (its newest run), by one rule: `r_` + 22 base64url
 *    characters is a run id, anything else a workflow id first; an id that is neither is UnknownRunError;
 *  - tree() pages a run's descendants with what each waits on;
 *  - the worker's log lines: run started / closed / blocked / resumed (info; blocked at error), activity retry
 *    (warn), run taken over (info), each with runId, workflowId, workflow, parentRunId, rootRunId; the startup line
 *    names the journal, queues, workflows and activities;
 *  - the worker's heartbeat row, and its metrics registry.
 */

type Line = { level: number; msg: string; [k: string]: unknown };

function capture(): { logger: pino.Logger; lines: Line[] } {
  const lines: Line[] = [];
  return { lines, logger: pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) }) };
}

async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let flakyCalls = 0;
const flaky = defineActivity(
  'flaky',
  async (n: number) => {
    if (flakyCalls++ === 0) throw new Error('first attempt fails');
    return n + 1;
  },
  { retry: { initialIntervalMs: 1 } },
);
const leaf = workflow('leaf', function* (n: number) {
  return yield* activity(flaky, n);
});
const parent = workflow('parent', function* (n: number) {
  const a = yield* child(leaf, n, { id: 'leaf' });
  return a * 10;
});
let broken = true;
const fragile = workflow('fragile', function* () {
  yield* sleep(1);
  if (broken) (null as unknown as { x: number }).x = 1; // a TypeError: a bug, which blocks the run
  return 'fixed';
});
const waiter = workflow('waiter', function* () {
  return yield* waitForSignal<string>('go');
});

describe('client: run ids and workflow ids', () => {
  it('every call that takes a run id takes a workflow id (its newest run); an id that is neither is UnknownRunError', async () => {
    const journal = new MemoryJournal();
    const { logger } = capture();
    const worker = new Worker({ workflows: [waiter], journal, logger, pollIntervalMs: 10 });
    worker.start();
    const client = new Client(journal, { logger });
    try {
      const ref = await client.start(waiter, undefined, { workflowId: 'order-42' });
      expect(isRunId(ref.runId)).toBe(true);
      expect(isRunId('order-42')).toBe(false);
      expect((await client.getRunByWorkflowId('order-42')).runId).toBe(ref.runId);
      expect((await client.getRun('order-42')).runId).toBe(ref.runId);
      expect((await client.getRun({ workflowId: 'order-42' })).runId).toBe(ref.runId);
      await until('the run waiting on its signal', async () => (await client.describe('order-42')).waitKind === 'signal');
      expect((await client.describe('order-42')).run.runId).toBe(ref.runId);
      expect((await client.history('order-42')).runId).toBe(ref.runId);
      expect(await client.listChildren('order-42')).toEqual([]);
      await client.signal('order-42', 'go', 'now');
      expect(await client.result('order-42', { timeoutMs: 5000 })).toBe('now');
      expect(await client.result({ workflowId: 'order-42' })).toBe('now');

      const other = await client.start(waiter, undefined, { workflowId: 'order-43' });
      await client.cancel('order-43', 'no longer needed', { graceMs: 0 });
      expect((await client.getRun(other.runId)).status).toBe('cancelled');
      const third = await client.start(waiter, undefined, { workflowId: 'order-44' });
      await client.terminate({ workflowId: 'order-44' }, 'bad order');
      expect((await client.getRun(third.runId)).status).toBe('terminated');

      for (const call of [
        () => client.getRun('no-such-id'),
        () => client.describe('no-such-id'),
        () => client.history('no-such-id'),
        () => client.cancel('no-such-id'),
        () => client.terminate('no-such-id'),
        () => client.signal('no-such-id', 'go'),
        () => client.resume('no-such-id'),
        () => client.result('no-such-id'),
        () => client.retry('no-such-id', 'why'),
        () => client.tree('no-such-id'),
        () => client.getRun('r_0000000000000000000000'),
        () => client.getRunByWorkflowId(ref.runId),
      ]) {
        await expect(call()).rejects.toBeInstanceOf(UnknownRunError);
      }
      // a workflow id must never look like a run id
      await expect(client.start(waiter, undefined, { workflowId: 'r_0000000000000000000000' })).rejects.toBeInstanceOf(InvalidArgumentError);
    } finally {
      await worker.shutdown();
    }
  });

  it('retry by workflow id: a new run, the same input; the workflow id then names it; the reason and who asked are journaled', async () => {
    const clock = new ManualClock();
    const journal = new MemoryJournal(clock);
    const client = new Client(journal, { identity: 'ada@ops', logger: pino({ level: 'silent' }) });
    const ref = await client.start('charge', { amount: 5 }, { workflowId: 'charge-1' });
    clock.advance(1);
    await client.terminate(ref.runId, 'stuck');
    clock.advance(1);
    const r = await client.retry('charge-1', 'card service fixed');
    expect(r).toMatchObject({ created: true, previousRunId: ref.runId, run: { workflowId: 'charge-1', input: { amount: 5 }, status: 'running', retryOf: ref.runId } });
    expect((await client.getRun('charge-1')).runId).toBe(r.run.runId);
    expect((await client.history(r.run.runId)).events[0]!.payload).toMatchObject({ retry: { previousRunId: ref.runId, reason: 'card service fixed', by: 'ada@ops' } });
    expect((await client.listRuns({ workflowId: 'charge-1' })).runs.map((x) => x.runId)).toEqual([r.run.runId, ref.runId]);
    await expect(client.retry('charge-1', 'again')).rejects.toMatchObject({ name: 'RunStateError', status: 'running' });
    await expect(client.retry(ref.runId, '')).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('tree(): descendants a page at a time, each with its parent, depth and what it waits on', async () => {
    const clock = new ManualClock();
    const journal = new MemoryJournal(clock);
    const client = new Client(journal, { logger: pino({ level: 'silent' }) });
    // the tree, written through the journal as a worker would: a root with 25 children (one commit), two of them with
    // a child each
    const root = await client.start('fan', 25, { workflowId: 'tree-1' });
    const lease = (await journal.acquire(root.runId, 'w', 60_000))!;
    const kid = (i: number) => ({ runId: `r_kid${String(i).padStart(19, '0')}`, workflowId: `tree-1/w${i}`, workflow: 'waiter', input: null, queue: 'default', callId: `c${i}` });
    await journal.commit(lease, {
      afterSeq: 1,
      events: [],
      children: Array.from({ length: 25 }, (_, i) => kid(i)),
      wait: { timerAt: null, onClose: [], onFailure: [], onAllClosed: [], busy: false },
      waits: { waits: [{ kind: 'child', path: '0', since: clock.now(), childRunId: kid(0).runId }], total: 25 },
      release: true,
    });
    for (const i of [3, 7]) {
      const l = (await journal.acquire(kid(i).runId, 'w', 60_000))!;
      await journal.commit(l, {
        afterSeq: 1,
        events: [],
        children: [{ runId: `r_gk${i}${'0'.repeat(19)}`, workflowId: `tree-1/w${i}/g`, workflow: 'waiter', input: null, queue: 'default', callId: 'g' }],
        wait: { timerAt: null, onClose: [], onFailure: [], onAllClosed: [], busy: false },
        waits: { waits: [{ kind: 'signal', path: '1', since: clock.now(), signal: 'go' }], total: 1 },
        release: true,
      });
    }
    const page1 = await client.tree('tree-1', { limit: 10 });
    expect(page1.root).toMatchObject({ run: { runId: root.runId }, level: 0, waitKind: 'child', openWaitCount: 25 });
    expect(page1.nodes).toHaveLength(10);
    expect(page1.nodes[0]).toMatchObject({ run: { runId: kid(0).runId, parentRunId: root.runId, depth: 1 }, level: 1, waitingFor: 'worker' });
    const all = [...page1.nodes];
    let cursor = page1.nextCursor;
    while (cursor) {
      const p = await client.tree(root.runId, { limit: 10, cursor });
      all.push(...p.nodes);
      cursor = p.nextCursor;
    }
    expect(all).toHaveLength(27);
    expect(new Set(all.map((n) => n.run.runId)).size).toBe(27);
    expect(all.slice(25).map((n) => [n.run.workflowId, n.level, n.run.parentRunId])).toEqual([
      ['tree-1/w3/g', 2, kid(3).runId],
      ['tree-1/w7/g', 2, kid(7).runId],
    ]);
    expect(all.find((n) => n.run.runId === kid(3).runId)).toMatchObject({ waitKind: 'signal', openWaits: [{ kind: 'signal', signal: 'go' }], waitingFor: null });
    expect((await client.tree(root.runId, { maxDepth: 1, limit: 1000 })).nodes).toHaveLength(25);
    expect((await client.tree(kid(7).runId)).nodes.map((n) => n.run.workflowId)).toEqual(['tree-1/w7/g']);
  });
});

describe('worker: log lines, heartbeat row, metrics', () => {
  it('logs runs started, closed, blocked, resumed and activity retries with the run ids; records its heartbeat; counts in its metrics', async () => {
    flakyCalls = 0;
    broken = true;
    const journal = new MemoryJournal();
    const { logger, lines } = capture();
    const worker = new Worker({ workflows: [parent, leaf, fragile], activities: [flaky], journal, logger, pollIntervalMs: 10, heartbeatIntervalMs: 20, workerId: 'w-log' });
    worker.start();
    const client = new Client(journal, { logger: pino({ level: 'silent' }) });
    try {
      expect(lines.find((l) => l.msg === 'worker started')).toMatchObject({
        workerId: 'w-log',
        journal: 'memory',
        queues: ['default'],
        workflows: ['parent', 'leaf', 'fragile'],
        activities: ['flaky'],
        heartbeatIntervalMs: 20,
      });
      const p = await client.start(parent, 1, { workflowId: 'p-1' });
      expect(await client.result(p, { timeoutMs: 5000 })).toBe(20);
      await until('the closed line', () => lines.find((l) => l.msg === 'run closed' && l.runId === p.runId));
      const leafRun = (await client.listChildren(p.runId))[0]!;
      const ids = (r: { runId: string; workflowId: string; workflow: string; parentRunId: string | null; rootRunId: string }) => ({
        runId: r.runId,
        workflowId: r.workflowId,
        workflow: r.workflow,
        parentRunId: r.parentRunId,
        rootRunId: r.rootRunId,
      });
      const parentIds = ids(await client.getRun(p.runId));
      const leafIds = ids(leafRun);
      const about = (runId: string) => lines.filter((l) => l.runId === runId).map((l) => l.msg);
      expect(about(p.runId)).toEqual(['run started', 'run closed']);
      expect(lines.find((l) => l.msg === 'run started' && l.runId === p.runId)).toMatchObject({ level: 30, ...parentIds });
      expect(lines.find((l) => l.msg === 'run closed' && l.runId === p.runId)).toMatchObject({ level: 30, ...parentIds, status: 'completed' });
      // the child's activity failed once: a warn line with the attempt and the error, then the child ran to its close
      expect(lines.find((l) => l.msg === 'activity retry')).toMatchObject({
        level: 40,
        ...leafIds,
        activity: 'flaky',
        attempt: 1,
        error: { name: 'Error', message: 'first attempt fails' },
        delayMs: 1,
      });
      expect(about(leafRun.runId).filter((m) => m !== 'activity retry')).toEqual(['run started', 'run closed']);
      expect(lines.find((l) => l.msg === 'run closed' && l.runId === leafRun.runId)).toMatchObject({ ...leafIds, status: 'completed' });

      // a bug blocks a run (error), an operator resumes it after the fix (info), it closes
      const f = await client.start(fragile, undefined, { workflowId: 'f-1' });
      await until('the run blocked', async () => (await client.getRun(f.runId)).status === 'blocked');
      const fIds = ids(await client.getRun(f.runId));
      await until('the blocked line', () => lines.find((l) => l.msg.startsWith('run blocked') && l.runId === f.runId));
      expect(lines.find((l) => l.msg.startsWith('run blocked') && l.runId === f.runId)).toMatchObject({ level: 50, ...fIds, err: { type: 'TypeError' } });
      broken = false;
      await client.resume('f-1', 'deployed the fix');
      expect(await client.result(f, { timeoutMs: 5000 })).toBe('fixed');
      expect(lines.find((l) => l.msg === 'run resumed')).toMatchObject({ level: 30, ...fIds, reason: 'deployed the fix' });
      // (the result is there as soon as the close commits; the line comes right after)
      await until('the closed line', () => lines.find((l) => l.msg === 'run closed' && l.runId === f.runId));
      expect(lines.filter((l) => l.runId === f.runId).map((l) => l.msg.split(':')[0])).toEqual(['run started', 'run blocked', 'run resumed', 'run closed']);
      expect(lines.find((l) => l.msg === 'run closed' && l.runId === f.runId)).toMatchObject({ status: 'completed' });

      // the heartbeat row
      const [me] = await client.listWorkers();
      expect(me).toMatchObject({ workerId: 'w-log', status: 'alive', pid: process.pid, workflows: ['parent', 'leaf', 'fragile'], activities: ['flaky'], heartbeatIntervalMs: 20 });

      // metrics: a registry of its own, in Prometheus text
      const families = new Map(parsePrometheusTextFormat(await worker.metrics.text()).map((fam) => [fam.name, fam]));
      const value = (name: string) => families.get(name)!.metrics.reduce((s, m) => s + Number(m.value), 0);
      expect(value('skein_activations_total')).toBeGreaterThan(0);
      expect(value('skein_commits_total')).toBeGreaterThan(0);
      expect(value('skein_activity_retries_total')).toBe(1);
      expect(value('skein_runs_blocked_total')).toBe(1);
      expect(value('skein_runs_resumed_total')).toBe(1);
      expect(value('skein_runs_started_total')).toBe(3);
    } finally {
      await worker.shutdown();
    }
    // a graceful shutdown marks the row stopped
    expect((await journal.listWorkers())[0]).toMatchObject({ workerId: 'w-log', status: 'gone', stoppedAt: expect.any(Number) });
  });

  it('logs a run claimed after its lease expired in another worker\'s hands as taken over, naming that worker', async () => {
    const clock = new ManualClock(Date.now());
    const journal = new MemoryJournal(clock);
    const client = new Client(journal, { logger: pino({ level: 'silent' }) });
    const ref = await client.start(leaf, 1, { workflowId: 'held' });
    await journal.acquire(ref.runId, 'dead-worker', 1000);
    clock.advance(1001);
    flakyCalls = 1; // no retry this time
    const { logger, lines } = capture();
    const worker = new Worker({ workflows: [leaf], activities: [flaky], journal, logger, pollIntervalMs: 10, workerId: 'w-new' });
    worker.start();
    try {
      const line = await until('the taken-over line', () => lines.find((l) => l.msg === 'run taken over'));
      expect(line).toMatchObject({ level: 30, workerId: 'w-new', runId: ref.runId, workflowId: 'held', workflow: 'leaf', parentRunId: null, rootRunId: ref.runId, previousOwner: 'dead-worker' });
      expect(await client.result(ref, { timeoutMs: 5000 })).toBe(2);
    } finally {
      await worker.shutdown();
    }
  });
});
