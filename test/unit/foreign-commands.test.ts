import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Client, MemoryJournal, Worker, activity, defineActivity, sleep, workflow } from '../../src/index.js';
import { ActivityCommand, Command, SleepCommand } from '../../src/runtime/commands.js';

/**
 * A workflow module that imports another copy of skein (a second install in a monorepo, sources beside a build)
 * yields commands made by that copy's classes. The engine recognises commands by a registered symbol and their
 * kind, so such a workflow runs instead of being blocked for "yielding something that is not a command".
 */
describe('commands from another copy of skein', () => {
  /** What another copy's `sleep(ms)` and `activity(def, input)` produce: same shape, different classes. */
  function foreign<T>(fields: Record<string, unknown>): Command<T> {
    const cmd = {
      [Symbol.for('skein.command')]: true,
      ...fields,
      *[Symbol.iterator]() {
        return (yield cmd) as T;
      },
    };
    return cmd as unknown as Command<T>;
  }

  it('instanceof follows the kind, whichever copy made the command', () => {
    const s = foreign({ kind: 'sleep', ms: 5 });
    expect(s instanceof SleepCommand).toBe(true);
    expect(s instanceof Command).toBe(true);
    expect(s instanceof ActivityCommand).toBe(false);
    expect(sleep(5) instanceof SleepCommand).toBe(true);
    expect({ kind: 'sleep', ms: 5 } instanceof SleepCommand).toBe(false); // no brand: not a command
  });

  it('a workflow yielding another copy\'s commands runs to completion', async () => {
    const double = defineActivity('double', async (n: number) => n * 2);
    const real = activity(double, 21) as unknown as Record<string, unknown>;
    const wf = workflow('foreignCommands', function* (_: null) {
      yield* foreign<void>({ kind: 'sleep', ms: 1 });
      return yield* foreign<number>({ kind: 'activity', name: real.name, input: 21, options: real.options });
    });
    const journal = new MemoryJournal();
    const worker = new Worker({ workflows: [wf], activities: [double], journal, logger: pino({ level: 'silent' }), pollIntervalMs: 5 });
    worker.start();
    try {
      const client = new Client(journal, { logger: pino({ level: 'silent' }) });
      expect(await client.result(await client.start(wf, null), { timeoutMs: 5000 })).toBe(42);
    } finally {
      await worker.shutdown();
    }
  });
});
