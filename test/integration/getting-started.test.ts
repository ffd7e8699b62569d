/**
 * docs/getting-started.md, checked and run. Every code block of the guide is either a file of
 * examples/getting-started quoted verbatim (a `<!-- file: … -->` line names it; tsc compiles it with the project, the
 * example's test runs with the suite) or a shell command this test knows; the commands are then run as the guide says,
 * in a copy of the example project outside the repository, on the embedded PostgreSQL: a worker (`skein worker`, the
 * built CLI as npx runs it, on the TypeScript module, which it loads through tsx), the client script from the project
 * folder and from a folder below it (both find the same server), the worker in its own process; `psql`'s URL
 * connects; the server stops when the last process leaves. The project's `skein` is this repository's build (dist/,
 * built by the run's globalSetup, test/support/build.ts), linked as `npm install` would install it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const GUIDE = join(ROOT, 'docs', 'getting-started.md');
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
/** A project's `skein` command, what npx runs: node_modules/.bin/skein, the package's bin (dist/cli/main.js). */
const SKEIN_BIN = (proj: string) => join(proj, 'node_modules', '.bin', 'skein');

interface Block {
  lang: string;
  body: string;
  file: string | null;
}

function blocks(md: string): Block[] {
  const out: Block[] = [];
  const re = /(?:<!-- file: (\S+) -->\n)?```(\w*)\n([\s\S]*?)\n```/g;
  for (const m of md.matchAll(re)) out.push({ file: m[1] ?? null, lang: m[2]!, body: m[3]! });
  return out;
}

/** The shell commands the guide may show, and what this test does with each. */
const COMMANDS: Record<string, 'setup' | 'run' | 'checked'> = {
  'mkdir my-skein-app && cd my-skein-app': 'setup', // (the consumer test installs the packed package for real)
  'npm init -y': 'setup',
  'npm pkg set type=module': 'setup',
  'npm install skein': 'setup',
  'npm install --save-dev typescript tsx @types/node vitest': 'setup',
  'npx skein worker --workflows ./src/workflows.ts': 'run',
  'npx tsx src/start.ts': 'run',
  'npx tsx src/worker.ts': 'run',
  'psql postgres://postgres:skein@127.0.0.1:54329/skein': 'checked', // connected to below, on the port in use
  'DATABASE_URL=postgres://app:secret@db.internal:5432/app npx skein worker --workflows ./src/workflows.ts': 'checked', // the same command
  'DATABASE_URL=postgres://app:secret@db.internal:5432/app npx tsx src/start.ts': 'checked',
  'npx vitest run': 'checked', // examples/**/*.test.ts run with skein's suite
};

