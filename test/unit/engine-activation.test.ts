/**
 * The replay engine tested as a function: deliveries in, events out. No journal, no host, no clock but the numbers
 * passed in. Tiny builders make the journal events and deliveries; each test states what the code decides when it
 * sees them (as the activators of the best SDKs are tested: synthetic activations in, commands out).
 */
import { describe, expect, it } from 'vitest';
import { activity, all, deprecatePatch, patched, sleep, waitForSignal, workflow, type WorkflowDef } from '../../src/runtime/commands.js';
import { describeEvent, RunEngine, type ActivationOutput } from '../../src/runtime/engine.js';
import { ActivityFailedError, CorruptJournalError, NonDeterminismError } from '../../src/runtime/errors.js';
import { EVENT_FAMILY, type EventType, type JournalEvent, type NewEvent } from '../../src/runtime/events.js';

// ---------------------------------------------------------------------------------------------------------------
// builders

const RUN = { runId: 'r_test', workflowId: 'test-1', depth: 0, queue: 'default' };
const T0 = 1_000;

/** A journal from events (seq and time filled in), RunStarted first. */
function journal(workflowName: string, input: unknown, ...events: NewEvent[]): JournalEvent[] {
  const all: NewEvent[] = [{ type: 'RunStarted', payload: { workflow: workflowName, workflowId: RUN.workflowId, input, depth: 0 } }, ...events];
  return all.map((e, i) => ({ ...e, seq: i + 1, recordedAt: T0 + i }) as JournalEvent);
}

/** An engine that has replayed `events` (nothing but RunStarted: a new run, its first step left in its output). */
function engine(wf: WorkflowDef, input: unknown, ...events: NewEvent[]): RunEngine {
  const e = new RunEngine(wf, RUN);
  e.replay(journal(wf.name, input, ...events), T0 + events.length + 1);
  return e;
}

const scheduled = (path: string, name: string, input: unknown, inputHash: string): NewEvent => ({ type: 'ActivityScheduled', payload: { path, name, inputHash, input } });
const done = (path: string, result: unknown, at = T0 + 50): NewEvent => ({ type: 'ActivityCompleted', payload: { path, result, closedAt: at, attempts: 1 } });
const failed = (path: string, message: string, at = T0 + 50): NewEvent => ({
  type: 'ActivityFailed',
  payload: { path, error: { name: 'ApplicationError', message }, closedAt: at, attempts: 3 },
});
const fired = (path: string, at: number): NewEvent => ({ type: 'TimerFired', payload: { path, closedAt: at } });
const signal = (name: string, payload: unknown, id = `s-${name}`, at = T0 + 60): NewEvent => ({ type: 'SignalReceived', payload: { signalId: id, name, payload, closedAt: at } });
const marker = (patchId: string): NewEvent => ({ type: 'PatchMarker', payload: { patchId } });

/** What an activation decided, as `type(detail)` strings: the shape tests compare. */
function decided(out: ActivationOutput): string[] {
  return out.events.map((e) => {
    const p = e.payload as Record<string, unknown>;
    if (e.type === 'ActivityScheduled') return `ActivityScheduled(${p.path} ${p.name} ${JSON.stringify(p.input)})`;
    if (e.type === 'RunCompleted') return `RunCompleted(${JSON.stringify(p.result)})`;
    if (e.type === 'PatchMarker') return `PatchMarker(${p.patchId}${p.deprecated ? ' deprecated' : ''})`;
    if ('path' in p) return `${e.type}(${p.path})`;
    return e.type;
  });
}

/** The input hash the engine journals for a value (read from a first, live step). */
function hashOf(wf: WorkflowDef, input: unknown): string {
  const out = engine(wf, input).takeOutput();
  const s = out.events.find((e) => e.type === 'ActivityScheduled');
  if (s?.type !== 'ActivityScheduled') throw new Error('no activity scheduled');
  return s.payload.inputHash;
}

// ---------------------------------------------------------------------------------------------------------------
// workflows

const double = workflow('double', function* (n: number) {
  const a = yield* activity<number>('twice', n);
  const b = yield* activity<number>('twice', a);
  return b;
});

const approval = workflow('approval', function* () {
  yield* sleep(100);
  const who = yield* waitForSignal<string>('approve');
  return `approved by ${who}`;
});

