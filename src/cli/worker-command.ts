import type { Command } from 'commander';
import pino, { type Logger } from 'pino';
import { firstLine, redactUrl } from '../journal/connection.js';
import { openJournal, type OpenedJournal } from '../journal/open.js';
import { ConfigError, DatabaseUnreachableError } from '../runtime/errors.js';
import { EXIT_OK } from './errors.js';
import { schemaOf } from './connect.js';
import { loadWorkflowsModule } from './load-module.js';
import { nameList, nonEmpty, nonNegativeInt, port, positiveInt, redisUrl, schemaName } from './options.js';
import type { CliContext } from './program.js';

interface WorkerCliOptions {
  workflows: string;
  queues: string[];
  concurrency: number;
  leaseMs: number;
  pollMs: number;
  shutdownGraceMs: number;
  inlineChildrenMs: number;
  schema?: string;
  databaseUrl?: string;
  redisUrl?: string;
  workerId?: string;
  httpPort?: number;
  httpHost?: string;
  heartbeatMs?: number;
}

/**
 * `skein worker`: loads a workflows module and runs a Worker on the default journal until SIGTERM/SIGINT.
 *
 * Lifecycle (exit codes in ./errors.ts): bad input exits 2 before anything starts; a database that does not answer,
 * at startup or later, is waited for (retries with jittered, capped backoff, one warn line per outage, one info line
 * when it is back); SIGTERM/SIGINT shut down gracefully (running activities finish or their runs are released) and
 * exit 0.
 */
export function registerWorkerCommand(program: Command, ctx: CliContext): void {
  program
    .command('worker')
    .description('run a worker: claim due runs of the given workflows and run them until SIGTERM/SIGINT')
    .requiredOption('--workflows <module>', 'module exporting `workflows` and `activities` (arrays or name maps), or a default export holding both; a .ts module is loaded through tsx')
    .option('--queues <names>', 'comma-separated queues to serve', nameList, ['default'])
    .option('--concurrency <n>', 'most runs with a live actor at once', positiveInt, 1000)
    .option('--lease-ms <ms>', 'lease period of a run held by this worker', positiveInt, 30_000)
    .option('--poll-ms <ms>', 'how often to look for due runs nobody announced (timers, lost notifications, expired leases)', positiveInt, 1000)
    .option('--shutdown-grace-ms <ms>', 'on SIGTERM, how long running activities may finish before their runs are released', nonNegativeInt, 10_000)
    .option('--inline-children-ms <ms>', 'how long an activation may run the children it starts before committing (0: never)', nonNegativeInt, 20)
    .option('--database-url <url>', 'PostgreSQL of the journal (default: DATABASE_URL, else the embedded server under $SKEIN_HOME)')
    .option('--schema <name>', 'PostgreSQL schema of the journal (default: SKEIN_SCHEMA, else skein)', schemaName)
    .option('--redis-url <url>', 'Redis wake bus, in addition to PostgreSQL notifications (default: REDIS_URL)', redisUrl)
    .option('--worker-id <id>', 'this worker\'s id in leases and logs (default: host:pid:random)', nonEmpty)
    .option('--http-port <port>', 'serve GET /healthz and GET /metrics (Prometheus) on this port (default: SKEIN_HTTP_PORT, else none)', port)
    .option('--http-host <address>', 'address the HTTP port binds (default: SKEIN_HTTP_HOST, else 127.0.0.1)', nonEmpty)
    .option('--heartbeat-ms <ms>', 'how often the worker records its heartbeat (`skein workers`; gone after 3 missed) (default: SKEIN_HEARTBEAT_MS, else 5000)', positiveInt)
    .addHelpText(
      'after',
      `
Environment:
  DATABASE_URL     PostgreSQL for the journal; without it, an embedded server shared by the processes of this
                   machine, with its data in $SKEIN_HOME/pg (SKEIN_HOME defaults to .skein in the folder of the
                   nearest package.json, so every directory of a project finds the same server)
  SKEIN_SCHEMA     as --schema
  REDIS_URL        as --redis-url
  SKEIN_HTTP_PORT, SKEIN_HTTP_HOST, SKEIN_HEARTBEAT_MS  as --http-port, --http-host, --heartbeat-ms
  SKEIN_LOG_LEVEL  pino level of the JSON log on stdout (default: info)

Exit codes: 0 stopped by SIGTERM/SIGINT; 2 bad input (arguments, workflows module, a malformed or refused
DATABASE_URL); 1 anything unexpected. A database that does not answer is waited for, not a reason to exit.`,
    )
    .action(async (opts: WorkerCliOptions) => {
      ctx.exitCode = await runWorker(opts);
    });
}

