/**
 * Errors across the journal (issue 8, items 10 and 11): skein's classes come back as themselves (instanceof, fields,
 * message, original stack), foreign errors keep name, message and stack, older journals still revive; every error a
 * user can catch is an exported class; one payload limit. End to end on the memory journal and on PostgreSQL.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import * as skein from '../../src/index.js';
import {
  activity,
  ActivityFailedError,
  ApplicationError,
  CancelledError,
  ChildCancelledError,
  ChildFailedError,
  ChildTerminatedError,
  Client,
  defineActivity,
  deserializeError,
  errorClasses,
  InvalidArgumentError,
  MAX_PAYLOAD_CHARS,
  MemoryJournal,
  PayloadError,
  RemoteError,
  ResultTimeoutError,
  RunTimeoutError,
  serializeError,
  SkeinError,
  sleep,
  startChild,
  TerminatedError,
  waitForSignal,
  Worker,
  workflow,
  WorkflowFailedError,
  type Journal,
  type SerializedError,
} from '../../src/index.js';
import { toJson } from '../../src/runtime/json.js';
import { freshPgJournal } from '../support/postgres.js';

const silent = pino({ level: 'silent' });

/** Through the journal as the PostgreSQL journal stores it: JSON text. */
const viaJson = (e: unknown): Error => deserializeError(JSON.parse(JSON.stringify(serializeError(e))) as SerializedError);

/** An error's own data fields (what a user reads besides name and message). */
const fieldsOf = (e: Error) => Object.fromEntries(Object.entries(e).filter(([k]) => k !== 'name'));

