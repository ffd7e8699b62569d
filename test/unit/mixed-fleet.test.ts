import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { activity, child, defineActivity, workflow } from '../../src/runtime/commands.js';
import { ApplicationError, UnknownWorkflowError } from '../../src/runtime/errors.js';
import { MemoryJournal } from '../../src/journal/memory.js';
import { Worker } from '../../src/worker/worker.js';
import { Client } from '../../src/client/client.js';
import { unavailableActivityBackoffMs } from '../../src/runtime/activities.js';

/**
 * SPEC section 12 in one process, on the memory journal: workers that register different workflows and activities
 * (a fleet mid-deploy). The real-process version is test/integration/mixed-fleet.test.ts.
 */

const executed: string[] = [];
const bookHotel = defineActivity('bookHotel', async (id: string) => {
  executed.push(`bookHotel ${id}`);
  return `hotel-${id}`;
});
const chargeCard = defineActivity('chargeCard', async (_id: string): Promise<string> => {
  throw new ApplicationError('card declined', { nonRetryable: true });
});
const cancelHotel = defineActivity('cancelHotel', async (booking: string) => {
  executed.push(`cancelHotel ${booking}`);
  return `cancelled ${booking}`;
});
/** Books, fails to charge, compensates: the compensation needs cancelHotel. */
const saga = workflow('saga', function* (id: string) {
  const booking = yield* activity(bookHotel, id);
  try {
    yield* activity(chargeCard, id);
    return { booked: booking };
  } catch {
    return { compensated: yield* activity(cancelHotel, booking) };
  }
});
const hotel = workflow('hotel', function* (id: string) {
  return yield* activity(bookHotel, id);
});
const trip = workflow('trip', function* (id: string) {
  return { hotel: yield* child(hotel, id, { id: 'hotel' }) };
});