describe('the engine as a function: deliveries in, events out', () => {
  it('a new run decides its first command; an activity result makes it decide the next, then close', () => {
    const e = engine(double, 3);
    expect(decided(e.takeOutput())).toEqual(['ActivityScheduled(0 twice 3)']);
    expect(decided(e.activate([done('0', 6)], T0 + 100))).toEqual(['ActivityCompleted(0)', 'ActivityScheduled(1 twice 6)']);
    const last = e.activate([done('1', 12)], T0 + 200);
    expect(decided(last)).toEqual(['ActivityCompleted(1)', 'RunCompleted(12)']);
    expect(last.close).toEqual({ status: 'completed', result: 12 });
  });

  it('a delivery it already applied is not news: a second one is dropped, nothing is decided', () => {
    const h = hashOf(double, 3);
    const e = engine(double, 3, scheduled('0', 'twice', 3, h));
    expect(decided(e.activate([done('0', 6)], T0 + 10))).toEqual(['ActivityCompleted(0)', 'ActivityScheduled(1 twice 6)']);
    expect(e.activate([done('0', 7)], T0 + 20).events).toEqual([]);
  });

  it('a failed activity is thrown into the code as ActivityFailedError; uncaught, it fails the run', () => {
    const e = engine(double, 3);
    e.takeOutput();
    const out = e.activate([failed('0', 'card declined')], T0 + 10);
    expect(decided(out)).toEqual(['ActivityFailed(0)', 'RunFailed']);
    expect(out.close?.status).toBe('failed');
    expect(out.close?.status === 'failed' && out.close.error.name).toBe(ActivityFailedError.name);
  });

  it('a timer fires, a buffered signal is taken by the wait that comes after it', () => {
    const e = engine(approval, null);
    expect(decided(e.takeOutput())).toEqual(['TimerStarted(0)']);
    // The signal arrives before the timer: buffered (journaled, no wait yet); then the timer fires and the wait takes it.
    const out = e.activate([fired('0', T0 + 100), signal('approve', 'ada', 's1', T0 + 50)], T0 + 200);
    expect(decided(out)).toEqual(['SignalReceived', 'TimerFired(0)', 'SignalWaitStarted(1)', 'RunCompleted("approved by ada")']);
    expect(out.close).toEqual({ status: 'completed', result: 'approved by ada' });
    expect(e.hasSignal('s1')).toBe(true);
  });

  it('a decision the code does not issue is a NonDeterminismError naming the seq and both commands', () => {
    const e = new RunEngine(double, RUN);
    expect(() => e.replay(journal('double', 3, scheduled('0', 'thrice', 3, 'xx')), T0)).toThrowError(NonDeterminismError);
    try {
      new RunEngine(double, RUN).replay(journal('double', 3, scheduled('0', 'thrice', 3, 'xx')), T0);
    } catch (err) {
      expect((err as NonDeterminismError).message).toMatch(/seq 2 recorded ActivityScheduled\(path 0, activity 'thrice', input hash xx\), but the code now issued ActivityScheduled\(path 0, activity 'twice'/);
    }
  });

  it('a delivery for a path that scheduled nothing is a corrupt journal', () => {
    const h = hashOf(double, 3);
    expect(() => new RunEngine(double, RUN).replay(journal('double', 3, scheduled('0', 'twice', 3, h), done('7', 1)), T0)).toThrowError(CorruptJournalError);
  });

  it('every event type has a family and a description (the tables are exhaustive)', () => {
    const types = Object.keys(EVENT_FAMILY) as EventType[];
    expect(types).toContain('PatchMarker');
    expect(EVENT_FAMILY.PatchMarker).toBe('decision');
    expect(describeEvent({ type: 'SignalWaitStarted', payload: { path: '3', name: 'approve', deadline: null } })).toBe("SignalWaitStarted(path 3, signal 'approve')");
    expect(describeEvent(marker('fee-v2'))).toBe("PatchMarker('fee-v2')");
  });
});

// ---------------------------------------------------------------------------------------------------------------
// patched() / deprecatePatch()

/** v1: one fee activity. */
const feeV1 = workflow('fee', function* (amount: number) {
  const fee = yield* activity<number>('flatFee', amount);
  return yield* activity<string>('charge', amount + fee);
});
/** v2: new runs take a percentage fee; runs that passed here under v1 keep the flat fee. */
const feeV2 = workflow('fee', function* (amount: number) {
  const fee = (yield* patched('percent-fee')) ? yield* activity<number>('percentFee', amount) : yield* activity<number>('flatFee', amount);
  return yield* activity<string>('charge', amount + fee);
});
/** v3: every run with the old branch has closed; the marker stays readable. */
const feeV3 = workflow('fee', function* (amount: number) {
  yield* deprecatePatch('percent-fee');
  const fee = yield* activity<number>('percentFee', amount);
  return yield* activity<string>('charge', amount + fee);
});

describe('patched(id) as a journaled marker', () => {
  it('a new run journals the marker and takes the new branch; the marker takes no call path', () => {
    const out = engine(feeV2, 10).takeOutput();
    expect(decided(out)).toEqual(['PatchMarker(percent-fee)', 'ActivityScheduled(0 percentFee 10)']);
  });

  it('a run that passed the patch point under v1 keeps the old branch on replay, and goes on with it', () => {
    const h = hashOf(feeV1, 10);
    // v1's journal: flatFee scheduled at path 0 and completed; v2 replays it without a marker.
    const e = engine(feeV2, 10, scheduled('0', 'flatFee', 10, h), done('0', 1));
    expect(decided(e.takeOutput())).toEqual(['ActivityScheduled(1 charge 11)']);
  });

  it('a run of v1 that never reached the patch point takes the new branch when it gets there live', () => {
    const e = engine(feeV2, 10);
    expect(decided(e.takeOutput())[0]).toBe('PatchMarker(percent-fee)');
  });

  it('a journal with the marker replays with the new branch; patched() in a loop keeps its first answer', () => {
    const h = hashOf(feeV2, 10);
    const e = engine(feeV2, 10, marker('percent-fee'), scheduled('0', 'percentFee', 10, h));
    expect(e.takeOutput().events).toEqual([]);
    const looping = workflow('loop', function* () {
      const seen: boolean[] = [];
      for (let i = 0; i < 3; i++) seen.push(yield* patched('p'));
      return seen;
    });
    const out = engine(looping, null).takeOutput();
    expect(decided(out)).toEqual(['PatchMarker(p)', 'RunCompleted([true,true,true])']);
  });

  it('code without the patch meets a journal with the marker as non-determinism naming the marker', () => {
    const h = hashOf(feeV2, 10);
    expect(() => new RunEngine(feeV1, RUN).replay(journal('fee', 10, marker('percent-fee'), scheduled('0', 'percentFee', 10, h)), T0)).toThrowError(
      /recorded PatchMarker\('percent-fee'\), but the code now issued ActivityScheduled\(path 0, activity 'flatFee'/,
    );
  });

  it('deprecatePatch(id) takes the marker of a patched journal, and records one (deprecated) live', () => {
    const h = hashOf(feeV2, 10);
    const e = engine(feeV3, 10, marker('percent-fee'), scheduled('0', 'percentFee', 10, h), done('0', 0.5));
    expect(decided(e.takeOutput())).toEqual(['ActivityScheduled(1 charge 10.5)']);
    expect(decided(engine(feeV3, 10).takeOutput())).toEqual(['PatchMarker(percent-fee deprecated)', 'ActivityScheduled(0 percentFee 10)']);
    // A rollback from v3 to v2 still replays v3's journals: the deprecated marker is the patch's marker.
    const v3 = engine(feeV3, 10).events.slice(1).map(({ type, payload }) => ({ type, payload }) as NewEvent);
    expect(() => engine(feeV2, 10, ...v3)).not.toThrow();
  });

  it('patched() inside all() is refused at that yield (a TypeError into the code), not journaled', () => {
    const bad = workflow('bad', function* () {
      try {
        yield* all([patched('x'), activity('a', 1)]);
        return 'no';
      } catch (e) {
        return (e as Error).name;
      }
    });
    const out = engine(bad, null).takeOutput();
    expect(out.events.some((e) => e.type === 'PatchMarker')).toBe(false);
    expect(out.close).toEqual({ status: 'completed', result: 'TypeError' });
  });
});
