import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import { freePort, pidAlive, startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../src/journal/embedded.js';
import { createPgJournal } from '../../src/journal/postgres/index.js';
import * as fx from './fixtures/crash-workflows.js';
import { logLines, repoRoot, sleep, useWorkerProcesses, waitFor, workflowsModule, type WorkerProcess } from './fixtures/processes.js';

/**
 * The `skein worker` process (the built CLI, `node dist/cli/main.js`, as a child process) stays up for as long as it
 * can go on, and says what is wrong in one line when it cannot:
 *  (a) an idle worker whose database goes away waits for it (one warn line for the outage, not one per retry), and
 *      resumes when it is back; SIGTERM still ends it with exit code 0;
 *  (b) the embedded server outlives any one process using it: a client process that started it exits, the worker
 *      and the next client go on using it; the last user to leave stops it;
 *  (c) bad input: `--help` prints usage and exits 0; a bad option value, a malformed DATABASE_URL, an unknown command
 *      exit 2 with one line on stderr naming what is wrong (a URL without its password), no stack;
 *  (d) a worker started while its database is down waits for it rather than exiting.
 * Each test that stops a database runs its own embedded server (temp data directory, free port), never the shared one.
 */

/** pino's warn level in the JSON log lines. */
const WARN = 40;


const warnings = (p: WorkerProcess) => logLines(p).filter((l) => l.level >= WARN);

/** A temp directory the server's user (postgres, when we are root) can enter, removed after the test. */
async function tempHome(cleanups: Array<() => Promise<void>>, prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Backends listening for wake-ups (the journal's LISTEN connection), as the server sees them. */
async function listenBackends(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  c.on('error', () => {});
  try {
    await c.connect();
    const r = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'LISTEN%'`);
    return r.rows[0]!.n;
  } catch {
    return -1;
  } finally {
    await c.end().catch(() => {});
  }
}


describe('process liveness', () => {
  const { procs, cleanups, url } = useWorkerProcesses();

  /** This test's own embedded server (stopped in cleanup whatever happens). */
  async function ownServer(prefix: string) {
    const home = await tempHome(cleanups, prefix);
    const dataDir = path.join(home, 'pg');
    const port = await freePort();
    const state: { server: EmbeddedPostgresHandle | null } = { server: await startEmbeddedPostgres({ dataDir, port }) };
    cleanups.push(async () => {
      await state.server?.stop();
    });
    return { dataDir, port, state };
  }

  it('(a) an idle worker outlives a database outage: one warn line, resumes when it is back, exits 0 on SIGTERM', async () => {
    const { dataDir, port, state } = await ownServer('skein-live-a-');
    const dbUrl = state.server!.url;
    const schema = 'skein_live_a';
    const w = procs.spawn({ workerId: 'idle', url: dbUrl, schema, pollMs: 200, env: { SKEIN_LOG_LEVEL: 'info' } });
    await waitFor('the worker to start', () => w.output().includes('worker started'), 30_000);
    await waitFor("the worker's LISTEN connection", async () => (await listenBackends(dbUrl)) === 1, 10_000);

    await state.server!.stop();
    state.server = null;
    await sleep(4000); // some 20 polls' worth, backing off
    expect(w.alive).toBe(true);
    const outage = warnings(w);
    expect(outage).toHaveLength(1);
    expect(outage[0]!.msg).toMatch(/database unreachable/);

    state.server = await startEmbeddedPostgres({ dataDir, port });
    const journal = await createPgJournal({ connectionString: state.server.url, schema, maxConnections: 2 });
    cleanups.push(() => journal.close());
    const client = new Client(journal);
    const ref = await client.start(fx.leafChild, 'after', { workflowId: 'after-outage' });
    expect(await client.result(ref, { timeoutMs: 20_000 })).toBe('quick-leaf-after');
    await waitFor('the worker to say the database is back', () => logLines(w).some((l) => l.msg === 'database reachable again'), 10_000);
    // its LISTEN connection came back by itself (the only one, once the client's journal, which listens too, is closed)
    await journal.close();
    await waitFor("the worker's LISTEN connection to come back", async () => (await listenBackends(state.server!.url)) === 1, 10_000);
    expect(warnings(w)).toHaveLength(1);

    w.signal('SIGTERM');
    expect((await w.exited).code).toBe(0);
  }, 60_000);

  it('(b) the embedded server outlives the client process that started it; the last user to leave stops it', async () => {
    const home = await tempHome(cleanups, 'skein-live-b-');
    const schema = 'skein_live_b';
    // no DATABASE_URL: every process uses the embedded server under SKEIN_HOME
    const env = { ...process.env, DATABASE_URL: '', SKEIN_HOME: home, SKEIN_LOG_LEVEL: 'info' };
    const pidFile = path.join(home, 'pg', 'postmaster.pid');
    const postmaster = async () => Number((await readFile(pidFile, 'utf8').catch(() => '')).split('\n')[0]) || undefined;
    cleanups.push(async () => {
      // whatever happened: no server left behind
      const pid = await postmaster();
      if (pid && pidAlive(pid)) {
        process.kill(pid, 'SIGINT');
        await waitFor('the embedded server to stop', () => !pidAlive(pid), 20_000, 100).catch(() => process.kill(pid, 'SIGKILL'));
      }
    });
    // A user's client script (run with tsx) on the built package, as the worker processes are: one copy of skein.
    const script = path.join(home, 'client.mts');
    const file = (p: string) => JSON.stringify(path.join(repoRoot, p));
    await writeFile(
      script,
      `import { Client, openJournal } from ${file('dist/index.js')};
       import { leafChild } from ${file(workflowsModule)};
       const opened = await openJournal({ schema: ${JSON.stringify(schema)} });
       console.log('OPENED embedded=' + opened.embedded);
       const client = new Client(opened.journal);
       const ref = await client.start(leafChild, process.argv[2], { workflowId: process.argv[2] });
       console.log('RESULT ' + JSON.stringify(await client.result(ref, { timeoutMs: 30_000 })));
       await opened.close();
      `,
    );

    // The first client finds no server: it starts it, then waits for its run, which the worker (adopting the server)
    // runs. It exits: the worker still uses the server, so it must go on.
    const c1 = procs.spawnScript('client-1', script, ['first'], env);
    await waitFor('client 1 to open the journal', () => c1.output().includes('OPENED embedded=true'), 40_000);
    const pid = await postmaster();
    expect(pid).toBeDefined();
    const w = procs.spawn({ workerId: 'embedded', url: '', schema, pollMs: 200, env: { SKEIN_HOME: home, SKEIN_LOG_LEVEL: 'info' } });
    expect((await c1.exited).code).toBe(0);
    expect(c1.output()).toContain('RESULT "quick-leaf-first"');
    await sleep(1500);
    expect(w.alive).toBe(true);
    expect(pidAlive(pid!)).toBe(true);

    // The next client adopts the same server: no "the database system is shutting down", no new server.
    const c2 = procs.spawnScript('client-2', script, ['second'], env);
    expect((await c2.exited).code).toBe(0);
    expect(c2.output()).toContain('RESULT "quick-leaf-second"');
    expect(c2.output()).not.toMatch(/shutting down/);
    expect(await postmaster()).toBe(pid);
    expect(w.alive).toBe(true);
    expect(warnings(w)).toEqual([]);

    // The worker is the last user: it stops the server on its way out (SIGTERM: graceful, exit code 0).
    w.signal('SIGTERM');
    expect((await w.exited).code).toBe(0);
    await waitFor('the last user to have stopped the server', () => !pidAlive(pid!), 20_000, 100);
  }, 60_000);

  it('(c) bad input: one typed line on stderr and exit code 2; --help prints usage and exits 0', async () => {
    const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => {
      const p = procs.spawnCli(`skein ${args.join(' ')}`, args, { ...process.env, SKEIN_LOG_LEVEL: 'warn', ...env });
      const closed = new Promise((r) => p.child.once('close', r));
      return closed.then(async () => ({ code: (await p.exited).code, out: p.output(), err: p.stderr() }));
    };
    const noDb = 'postgres://nobody:s3cret@127.0.0.1:99999999/nowhere'; // port out of range: not a valid URL
    const refused = new URL(url());
    refused.username = 'postgres';
    refused.password = 'hunter2';
    refused.pathname = '/skein_no_such_database';
    const [help, badLease, badUrl, unknown, missing, noSuchDb] = await Promise.all([
      cli(['worker', '--help']),
      cli(['worker', '--workflows', workflowsModule, '--lease-ms', 'xyz'], { DATABASE_URL: url() }),
      cli(['worker', '--workflows', workflowsModule], { DATABASE_URL: noDb }),
      cli(['frobnicate']),
      cli(['worker', '--workflows', 'test/integration/fixtures/no-such-module.ts'], { DATABASE_URL: url() }),
      cli(['worker', '--workflows', workflowsModule], { DATABASE_URL: refused.toString() }),
    ]);
    const oneLine = (r: { err: string }) => {
      const lines = r.err.trimEnd().split('\n');
      expect(lines).toHaveLength(1);
      expect(r.err).not.toMatch(/\n\s+at /); // no stack
      return lines[0]!;
    };

    expect(help.code).toBe(0);
    expect(help.out).toMatch(/Usage: skein worker/);
    expect(help.out).toMatch(/--lease-ms <ms>/);
    expect(help.err).toBe('');

    expect(badLease.code).toBe(2);
    expect(oneLine(badLease)).toMatch(/^skein: UsageError: .*--lease-ms.*'xyz'/);

    expect(badUrl.code).toBe(2);
    const urlLine = oneLine(badUrl);
    expect(urlLine).toMatch(/^skein: ConfigError: DATABASE_URL/);
    expect(urlLine).toContain('postgres://nobody:***@127.0.0.1:99999999/nowhere');
    expect(urlLine).not.toContain('s3cret');

    expect(unknown.code).toBe(2);
    expect(oneLine(unknown)).toMatch(/^skein: UsageError: unknown command 'frobnicate'/);

    expect(missing.code).toBe(2);
    expect(oneLine(missing)).toMatch(/^skein: ConfigError: cannot load --workflows .*no-such-module/);

    // a URL the server refuses (here: no such database) names the URL, without its password
    expect(noSuchDb.code).toBe(2);
    const refusedLine = oneLine(noSuchDb);
    expect(refusedLine).toMatch(/^skein: ConfigError: DATABASE_URL .*skein_no_such_database/);
    expect(refusedLine).not.toContain('hunter2');
  }, 60_000);

  it('(d) a worker started while its database is down waits for it, then runs', async () => {
    const { dataDir, port, state } = await ownServer('skein-live-d-');
    const dbUrl = state.server!.url;
    await state.server!.stop();
    state.server = null;
    const schema = 'skein_live_d';
    const w = procs.spawn({ workerId: 'early', url: dbUrl, schema, pollMs: 200, env: { SKEIN_LOG_LEVEL: 'info' } });
    await waitFor('the worker to say the database is unreachable', () => warnings(w).length > 0, 30_000);
    await sleep(2500);
    expect(w.alive).toBe(true);
    const said = warnings(w);
    expect(said).toHaveLength(1);
    expect(said[0]!.msg).toMatch(/database unreachable at startup/);
    expect(said[0]!.database).toBe(dbUrl.replace(/:[^:@/]+@/, ':***@'));

    state.server = await startEmbeddedPostgres({ dataDir, port });
    await waitFor('the worker to start', () => w.output().includes('worker started'), 20_000);
    const journal = await createPgJournal({ connectionString: state.server.url, schema, maxConnections: 2 });
    cleanups.push(() => journal.close());
    const client = new Client(journal);
    const ref = await client.start(fx.leafChild, 'late', { workflowId: 'late-db' });
    expect(await client.result(ref, { timeoutMs: 20_000 })).toBe('quick-leaf-late');
    expect(warnings(w)).toHaveLength(1);
    w.signal('SIGTERM');
    expect((await w.exited).code).toBe(0);
  }, 60_000);
});
