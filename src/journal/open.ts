import pg from 'pg';
import { ConfigError, DatabaseUnreachableError } from '../runtime/errors.js';
import { isUnreachable, redactUrl } from './connection.js';
import { createPgJournal, type PgJournal } from './postgres/index.js';
import { defaultDataDir } from './home.js';

export interface OpenedJournal {
  journal: PgJournal;
  /** The connection URL in use (embedded or given). */
  url: string;
  embedded: boolean;
  /** The embedded server's data directory (absolute), when embedded. */
  dataDir?: string;
  /**
   * One line saying where the journal is: the URL (its password shown as `***` unless `showPassword`) and, for the
   * embedded server, its data directory. Workers and examples print it at start; `psql "<url>"` connects.
   */
  describe(options?: { showPassword?: boolean }): string;
  /**
   * Closes the journal. On the embedded server it also leaves the server, which stops only when no other live
   * process uses it (see src/journal/embedded.ts).
   */
  close(): Promise<void>;
}

export interface OpenJournalOptions {
  /** A PostgreSQL URL. Default: `DATABASE_URL`, else an embedded server under `dataDir`. */
  databaseUrl?: string;
  /** PostgreSQL schema of the journal. Default: SKEIN_SCHEMA, else `skein`. */
  schema?: string;
  /**
   * Where the embedded server keeps its data. Default `<home>/pg`, home being `SKEIN_HOME`, else `.skein` in the folder
   * of the nearest package.json (see skeinHome), so every process of a project finds the same server.
   */
  dataDir?: string;
  maxConnections?: number;
}

/** SQLSTATEs of a server that refuses our settings: bad password or role, no such database, no right to connect. */
const REFUSED_SQLSTATE: Record<string, string> = {
  '28P01': 'the server refused the password',
  '28000': 'the server refused the login',
  '3D000': 'no such database',
  '42501': 'permission denied',
};

export { defaultDataDir, skeinHome } from './home.js';

/**
 * The runtime's default journal: the Postgres journal on `DATABASE_URL`, or, with no database configured, on a real
 * PostgreSQL that needs no installation (the npm-shipped embedded server, its data under the project's `.skein/`, or
 * `$SKEIN_HOME`: see skeinHome),
 * shared by every process that opens it and reused by the next start.
 *
 * Failures are typed: a URL that does not parse, or a server that refuses it (password, role, database), is a
 * `ConfigError` naming the URL without its password; a server that does not answer (down, restarting, unreachable) is
 * a `DatabaseUnreachableError`, worth retrying.
 */
export async function openJournal(options: OpenJournalOptions = {}): Promise<OpenedJournal> {
  const fromEnv = options.databaseUrl === undefined;
  const given = options.databaseUrl ?? process.env.DATABASE_URL;
  if (given) {
    const setting = fromEnv ? 'DATABASE_URL' : 'databaseUrl';
    checkUrl(given, setting);
    const journal = await createPgJournal({ connectionString: given, ...pick(options) }).catch((err: unknown) => {
      throw connectFailure(err, given, setting);
    });
    return { journal, url: given, embedded: false, describe: (o) => `PostgreSQL at ${shownUrl(given, o)}`, close: () => journal.close() };
  }
  const { startEmbeddedPostgres } = await import('./embedded.js');
  const server = await startEmbeddedPostgres({ dataDir: options.dataDir ?? defaultDataDir() });
  try {
    const journal = await createPgJournal({ connectionString: server.url, ...pick(options) });
    return {
      journal,
      url: server.url,
      embedded: true,
      dataDir: server.dataDir,
      describe: (o) => `embedded PostgreSQL at ${shownUrl(server.url, o)} (data in ${server.dataDir}; its password is 'skein')`,
      close: async () => {
        try {
          await journal.close();
        } finally {
          await server.stop();
        }
      },
    };
  } catch (err) {
    await server.stop();
    throw err;
  }
}

function shownUrl(url: string, o?: { showPassword?: boolean }): string {
  return o?.showPassword ? url : redactUrl(url);
}

/** A URL the driver cannot parse is a ConfigError naming it (redacted), not a TypeError from deep inside pg. */
function checkUrl(url: string, setting: string): void {
  try {
    // the driver's own parser, as used for every connection (the client connects only on connect())
    new pg.Client({ connectionString: url });
  } catch (err) {
    throw new ConfigError(setting, redactUrl(url), `${setting} is not a valid PostgreSQL URL: ${redactUrl(url)} (${(err as Error).message})`, { cause: err });
  }
}

/** The typed error for a failure to open the journal on `url`. */
function connectFailure(err: unknown, url: string, setting: string): unknown {
  const shown = redactUrl(url);
  if (isUnreachable(err)) return new DatabaseUnreachableError(shown, { cause: err });
  const code = (err as { code?: string }).code;
  const refused = code ? REFUSED_SQLSTATE[code] : undefined;
  if (refused) return new ConfigError(setting, shown, `${setting} ${shown}: ${refused} (${(err as Error).message})`, { cause: err });
  return err;
}

function pick(o: OpenJournalOptions): { schema?: string; maxConnections?: number } {
  const out: { schema?: string; maxConnections?: number } = {};
  // (SKEIN_SCHEMA as `skein worker` reads it, so a client script finds the worker's journal)
  const schema = o.schema ?? process.env.SKEIN_SCHEMA;
  if (schema) out.schema = schema;
  if (o.maxConnections) out.maxConnections = o.maxConnections;
  return out;
}