describe('errors: serialize and revive', () => {
  it("revives each of skein's classes as the same class with the same name, message, fields and stack", () => {
    const cause: SerializedError = { name: 'ApplicationError', message: 'card declined', details: { amount: 500 }, nonRetryable: true };
    const ref = { workflow: 'pay', callId: 'c_1', childRunId: 'r_2', childWorkflowId: 'root/pay' };
    const samples: Error[] = [
      new ApplicationError('card declined', { details: { amount: 500, currency: 'EUR' }, nonRetryable: true }),
      new ActivityFailedError('charge', '3', 2, cause),
      new ChildFailedError(ref, cause),
      new ChildCancelledError(ref, serializeError(new CancelledError('operator'))),
      new CancelledError('operator'),
      new TerminatedError('operator'),
      new RunTimeoutError('r_1', 1234),
      new PayloadError('input of workflow x', 'too big'),
      new ResultTimeoutError('r_1', 50),
      new WorkflowFailedError('r_1', 'failed', cause),
      new InvalidArgumentError('workflowId', 'empty'),
    ];
    for (const original of samples) {
      const back = viaJson(original);
      expect(back.constructor, original.name).toBe(original.constructor);
      expect(back).toBeInstanceOf(original.constructor as new () => Error);
      expect(back.name).toBe(original.name);
      expect(back.message).toBe(original.message);
      expect(back.stack).toBe(original.stack);
      expect(fieldsOf(back)).toEqual(fieldsOf(original));
    }
  });

  it('keeps the cause chain as classes: ActivityFailedError -> ApplicationError with details and nonRetryable', () => {
    const back = viaJson(new ActivityFailedError('charge', '3', 2, serializeError(new ApplicationError('card declined', { details: { amount: 500 }, nonRetryable: true }))));
    expect(back).toBeInstanceOf(ActivityFailedError);
    expect(back).toMatchObject({ activity: 'charge', callPath: '3', attempts: 2 });
    expect(back.cause).toBeInstanceOf(ApplicationError);
    expect(back.cause).toMatchObject({ message: 'card declined', details: { amount: 500 }, nonRetryable: true });
    const cancelled = viaJson(new ChildCancelledError({ workflow: 'w', callId: 'c', childRunId: 'r', childWorkflowId: 'x/w' }, serializeError(new CancelledError('stop'))));
    expect(cancelled).toBeInstanceOf(ChildCancelledError);
    expect(cancelled.cause).toBeInstanceOf(CancelledError);
    expect((cancelled.cause as CancelledError).reason).toBe('stop');
  });

  it("keeps a custom name or a user's subclass as its nearest skein class, with the user's name and fields", () => {
    class CardDeclined extends ApplicationError {
      constructor(readonly last4: string) {
        super('card declined', { details: { last4 } });
      }
    }
    const sub = viaJson(new CardDeclined('4242'));
    expect(sub).toBeInstanceOf(ApplicationError);
    expect(sub).toMatchObject({ name: 'CardDeclined', message: 'card declined', last4: '4242', details: { last4: '4242' } });
    const named = viaJson(new ApplicationError('no stock', { name: 'OutOfStock' }));
    expect(named).toBeInstanceOf(ApplicationError);
    expect(named.name).toBe('OutOfStock');
  });

  it('keeps name, message and stack of foreign errors (a TypeError, a user class)', () => {
    class LedgerError extends Error {
      override name = 'LedgerError';
    }
    for (const original of [new TypeError('x is not a function'), new LedgerError('ledger closed')]) {
      const back = viaJson(original);
      expect(back).toBeInstanceOf(RemoteError);
      expect(back.name).toBe(original.name);
      expect(back.message).toBe(original.message);
      expect(back.stack).toBe(original.stack);
    }
  });

  it('revives journals written before stacks and fields (and the journals’ own cancel/terminate errors)', () => {
    const cancelled = deserializeError({ name: 'CancelledError', message: 'parent_cancelled' });
    expect(cancelled).toBeInstanceOf(CancelledError);
    expect(cancelled).toMatchObject({ message: 'parent_cancelled', reason: 'parent_cancelled' });
    expect(cancelled.stack).toMatch(/^CancelledError: parent_cancelled\n/);
    const terminated = deserializeError({ name: 'TerminatedError', message: 'operator' });
    expect(terminated).toBeInstanceOf(TerminatedError);
    expect((terminated as TerminatedError).reason).toBe('operator');
    const old = deserializeError({ name: 'ActivityFailedError', message: "activity 'x' failed", cause: { name: 'Error', message: 'boom', details: { a: 1 } } });
    expect(old).toBeInstanceOf(ActivityFailedError);
    expect(old.cause).toBeInstanceOf(RemoteError);
    expect(old.cause).toMatchObject({ name: 'Error', message: 'boom', details: { a: 1 } });
    expect(deserializeError({ name: 'Whatever', message: 'm' })).toBeInstanceOf(RemoteError);
  });

  it('never lets journaled fields change what a revived error is', () => {
    const hostile = JSON.parse('{"name":"CancelledError","message":"m","fields":{"__proto__":{"polluted":true},"reason":"r"}}') as SerializedError;
    const err = deserializeError(hostile);
    expect(err).toBeInstanceOf(CancelledError);
    expect(err).toMatchObject({ reason: 'r' });
    expect((err as unknown as { polluted?: boolean }).polluted).toBeUndefined();
  });

  it('exports every error class a user can catch, each in the one revival table', () => {
    for (const name of ['TerminatedError', 'ResultTimeoutError', 'InvalidArgumentError', 'CancelledError', 'WorkflowFailedError', 'ChildTerminatedError']) {
      const cls = (skein as Record<string, unknown>)[name] as (new (...a: never[]) => Error) | undefined;
      expect(typeof cls, name).toBe('function');
      expect(cls!.prototype).toBeInstanceOf(SkeinError);
      expect(errorClasses().get(name)).toBe(cls);
    }
    // the table is exactly the exported skein classes (RemoteError stands for foreign ones)
    const exported = Object.entries(skein).filter(([, v]) => typeof v === 'function' && (v === SkeinError || v.prototype instanceof SkeinError) && v !== RemoteError);
    expect(new Map(exported)).toEqual(new Map(errorClasses()));
  });
});

describe('payload limit and client arguments', () => {
  it('has one payload limit, exported, and the docs state the same number', () => {
    expect(MAX_PAYLOAD_CHARS).toBe(2_097_152);
    const docs = readFileSync(new URL('../../docs/semantics.md', import.meta.url), 'utf8');
    expect(docs).toContain(`at most ${MAX_PAYLOAD_CHARS.toLocaleString('en-US')} characters of JSON`);
    expect(docs).not.toContain('2,000,000');
    expect(() => toJson('x'.repeat(MAX_PAYLOAD_CHARS - 2), 'input')).not.toThrow();
    expect(() => toJson('x'.repeat(MAX_PAYLOAD_CHARS - 1), 'input')).toThrow(PayloadError);
  });

  it('refuses an empty or non-string workflowId with InvalidArgumentError, writing nothing', async () => {
    const journal = new MemoryJournal();
    const client = new Client(journal, { logger: silent });
    const wf = workflow('errNoop', function* (_: null) {
      return 1;
    });
    await expect(client.start(wf, null, { workflowId: '' })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(client.start(wf, null, { workflowId: 42 as unknown as string })).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'workflowId' });
    expect(journal.allRuns()).toHaveLength(0);
  });

  it('client.result times out with ResultTimeoutError carrying runId and timeoutMs', async () => {
    const client = new Client(new MemoryJournal(), { logger: silent });
    const ref = await client.start('nobodyRunsThis', null, { workflowId: 'wait-forever' });
    const err = await client.result(ref, { timeoutMs: 30 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResultTimeoutError);
    expect(err).toMatchObject({ runId: ref.runId, timeoutMs: 30 });
  });
});