/** A logger that keeps every line, so a test can say what a worker logged. */
function capture(): { logger: pino.Logger; lines: Array<{ level: number; msg: string }> } {
  const lines: Array<{ level: number; msg: string }> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('mixed fleet (memory journal)', () => {
  const workers: Worker[] = [];
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.shutdown()));
    executed.length = 0;
  });
  const spawn = (id: string, opts: Partial<ConstructorParameters<typeof Worker>[0]> & Pick<ConstructorParameters<typeof Worker>[0], 'workflows' | 'journal'>) => {
    const log = capture();
    const w = new Worker({ workerId: id, logger: log.logger, pollIntervalMs: 20, ...opts });
    workers.push(w);
    w.start();
    return { worker: w, lines: log.lines };
  };

  it('a Client given the workflows rejects an unknown name with UnknownWorkflowError and writes nothing; one without accepts it', async () => {
    const journal = new MemoryJournal();
    const strict = new Client(journal, { workflows: [saga, trip], logger: pino({ level: 'silent' }) });
    await expect(strict.start('no-such-workflow', {}, { workflowId: 'x' })).rejects.toBeInstanceOf(UnknownWorkflowError);
    await expect(strict.start(hotel, 'h', { workflowId: 'y' })).rejects.toThrow(/unknown workflow 'hotel'/);
    expect(journal.allRuns()).toEqual([]);
    expect((await strict.start(saga, 's', { workflowId: 'z' })).created).toBe(true);
    expect((await strict.start('trip', 't', { workflowId: 't' })).created).toBe(true);
    const lax = new Client(journal, { logger: pino({ level: 'silent' }) });
    expect((await lax.start('no-such-workflow', {}, { workflowId: 'x' })).created).toBe(true);
  });

  it('a worker never claims a run of a workflow it lacks: the run waits, due, until a worker that has it starts', async () => {
    const journal = new MemoryJournal();
    const client = new Client(journal, { logger: pino({ level: 'silent' }) });
    const a = spawn('A', { workflows: [saga], activities: [bookHotel, chargeCard, cancelHotel], journal });
    const ref = await client.start(hotel, 'h1', { workflowId: 'h1' });
    await sleep(200);
    expect(await journal.getRun(ref.runId)).toMatchObject({ status: 'running', leaseOwner: null, lastSeq: 1 });
    const b = spawn('B', { workflows: [hotel], activities: [bookHotel], journal });
    expect(await client.result(ref, { timeoutMs: 5000 })).toBe('hotel-h1');
    expect(a.worker.health().activationsEnded).toMatchObject({ failed: 0, closed: 0, suspended: 0 });
    expect(a.lines.filter((l) => l.level >= 40)).toEqual([]);
    expect(b.lines.filter((l) => l.level >= 40)).toEqual([]);
  });

  it('a child whose workflow the worker lacks is neither run inline nor kept: the worker that has it runs it, the parent goes on', async () => {
    const journal = new MemoryJournal();
    const client = new Client(journal, { logger: pino({ level: 'silent' }) });
    const a = spawn('A', { workflows: [trip], activities: [bookHotel], journal });
    const ref = await client.start(trip, 't1', { workflowId: 't1' });
    await sleep(200);
    const [kid] = await client.listChildren(ref.runId);
    expect(kid).toMatchObject({ workflow: 'hotel', status: 'running', leaseOwner: null, lastSeq: 1 });
    expect(await journal.getRun(ref.runId)).toMatchObject({ status: 'running', leaseOwner: null });
    spawn('B', { workflows: [hotel], activities: [bookHotel], journal });
    expect(await client.result(ref, { timeoutMs: 5000 })).toEqual({ hotel: 'hotel-t1' });
    expect(a.lines.filter((l) => l.level >= 40)).toEqual([]);
    expect(a.worker.health().activationsEnded.failed).toBe(0);
  });

  it('a missing activity stalls the run (no ActivityFailed), recorded on its row; a worker that has it finishes the run', async () => {
    const journal = new MemoryJournal();
    const client = new Client(journal, { logger: pino({ level: 'silent' }) });
    const a = spawn('A', { workflows: [saga], activities: [bookHotel, chargeCard], journal });
    const ref = await client.start(saga, 's1', { workflowId: 's1' });
    for (let i = 0; i < 100 && !(await journal.getRun(ref.runId))!.stall; i++) await sleep(20);
    const stalled = (await journal.getRun(ref.runId))!;
    expect(stalled).toMatchObject({
      status: 'running',
      leaseOwner: null,
      stall: { reason: 'activity_unavailable', activity: 'cancelHotel', workerId: 'A', attempts: 1 },
    });
    expect(stalled.nextWakeupAt).toBe(stalled.stall!.nextAttemptAt);
    expect(stalled.stall!.nextAttemptAt - stalled.stall!.since).toBeGreaterThanOrEqual(800);
    const types = (await journal.readEvents(ref.runId)).map((e) => e.type);
    expect(types.filter((t) => t === 'ActivityFailed')).toHaveLength(1); // chargeCard's, not cancelHotel's
    expect(a.lines.filter((l) => l.level >= 50)).toEqual([]);
    expect(a.lines.filter((l) => l.level === 40).map((l) => l.msg)).toEqual([expect.stringMatching(/activity not registered in this worker/)]);

    spawn('B', { workflows: [saga], activities: [bookHotel, chargeCard, cancelHotel], journal });
    expect(await client.result(ref, { timeoutMs: 10_000 })).toEqual({ compensated: 'cancelled hotel-s1' });
    expect(executed.filter((e) => e.startsWith('cancelHotel'))).toEqual(['cancelHotel hotel-s1']);
    expect((await journal.getRun(ref.runId))!.stall).toBeNull();
  });

  it('the backoff of a stalled run: 1 s doubling to 60 s, within 20% either way', () => {
    expect([1, 2, 3, 7, 8, 30].map((n) => unavailableActivityBackoffMs(n, () => 0.5))).toEqual([1000, 2000, 4000, 60_000, 60_000, 60_000]);
    expect(unavailableActivityBackoffMs(1, () => 0)).toBe(800);
    expect(unavailableActivityBackoffMs(7, () => 0.999999)).toBe(72_000);
  });
});
