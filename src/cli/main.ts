#!/usr/bin/env node
/**
 * skein command line.
 *
 *   skein worker --workflows ./path/to/module [--queues a,b] [--concurrency N] [--lease-ms N] [--poll-ms N] [--inline-children-ms N]
 *                [--shutdown-grace-ms N] [--schema s] [--worker-id id]
 *
 * The module exports `workflows` and `activities` (arrays or name maps), or a default export holding both. The
 * journal is PostgreSQL at DATABASE_URL, or the embedded server under ./.skein/ when none is set. SIGTERM and SIGINT
 * shut the worker down gracefully (running activities finish or their runs are released; nothing is lost).
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { openJournal } from '../journal/open.js';
import { RedisWakeBus } from '../journal/wake-bus.js';
import { Worker } from '../worker/worker.js';

const USAGE = `usage: skein worker --workflows <module> [--queues default] [--concurrency 1000] [--lease-ms 30000] [--poll-ms 1000] [--shutdown-grace-ms 10000] [--inline-children-ms 20] [--schema skein] [--redis-url URL] [--worker-id ID]`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== 'worker') {
    console.error(USAGE);
    return 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      workflows: { type: 'string' },
      queues: { type: 'string', default: 'default' },
      concurrency: { type: 'string', default: '1000' },
      'lease-ms': { type: 'string', default: '30000' },
      'poll-ms': { type: 'string', default: '1000' },
      // how long SIGTERM waits for running activities before releasing their runs (Worker.shutdownGraceMs)
      'shutdown-grace-ms': { type: 'string', default: '10000' },
      'inline-children-ms': { type: 'string', default: '20' },
      schema: { type: 'string' },
      'redis-url': { type: 'string' },
      'worker-id': { type: 'string' },
    },
  });
  if (!values.workflows) {
    console.error(`--workflows is required\n${USAGE}`);
    return 2;
  }
  const mod = await import(pathToFileURL(resolve(values.workflows)).href);
  const source = mod.workflows ? mod : (mod.default ?? {});
  if (!source.workflows) {
    console.error(`${values.workflows} exports no 'workflows'`);
    return 2;
  }
  const log = pino({ level: process.env.SKEIN_LOG_LEVEL ?? 'info' });
  const opened = await openJournal(values.schema ? { schema: values.schema } : {});
  log.info({ embedded: opened.embedded }, 'journal open');
  const redisUrl = values['redis-url'] ?? process.env.REDIS_URL;
  const wakeBus = redisUrl ? new RedisWakeBus({ url: redisUrl, ...(values.schema ? { channel: `${values.schema}:wake` } : {}) }) : undefined;
  const worker = new Worker({
    workflows: source.workflows,
    activities: source.activities ?? [],
    journal: opened.journal,
    queues: values.queues!.split(',').filter(Boolean),
    concurrency: Number(values.concurrency),
    leaseMs: Number(values['lease-ms']),
    pollIntervalMs: Number(values['poll-ms']),
    shutdownGraceMs: Number(values['shutdown-grace-ms']),
    inlineChildBudgetMs: Number(values['inline-children-ms']),
    logger: log,
    ...(values['worker-id'] ? { workerId: values['worker-id'] } : {}),
    ...(wakeBus ? { wakeBus } : {}),
  });
  // Health on demand: `kill -USR2 <pid>` prints one JSON line (state, active runs, cached engines, errors).
  process.on('SIGUSR2', () => process.stdout.write(`skein-health ${JSON.stringify(worker.health())}\n`));
  await worker.run({ handleSignals: true });
  await wakeBus?.close();
  await opened.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
