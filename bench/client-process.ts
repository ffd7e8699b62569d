/**
 * The benchmark's client in a process of its own, as production has it: an API server starting and signalling runs
 * while the workers run them. bench/throughput.ts forks it (clientProcess) and sends it batches over IPC; it answers
 * with what it did and how long that took. Its CPU is its own, not the worker's.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { Client } from '../src/client/client.js';
import { createPgJournal } from '../src/journal/postgres/index.js';

type Ask =
  | { op: 'start'; workflow: string; workflowIds: string[]; inputs: unknown[]; parallel: number }
  | { op: 'signal'; runIds: string[]; name: string; payload: unknown; parallel: number }
  | { op: 'exit' };
type Request = Ask & { id: number };
type Reply = { id: number; ms: number; runIds?: string[]; error?: string };

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function inFlight<T>(items: T[], limit: number, fn: (x: T, i: number) => Promise<unknown>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (i < items.length) {
        const k = i++;
        await fn(items[k]!, k);
      }
    }),
  );
}

/** A forked client process on the benchmark's database and schema. */
export interface ClientProcess {
  /** Starts runs of `workflow`, `parallel` in flight; their run ids in order, and the time taken in the client. */
  start(workflow: string, workflowIds: string[], inputs: unknown[], parallel?: number): Promise<{ runIds: string[]; ms: number }>;
  signal(runIds: string[], name: string, payload: unknown, parallel?: number): Promise<{ ms: number }>;
  close(): Promise<void>;
}

export async function clientProcess(url: string, schema: string): Promise<ClientProcess> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, BENCH_CLIENT_URL: url, BENCH_CLIENT_SCHEMA: schema },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let next = 1;
  const waiting = new Map<number, (r: Reply) => void>();
  child.on('message', (r: Reply | 'ready') => {
    if (r === 'ready') return;
    waiting.get(r.id)?.(r);
    waiting.delete(r.id);
  });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`client process exited with ${code}`)));
  });
  const ask = (req: Ask): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const id = next++;
      waiting.set(id, (r) => (r.error ? reject(new Error(r.error)) : resolve(r)));
      child.send({ ...req, id });
    });
  return {
    start: async (workflow, workflowIds, inputs, parallel = 32) => {
      const r = await ask({ op: 'start', workflow, workflowIds, inputs, parallel });
      return { runIds: r.runIds!, ms: r.ms };
    },
    signal: async (runIds, name, payload, parallel = 32) => ({ ms: (await ask({ op: 'signal', runIds, name, payload, parallel })).ms }),
    close: async () => {
      child.send({ id: 0, op: 'exit' });
      await new Promise((r) => child.once('exit', r));
    },
  };
}

// ---- the child ----
if (process.env.BENCH_CLIENT_URL && process.send) {
  const journal = await createPgJournal({ connectionString: process.env.BENCH_CLIENT_URL, schema: process.env.BENCH_CLIENT_SCHEMA!, maxConnections: 10 });
  const client = new Client(journal, { logger: pino({ level: 'warn' }) });
  process.on('message', async (req: Request) => {
    if (req.op === 'exit') {
      await journal.close();
      process.exit(0);
    }
    const t0 = performance.now();
    try {
      if (req.op === 'start') {
        const runIds: string[] = new Array(req.workflowIds.length);
        await inFlight(req.workflowIds, req.parallel, async (workflowId, i) => {
          runIds[i] = (await client.start(req.workflow, req.inputs[i], { workflowId })).runId;
        });
        process.send!({ id: req.id, ms: performance.now() - t0, runIds } satisfies Reply);
      } else {
        await inFlight(req.runIds, req.parallel, (runId) => client.signal(runId, req.name, req.payload));
        process.send!({ id: req.id, ms: performance.now() - t0 } satisfies Reply);
      }
    } catch (err) {
      process.send!({ id: req.id, ms: 0, error: String(err) } satisfies Reply);
    }
  });
  process.send('ready');
}
