import pg from 'pg';
import { createPgJournal, type PgJournal } from '../src/journal/postgres/index.js';

/** The benchmark database: DATABASE_URL, else a local server on 127.0.0.1:5432, else an embedded one. */
export async function benchDatabaseUrl(): Promise<{ url: string; stop?: () => Promise<void> }> {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL };
  const local = 'postgres://postgres@127.0.0.1:5432/postgres';
  const c = new pg.Client({ connectionString: local, connectionTimeoutMillis: 1000 });
  try {
    await c.connect();
    await c.end();
    return { url: local };
  } catch {
    const { startEmbeddedPostgres } = await import('../src/journal/embedded.js');
    const s = await startEmbeddedPostgres({ dataDir: './.skein/bench-pg' });
    return { url: s.url, stop: () => s.stop() };
  }
}

/** Mean ms of a single-row insert + commit round trip on this database (the floor every durable step pays). */
export async function insertCommitFloor(url: string, schema: string, n = 300): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`create table if not exists ${schema}.floor (id bigserial primary key, run_id text, payload json)`);
    const t = performance.now();
    for (let i = 0; i < n; i++) {
      await c.query('begin');
      await c.query(`insert into ${schema}.floor (run_id, payload) values ($1, $2)`, [`r${i}`, '{"a":1}']);
      await c.query('commit');
    }
    return (performance.now() - t) / n;
  } finally {
    await c.end();
  }
}

/** Mean ms of one 1,000-row insert on this database. */
export async function bulkInsertFloor(url: string, schema: string, reps = 10): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`create table if not exists ${schema}.floor (id bigserial primary key, run_id text, payload json)`);
    const t = performance.now();
    for (let r = 0; r < reps; r++) {
      await c.query(`insert into ${schema}.floor (run_id, payload) select 'r' || g, '{"a":1}'::json from generate_series(1, 1000) g`);
    }
    return (performance.now() - t) / reps;
  } finally {
    await c.end();
  }
}

/**
 * Runs a benchmark on its own schema of the benchmark database: opens a migrated journal there, and whatever happens
 * drops the schema, closes the journal and stops an embedded server it started; a failure exits non-zero.
 */
export function runOnFreshSchema(name: string, bench: (ctx: { url: string; schema: string; journal: PgJournal }) => Promise<void>): void {
  void (async () => {
    const db = await benchDatabaseUrl();
    const schema = `bench_${name}_${process.pid}`;
    const journal = await createPgJournal({ connectionString: db.url, schema, maxConnections: 10 });
    try {
      await bench({ url: db.url, schema, journal });
    } finally {
      await journal.pool.query(`drop schema ${schema} cascade`).catch(() => {});
      await journal.close();
      await db.stop?.();
    }
  })().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