// ---- end to end, on both journals ------------------------------------------------------------------------------

let lastDecline: Error | undefined;
function declineTheCard(amount: number): never {
  lastDecline = new ApplicationError('card declined', { details: { amount }, nonRetryable: true });
  throw lastDecline;
}
const charge = defineActivity('errCharge', async (amount: number) => declineTheCard(amount));

function parseTheOrder(raw: string): never {
  throw new TypeError(`cannot parse order ${raw}`);
}

const kid = workflow('errKid', function* (_: null) {
  return yield* waitForSignal<string>('go');
});

/** Catches its child's failure and reports what it saw, after a sleep (so, with no cache, from a replay). */
const catcher = workflow('errCatcher', function* (_: null) {
  const h = yield* startChild(kid, null, { id: 'kid' });
  let seen: Record<string, unknown> = { caught: false };
  try {
    yield* h.result();
  } catch (e) {
    const err = e as Error & { childRunId?: string };
    const cause = err.cause as (Error & { reason?: string }) | undefined;
    seen = {
      caught: true,
      errorClass: err.constructor.name,
      childCancelled: err instanceof ChildCancelledError,
      childTerminated: err instanceof ChildTerminatedError,
      childRunId: err.childRunId,
      causeClass: cause?.constructor.name,
      causeCancelled: cause instanceof CancelledError,
      causeTerminated: cause instanceof TerminatedError,
      reason: cause?.reason,
    };
  }
  yield* sleep(1);
  return seen;
});

const activityCatcher = workflow('errActivityCatcher', function* (amount: number) {
  let seen: Record<string, unknown> = { caught: false };
  try {
    yield* activity(charge, amount);
  } catch (e) {
    const err = e as ActivityFailedError;
    const cause = err.cause as ApplicationError;
    seen = {
      caught: true,
      activityFailed: err instanceof ActivityFailedError,
      activity: err.activity,
      attempts: err.attempts,
      causeIsApplicationError: cause instanceof ApplicationError,
      details: cause.details,
      nonRetryable: cause.nonRetryable,
      message: cause.message,
      stackNamesThrower: cause.stack?.includes('declineTheCard') ?? false,
    };
  }
  yield* sleep(1);
  return seen;
});

const failsInActivity = workflow('errFailsInActivity', function* (amount: number) {
  return yield* activity(charge, amount);
});

const failsInCode = workflow('errFailsInCode', function* (raw: string) {
  yield* sleep(1);
  return parseTheOrder(raw);
});

type MakeJournal = () => Promise<{ journal: Journal; cleanup: () => Promise<void> }>;
const journals: [string, MakeJournal][] = [
  ['memory', async () => ({ journal: new MemoryJournal(), cleanup: async () => {} })],
  ['postgres', () => freshPgJournal({ maxConnections: 4 })],
];