describe('docs/getting-started.md', () => {
  const md = readFileSync(GUIDE, 'utf8');

  it('quotes the example project verbatim, and shows only commands this test knows', () => {
    const all = blocks(md);
    expect(all.length).toBeGreaterThan(8);
    const quoted: string[] = [];
    for (const b of all) {
      if (b.lang === 'ts' || b.lang === 'json') {
        expect(b.file, `a ${b.lang} block of the guide quotes no file:\n${b.body.slice(0, 200)}`).not.toBeNull();
      }
      if (b.file) {
        expect(b.body, `${b.file} as quoted in the guide`).toBe(readFileSync(join(ROOT, b.file), 'utf8').replace(/\n$/, ''));
        quoted.push(b.file);
      }
      if (b.lang === 'sh') for (const line of b.body.split('\n')) expect(COMMANDS[line], `unknown command in the guide: ${line}`).toBeDefined();
    }
    expect(quoted.sort()).toEqual(
      ['package.json', 'tsconfig.json', 'src/workflows.ts', 'src/start.ts', 'src/worker.ts', 'test/onboarding.test.ts'].map((f) => `examples/getting-started/${f}`).sort(),
    );
    // The README links the guide first.
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const firstDocLink = readme.match(/\]\((docs\/[^)]+)\)/)?.[1];
    expect(firstDocLink).toBe('docs/getting-started.md');
  });

  describe('run as the guide says, on the embedded PostgreSQL', () => {
    let tmp: string;
    let proj: string;
    const procs: ChildProcess[] = [];

    beforeAll(async () => {
      tmp = await mkdtemp(join(tmpdir(), 'skein-guide-'));
      await chmod(tmp, 0o755); // the embedded server's user (when we are root) must reach its data directory
      proj = join(tmp, 'my-skein-app');
      await mkdir(join(proj, 'scripts'), { recursive: true });
      for (const f of ['package.json', 'tsconfig.json', 'src']) await cp(join(ROOT, 'examples', 'getting-started', f), join(proj, f), { recursive: true });
      // `npm install skein`, stood in for by a link to this repository (as `npm link` makes; the consumer test installs
      // the packed package): its package.json sends 'skein' to dist/, and its bin, linked as npm links it, is
      // dist/cli/main.js. So the project's modules, its scripts and `skein worker` all run one copy of skein, the built
      // one (the built CLI refuses a --workflows module built on another copy). tsx, which `skein worker` needs for a
      // .ts module and the guide's scripts run with, from the repository.
      await mkdir(join(proj, 'node_modules', '.bin'), { recursive: true });
      await symlink(ROOT, join(proj, 'node_modules', 'skein'), 'dir');
      await symlink(join('..', 'skein', 'dist', 'cli', 'main.js'), SKEIN_BIN(proj));
      await symlink(join(ROOT, 'node_modules', 'tsx'), join(proj, 'node_modules', 'tsx'), 'dir');
    }, 60_000);

    /**
     * Each process leads a group of its own (tsx runs the script in a child of its own): kill the whole group, or a
     * failed test would leave a worker running. In afterAll, and on the test process's exit should afterAll not run.
     */
    function killGroups(): void {
      for (const p of procs) {
        try {
          process.kill(-p.pid!, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    process.once('exit', killGroups);

    afterAll(async () => {
      killGroups();
      process.removeListener('exit', killGroups);
      // Should the server still run (a failed test), stop it: it is detached and would outlive the test.
      const pidFile = join(proj ?? '', '.skein', 'pg', 'postmaster.pid');
      if (proj && existsSync(pidFile)) {
        try {
          process.kill(Number(readFileSync(pidFile, 'utf8').split('\n')[0]), 'SIGQUIT');
        } catch {
          // gone
        }
      }
      if (tmp) await rm(tmp, { recursive: true, force: true });
    }, 60_000);

    /** The environment of a user's shell with nothing of skein's set (and this test's own PostgreSQL unset). */
    function env(): NodeJS.ProcessEnv {
      const e: NodeJS.ProcessEnv = { ...process.env, SKEIN_LOG_LEVEL: 'info' };
      for (const k of ['DATABASE_URL', 'SKEIN_HOME', 'SKEIN_SCHEMA', 'REDIS_URL', 'NODE_OPTIONS']) delete e[k];
      return e;
    }

    /**
     * `npx <args>` as the guide writes it: `skein` is the project's bin (the built CLI, run by node as npx runs it),
     * `tsx` is tsx. Detached: each leads a process group of its own (see killGroups).
     */
    function npx(command: string, cwd: string): ChildProcess {
      const [tool, ...args] = command.replace(/^npx /, '').split(' ');
      const [file, argv] = tool === 'skein' ? [process.execPath, [SKEIN_BIN(proj), ...args]] : [TSX, args];
      const p = spawn(file, argv, { cwd, env: env(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      procs.push(p);
      return p;
    }

    function output(p: ChildProcess): { lines: string[]; err: string[] } {
      const o = { lines: [] as string[], err: [] as string[] };
      let buf = '';
      p.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const parts = buf.split('\n');
        buf = parts.pop()!;
        o.lines.push(...parts);
      });
      p.stderr!.on('data', (d: Buffer) => o.err.push(d.toString()));
      return o;
    }

    async function until<T>(what: string, get: () => T | undefined, ms: number): Promise<T> {
      const end = Date.now() + ms;
      for (;;) {
        const v = get();
        if (v !== undefined) return v;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }

    function exited(p: ChildProcess): Promise<number | null> {
      return p.exitCode !== null ? Promise.resolve(p.exitCode) : new Promise((r) => p.once('exit', (code) => r(code)));
    }

    /** Runs the client script from `cwd`; returns its output lines. */
    async function client(cwd: string, command = 'npx tsx src/start.ts'): Promise<string[]> {
      const script = cwd === proj ? command : command.replace('src/', '../src/');
      const p = npx(script, cwd);
      const o = output(p);
      const code = await exited(p);
      expect(code, `${script} failed:\n${o.err.join('')}`).toBe(0);
      return o.lines;
    }

    it('a worker, then a client from the project folder and from a folder below it, share the project\'s embedded server', async () => {
      const dataDir = join(proj, '.skein', 'pg');
      const worker = npx('npx skein worker --workflows ./src/workflows.ts', proj);
      const wo = output(worker);
      const logs = () => wo.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      const open = await until('the worker to open the journal', () => logs().find((l) => l.msg === 'journal open'), 120_000).catch((err) => {
        throw new Error(`${(err as Error).message}\n${wo.lines.join('\n')}\n${wo.err.join('')}`);
      });
      expect(open).toMatchObject({ embedded: true, dataDir });
      expect(String(open.database)).toMatch(/^postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/skein$/);
      expect(open.journal).toBe(`embedded PostgreSQL at ${open.database} (data in ${dataDir}; its password is 'skein')`);
      await until('the worker to start', () => logs().find((l) => l.msg === 'worker started'), 30_000);

      for (const cwd of [proj, join(proj, 'scripts')]) {
        const lines = await client(cwd);
        expect(lines[0]).toBe(`journal: ${open.journal}`);
        expect(lines[1]).toMatch(/^started onboarding-\d+$/);
        expect(lines[2]).toMatch(/^result: \{"approvedBy":"grace","mail":"mail-a_[\w-]{22}"\}$/);
      }
      expect(existsSync(join(proj, 'scripts', '.skein'))).toBe(false); // no second cluster below the project

      // psql's URL: the printed one with the documented password.
      const url = String(open.database).replace('***', 'skein');
      expect(md).toContain(`psql ${url.replace(/:\d+\//, ':54329/')}`);
      const db = new pg.Client({ connectionString: url });
      await db.connect();
      try {
        const r = await db.query<{ n: string }>("SELECT count(*) AS n FROM skein.runs WHERE workflow = 'onboarding' AND status = 'completed'");
        expect(Number(r.rows[0]!.n)).toBe(2);
      } finally {
        await db.end();
      }

      worker.kill('SIGTERM');
      expect(await exited(worker)).toBe(0);
    }, 240_000);

    it('the worker in its own process (src/worker.ts) serves the same runs, logging to its file; the server stops with the last process', async () => {
      const worker = npx('npx tsx src/worker.ts', proj);
      const wo = output(worker);
      const line = await until('src/worker.ts to start', () => wo.lines.find((l) => l.startsWith('worker ')), 120_000).catch((err) => {
        throw new Error(`${(err as Error).message}\n${wo.err.join('')}`);
      });
      expect(line).toMatch(/^worker \S+ on embedded PostgreSQL at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/skein/);
      const lines = await client(proj);
      expect(lines[2]).toMatch(/^result: \{"approvedBy":"grace"/);
      worker.kill('SIGTERM');
      expect(await exited(worker)).toBe(0);
      expect(existsSync(join(proj, 'worker.log'))).toBe(true);
      // Nobody uses the server any more: the last one to leave stopped it.
      await until('the embedded server to stop', () => (existsSync(join(proj, '.skein', 'pg', 'postmaster.pid')) ? undefined : true), 30_000);
      expect(JSON.parse(await readFile(join(proj, 'package.json'), 'utf8')).type).toBe('module');
    }, 240_000);
  });
});
