import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../src/journal/embedded.js';

// Starts real PostgreSQL servers from the npm-shipped binaries: slow-ish (initdb), so generous timeouts.
const TIMEOUT = 120_000;
const embeddedModule = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/journal/embedded.ts');

describe('startEmbeddedPostgres', () => {
  let base: string;
  let dataDir: string;

  beforeAll(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'skein-embedded-'));
    await chmod(base, 0o755); // as root the server runs as the postgres user, which must be able to enter it
    dataDir = path.join(base, 'pg');
  });
  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it(
    'initialises a data directory, creates the skein database, and stops',
    async () => {
      const h = await startEmbeddedPostgres({ dataDir });
      try {
        expect(h.adopted).toBe(false);
        expect(h.url).toMatch(new RegExp(`^postgres://postgres:[^@]+@127\\.0\\.0\\.1:${h.port}/skein$`));
        expect(existsSync(path.join(dataDir, 'PG_VERSION'))).toBe(true);
        expect((await readFile(path.join(base, 'port'), 'utf8')).trim()).toBe(String(h.port));
        await query(h, 'CREATE TABLE kept (v text)');
        await query(h, `INSERT INTO kept VALUES ('still here')`);
      } finally {
        await h.stop();
      }
      await expect(query(h, 'SELECT 1')).rejects.toThrow();
    },
    TIMEOUT,
  );

  it(
    'starts again on the same directory: same port, same data, no new initdb',
    async () => {
      const port = Number((await readFile(path.join(base, 'port'), 'utf8')).trim());
      const h = await startEmbeddedPostgres({ dataDir });
      try {
        expect(h.port).toBe(port);
        expect(await query(h, 'SELECT v FROM kept')).toEqual([{ v: 'still here' }]);
      } finally {
        await h.stop();
      }
    },
    TIMEOUT,
  );

  it(
    'starts over a stale postmaster.pid, even when its pid now belongs to another live program',
    async () => {
      // After a reboot or a container restart the old pid is often taken by something else; postgres alone would
      // then refuse to start ("lock file already exists") if that program runs as the server's user. A live `sleep`
      // of that user (postgres, when we are root and the server runs as postgres) plays it.
      const squatter = spawn('sleep', ['60'], serverUser());
      try {
        const port = Number((await readFile(path.join(base, 'port'), 'utf8')).trim());
        await writeFile(path.join(dataDir, 'postmaster.pid'), `${squatter.pid}\n${dataDir}\n1700000000\n${port}\n/tmp\n127.0.0.1\n  1234  5678\nready   \n`);
        const h = await startEmbeddedPostgres({ dataDir });
        try {
          expect(h.adopted).toBe(false);
          expect(await query(h, 'SELECT v FROM kept')).toEqual([{ v: 'still here' }]);
        } finally {
          await h.stop();
        }
      } finally {
        squatter.kill();
      }
    },
    TIMEOUT,
  );

  it(
    'two projects starting their servers at once on the same preferred port each get a server on their own directory',
    async () => {
      // Both remember the same port (their `port` files), as two projects that both found the default free would: one
      // server binds it, the other must not mistake that server for its own (same credentials: it would work on the
      // other project's data), and starts on another port.
      const dirs = ['one', 'two'].map((n) => path.join(base, `race-${n}`, 'pg'));
      const port = await freePort();
      for (const d of dirs) {
        await mkdir(path.dirname(d), { recursive: true, mode: 0o755 });
        await writeFile(path.join(path.dirname(d), 'port'), `${port}\n`);
      }
      const handles = await Promise.all(dirs.map((dataDir) => startEmbeddedPostgres({ dataDir })));
      try {
        expect(new Set(handles.map((h) => h.port)).size).toBe(2);
        for (const [i, h] of handles.entries()) {
          expect(await query(h, 'SHOW data_directory')).toEqual([{ data_directory: dirs[i] }]);
        }
      } finally {
        await Promise.all(handles.map((h) => h.stop()));
      }
    },
    TIMEOUT,
  );

  it(
    'adopts the server a SIGKILLed process left running on the directory, instead of failing on its lock; the last live user stops it',
    async () => {
      // Another process starts the server and is killed without a chance to stop it: the postmaster lives on.
      const script = `
        const { startEmbeddedPostgres } = await import(${JSON.stringify(embeddedModule)});
        const h = await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)} });
        console.log('READY ' + h.port);
        setInterval(() => {}, 1000);
      `;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /READY (\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        child.on('exit', (code) => reject(new Error(`helper exited with ${code}: ${out}`)));
      });
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const postmaster = Number((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);

      try {
        const h = await startEmbeddedPostgres({ dataDir });
        expect(h.adopted).toBe(true);
        expect(h.port).toBe(port);
        expect(await query(h, 'SELECT v FROM kept')).toEqual([{ v: 'still here' }]);
        // The SIGKILLed starter no longer counts as a user: we are the last live one, so leaving stops the server.
        await h.stop();
        await expect(query(h, 'SELECT 1')).rejects.toThrow();
      } finally {
        // should it still run, stop it the way an operator would (SIGINT: fast shutdown), and wait for it to go
        if (alive(postmaster)) process.kill(postmaster, 'SIGINT');
        for (let i = 0; i < 100 && alive(postmaster); i++) await new Promise((r) => setTimeout(r, 100));
      }
      expect(alive(postmaster)).toBe(false);
    },
    TIMEOUT,
  );
});

async function query(h: EmbeddedPostgresHandle, text: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: h.url, connectionTimeoutMillis: 2000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query(text)).rows;
  } finally {
    await client.end();
  }
}

/** The uid/gid the server runs as: ours, or the postgres user's when we are root (see src/journal/embedded.ts). */
function serverUser(): { uid?: number; gid?: number } {
  if (userInfo().uid !== 0) return {};
  return { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