async function runWorker(opts: WorkerCliOptions): Promise<number> {
  const level = process.env.SKEIN_LOG_LEVEL ?? 'info';
  if (level !== 'silent' && !(level in pino.levels.values)) {
    throw new ConfigError('SKEIN_LOG_LEVEL', level, `SKEIN_LOG_LEVEL ${level} is not a log level (${Object.keys(pino.levels.values).join(', ')}, silent)`);
  }
  const envRedis = process.env.REDIS_URL;
  if (!opts.redisUrl && envRedis) {
    try {
      redisUrl(envRedis);
    } catch {
      throw new ConfigError('REDIS_URL', redactUrl(envRedis), `REDIS_URL is not a redis:// or rediss:// URL: ${redactUrl(envRedis)}`);
    }
  }
  const schema = schemaOf(opts);
  const source = await loadWorkflowsModule(opts.workflows);
  // loaded here, not at the top: the other commands need neither (ioredis alone takes a while to load)
  const wakeUrl = opts.redisUrl ?? envRedis;
  const [{ Worker }, wake] = await Promise.all([import('../worker/worker.js'), wakeUrl ? import('../journal/wake-bus.js') : null]);
  const log = pino({ level });

  // Until the worker handles them itself, SIGTERM/SIGINT end the wait for the database (nothing is held yet).
  const startup = new AbortController();
  const onEarlySignal = (signal: NodeJS.Signals) => {
    log.info({ signal }, 'stopping before the worker started');
    startup.abort();
  };
  process.once('SIGTERM', onEarlySignal);
  process.once('SIGINT', onEarlySignal);
  let opened: OpenedJournal | undefined;
  try {
    opened = await openPatiently(() => openJournal({ ...(schema ? { schema } : {}), ...(opts.databaseUrl !== undefined ? { databaseUrl: opts.databaseUrl } : {}) }), log, startup.signal);
  } finally {
    process.removeListener('SIGTERM', onEarlySignal);
    process.removeListener('SIGINT', onEarlySignal);
  }
  if (!opened) return EXIT_OK;
  if (startup.signal.aborted) {
    await opened.close();
    return EXIT_OK;
  }
  // From here to worker.run() nothing awaits: no signal can fall between the two sets of handlers.
  log.info({ embedded: opened.embedded, database: redactUrl(opened.url), ...(opened.dataDir ? { dataDir: opened.dataDir } : {}), journal: opened.describe() }, 'journal open');
  const wakeBus = wake && wakeUrl ? new wake.RedisWakeBus({ url: wakeUrl, ...(schema ? { channel: `${schema}:wake` } : {}) }) : undefined;
  const worker = new Worker({
    workflows: source.workflows,
    activities: source.activities ?? [],
    journal: opened.journal,
    queues: opts.queues,
    concurrency: opts.concurrency,
    leaseMs: opts.leaseMs,
    pollIntervalMs: opts.pollMs,
    shutdownGraceMs: opts.shutdownGraceMs,
    inlineChildBudgetMs: opts.inlineChildrenMs,
    logger: log,
    ...(opts.workerId ? { workerId: opts.workerId } : {}),
    ...(wakeBus ? { wakeBus } : {}),
    ...(opts.httpPort !== undefined ? { httpPort: opts.httpPort } : {}),
    ...(opts.httpHost ? { httpHost: opts.httpHost } : {}),
    ...(opts.heartbeatMs ? { heartbeatIntervalMs: opts.heartbeatMs } : {}),
  });
  // Health on demand: `kill -USR2 <pid>` prints one JSON line (state, active runs, cached engines, errors).
  const onHealth = () => process.stdout.write(`skein-health ${JSON.stringify(worker.health())}\n`);
  process.on('SIGUSR2', onHealth);
  try {
    await worker.run({ handleSignals: true });
  } finally {
    process.removeListener('SIGUSR2', onHealth);
    await wakeBus?.close();
    await opened.close();
  }
  return EXIT_OK;
}

/**
 * Opens the journal, waiting for a database that does not answer: retries with jittered exponential backoff (250 ms
 * doubling, at most 5 s), said once at warn (naming the URL, without its password) and at info when it answers.
 * Anything else (a malformed or refused URL) is thrown at once. Resolves undefined if `signal` aborts the wait.
 */
async function openPatiently(open: () => Promise<OpenedJournal>, log: Logger, signal: AbortSignal): Promise<OpenedJournal | undefined> {
  let since: number | null = null;
  for (let attempt = 0; ; attempt++) {
    try {
      const opened = await open();
      if (since !== null) log.info({ database: redactUrl(opened.url), downForMs: Date.now() - since }, 'database reachable');
      return opened;
    } catch (err) {
      if (!(err instanceof DatabaseUnreachableError)) throw err;
      if (since === null) {
        since = Date.now();
        log.warn({ database: err.url, reason: firstLine(err.cause) }, 'database unreachable at startup: will retry with backoff until it answers');
      } else {
        log.debug({ database: err.url, reason: firstLine(err.cause), attempt }, 'database still unreachable');
      }
    }
    const base = Math.min(5000, 250 * 2 ** Math.min(attempt, 10));
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    const aborted = await new Promise<boolean>((done) => {
      if (signal.aborted) return done(true);
      const t = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        done(false);
      }, delay);
      const onAbort = () => {
        clearTimeout(t);
        done(true);
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
    if (aborted) return undefined;
  }
}
