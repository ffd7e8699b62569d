// src/worker.ts: the same worker in your own process instead of `skein worker`, logging warnings to a file.
import { openJournal, pino, Worker } from 'skein';
import { activities, workflows } from './workflows.js';

const opened = await openJournal();
const logger = pino({ level: process.env.SKEIN_LOG_LEVEL ?? 'warn' }, pino.destination('./worker.log'));
const worker = new Worker({ workflows, activities, journal: opened.journal, logger });
console.log(`worker ${worker.workerId} on ${opened.describe()}`);
await worker.run({ handleSignals: true }); // until SIGTERM or Ctrl-C, then a graceful shutdown
await opened.close();
