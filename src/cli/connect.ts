import type { Command } from 'commander';
import pino from 'pino';
import { Client } from '../client/client.js';
import { redactUrl } from '../journal/connection.js';
import { openJournal, type OpenedJournal } from '../journal/open.js';
import { ConfigError } from '../runtime/errors.js';
import { schemaName } from './options.js';

/** The options of every command that talks to the journal. */
export interface DbOptions {
  databaseUrl?: string;
  schema?: string;
}

/** Adds `--database-url` and `--schema` to a command. */
export function dbOptions(cmd: Command): Command {
  return cmd
    .option('--database-url <url>', 'PostgreSQL of the journal (default: DATABASE_URL, else the embedded server under $SKEIN_HOME)')
    .option('--schema <name>', 'PostgreSQL schema of the journal (default: SKEIN_SCHEMA, else skein)', schemaName);
}

/** `--schema`, else SKEIN_SCHEMA (checked as the option is), else undefined (the journal's default, skein). */
export function schemaOf(opts: { schema?: string }): string | undefined {
  if (opts.schema) return opts.schema;
  const env = process.env.SKEIN_SCHEMA;
  if (!env) return undefined;
  try {
    return schemaName(env);
  } catch {
    throw new ConfigError('SKEIN_SCHEMA', env, `SKEIN_SCHEMA ${env} is not a schema name: a lower-case identifier (a-z, 0-9, _; not starting with a digit)`);
  }
}

/**
 * Opens the journal as a worker finds it (openJournal: `--database-url`, else DATABASE_URL, else the embedded server
 * shared under $SKEIN_HOME) and runs `fn` with a Client on it; closes it whatever happens. A database that does not
 * answer is not waited for (a command is not a worker): DatabaseUnreachableError, exit code 1.
 */
export async function withClient<T>(opts: DbOptions, fn: (client: Client, opened: OpenedJournal) => Promise<T>): Promise<T> {
  const opened = await open(opts);
  try {
    // Warnings of the client (a truncated cancel cascade) go to stderr, never into the output a script parses.
    const logger = pino({ level: process.env.SKEIN_LOG_LEVEL ?? 'warn' }, pino.destination(2));
    return await fn(new Client(opened.journal, { logger }), opened);
  } finally {
    await opened.close();
  }
}

async function open(opts: DbOptions): Promise<OpenedJournal> {
  try {
    const schema = schemaOf(opts);
    return await openJournal({ ...(opts.databaseUrl !== undefined ? { databaseUrl: opts.databaseUrl } : {}), ...(schema ? { schema } : {}), maxConnections: 4 });
  } catch (err) {
    // openJournal names the setting 'databaseUrl' (its option); on the command line it is --database-url
    if (err instanceof ConfigError && err.setting === 'databaseUrl') {
      throw new ConfigError('--database-url', err.value, err.message.replace(/^databaseUrl\b/, '--database-url'), { cause: err.cause });
    }
    throw err;
  }
}

/** Where the journal is, for a human (no password). */
export function journalLabel(opened: OpenedJournal, schema: string | undefined): string {
  return `${opened.embedded ? 'embedded ' : ''}${redactUrl(opened.url)} schema ${schema ?? schemaOf({}) ?? 'skein'}`;
}