describe.each(journals)('errors end to end: %s journal', (_name, makeJournal) => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });

  /** A worker that keeps no engines: every activation rebuilds the run from the journal (errors revived from it). */
  async function setup() {
    const { journal, cleanup } = await makeJournal();
    const worker = new Worker({
      workflows: [kid, catcher, activityCatcher, failsInActivity, failsInCode],
      activities: [charge],
      journal,
      logger: silent,
      pollIntervalMs: 10,
      shutdownGraceMs: 100,
      cacheCapacity: 0,
    });
    worker.start();
    cleanups.push(cleanup, () => worker.shutdown());
    return { client: new Client(journal, { logger: silent }) };
  }

  async function childOf(client: Client, runId: string): Promise<string> {
    const end = Date.now() + 10_000;
    for (;;) {
      const [c] = await client.listChildren(runId);
      if (c && c.status === 'running') return c.runId;
      if (Date.now() > end) throw new Error('the child did not start');
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  it('a parent catches ChildCancelledError whose cause is a CancelledError with the reason', async () => {
    const { client } = await setup();
    const ref = await client.start(catcher, null, { workflowId: 'cancel-kid' });
    const kidRunId = await childOf(client, ref.runId);
    await client.cancel(kidRunId, 'operator said stop', { graceMs: 5000 });
    expect(await client.result(ref, { timeoutMs: 10_000 })).toEqual({
      caught: true,
      errorClass: 'ChildCancelledError',
      childCancelled: true,
      childTerminated: false,
      childRunId: kidRunId,
      causeClass: 'CancelledError',
      causeCancelled: true,
      causeTerminated: false,
      reason: 'operator said stop',
    });
  });

  it('a parent catches ChildTerminatedError whose cause is a TerminatedError', async () => {
    const { client } = await setup();
    const ref = await client.start(catcher, null, { workflowId: 'terminate-kid' });
    const kidRunId = await childOf(client, ref.runId);
    await client.terminate(kidRunId, 'operator');
    expect(await client.result(ref, { timeoutMs: 10_000 })).toMatchObject({
      errorClass: 'ChildTerminatedError',
      childTerminated: true,
      causeClass: 'TerminatedError',
      causeTerminated: true,
      reason: 'operator',
    });
  });

  it('an activity failing with ApplicationError is an ActivityFailedError whose cause is that ApplicationError', async () => {
    const { client } = await setup();
    const ref = await client.start(activityCatcher, 500, { workflowId: 'activity-fails' });
    expect(await client.result(ref, { timeoutMs: 10_000 })).toEqual({
      caught: true,
      activityFailed: true,
      activity: 'errCharge',
      attempts: 1,
      causeIsApplicationError: true,
      details: { amount: 500 },
      nonRetryable: true,
      message: 'card declined',
      stackNamesThrower: true,
    });
  });

  it('client.result of a failed run throws WorkflowFailedError whose causes are the revived classes, original stack kept', async () => {
    const { client } = await setup();
    const ref = await client.start(failsInActivity, 700, { workflowId: 'run-fails' });
    const err = await client.result(ref, { timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(err).toMatchObject({ runId: ref.runId, status: 'failed' });
    const activityErr = (err as Error).cause;
    expect(activityErr).toBeInstanceOf(ActivityFailedError);
    expect(activityErr).toMatchObject({ activity: 'errCharge', callPath: '0', attempts: 1 });
    const appErr = (activityErr as Error).cause as ApplicationError;
    expect(appErr).toBeInstanceOf(ApplicationError);
    expect(appErr).toMatchObject({ message: 'card declined', details: { amount: 700 }, nonRetryable: true });
    expect(appErr.stack).toContain('declineTheCard');
    expect(appErr.stack).toBe(lastDecline!.stack);

    const typeRef = await client.start(failsInCode, 'o-1', { workflowId: 'code-fails' });
    const typeErr = await client.result(typeRef, { timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(typeErr).toBeInstanceOf(WorkflowFailedError);
    const cause = (typeErr as Error).cause as Error;
    expect(cause).toBeInstanceOf(RemoteError);
    expect(cause).toMatchObject({ name: 'TypeError', message: 'cannot parse order o-1' });
    expect(cause.stack).toMatch(/^TypeError: cannot parse order o-1\n/);
    expect(cause.stack).toContain('parseTheOrder');
  });

  it('client.result of a terminated run: the cause is a TerminatedError', async () => {
    const { client } = await setup();
    const ref = await client.start(kid, null, { workflowId: 'terminated-root' });
    await childOrRunning(client, ref.runId);
    await client.terminate(ref.runId, 'operator');
    const err = await client.result(ref, { timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as Error).cause).toBeInstanceOf(TerminatedError);
    expect((err as Error).cause).toMatchObject({ reason: 'operator' });
  });
});

async function childOrRunning(client: Client, runId: string): Promise<void> {
  const end = Date.now() + 10_000;
  while ((await client.getRun(runId)).lastSeq < 2) {
    if (Date.now() > end) throw new Error('the run did not start');
    await new Promise((r) => setTimeout(r, 5));
  }
}
