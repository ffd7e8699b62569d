import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from '../support/build.js';
import { freshSchema, testDatabaseUrl } from '../support/postgres.js';
import { repoRoot, waitFor } from './fixtures/processes.js';

/**
 * The `skein` command line as a user runs it: the built binary (`node dist/cli/main.js`, built by the run's
 * globalSetup, test/support/build.ts, when the sources are newer than it) against the real PostgreSQL, each test on a
 * fresh schema (`--schema`), with worker processes of the same binary loading a TypeScript module
 * (test/integration/fixtures/cli-workflows.ts, through tsx). Output is not a terminal here, so live progress comes as
 * plain lines on stderr.
 */

const FIXTURE = 'test/integration/fixtures/cli-workflows.ts';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

let url = '';
const children: ChildProcess[] = [];
const cleanups: Array<() => Promise<void>> = [];

/** Runs `skein …args` to its end (at most 60 s). */
function skein(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: repoRoot, env: { ...process.env, DATABASE_URL: url, SKEIN_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`skein ${args.join(' ')} did not finish within 60 s:\n${stdout}\n${stderr}`));
    }, 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A long-running `skein …` (a worker, a watch): its output so far, and its exit. */
function spawnSkein(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: repoRoot, env: { ...process.env, DATABASE_URL: url, SKEIN_LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

/** A worker of the fixture module on `schema`, started (it says so in its log). */
async function startWorker(schema: string, workerId: string, env: Record<string, string> = {}) {
  const w = spawnSkein(['worker', '--workflows', FIXTURE, '--schema', schema, '--worker-id', workerId, '--poll-ms', '200'], env);
  await waitFor(`worker ${workerId} to start`, () => w.output().includes('worker started') || w.child.exitCode !== null, 30_000);
  expect(w.child.exitCode, w.output()).toBeNull();
  return w;
}

/** A fresh schema for one test, dropped after it. */
async function schemaForTest(): Promise<string> {
  const { schema, drop } = await freshSchema(url);
  cleanups.push(drop);
  return schema;
}

const parse = <T = any>(r: Result): T => {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
};

describe('skein CLI (the built binary, real PostgreSQL)', () => {
  beforeAll(async () => {
    url = await testDatabaseUrl();
  });
  afterEach(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    children.length = 0;
    while (cleanups.length) await cleanups.pop()!().catch((err) => console.warn('cleanup failed', err));
  });
  afterAll(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  });

  it('bad input exits 2 with one line on stderr; --help exits 0', async () => {
    const schema = await schemaForTest();
    const [help, listHelp, badStatus, badInput, unknownRun, noTarget, unknownCmd, badModule, badUrl, runIdAsWorkflowId, badSince, otherCopy] = await Promise.all([
      skein(['--help']),
      skein(['runs', 'list', '--help']),
      skein(['runs', 'list', '--status', 'bogus', '--schema', schema]),
      skein(['start', 'greet', '--input', 'ada', '--schema', schema]),
      skein(['runs', 'describe', 'no-such-run', '--schema', schema]),
      skein(['runs', 'cancel', '--schema', schema]),
      skein(['frobnicate']),
      skein(['worker', '--workflows', 'test/integration/fixtures/no-such-module.ts', '--schema', schema]),
      skein(['runs', 'list', '--database-url', 'postgres://u:secret@[bad', '--schema', schema]),
      skein(['start', 'greet', '--input', '"x"', '--workflow-id', 'r_AAAAAAAAAAAAAAAAAAAAAA', '--schema', schema]),
      skein(['runs', 'list', '--since', 'yesterday', '--schema', schema]),
      // a module built on skein's sources (tsconfig paths) while this skein runs from dist/: its commands would not be
      // recognised (every run blocked with "yielded object"), so it is refused up front
      skein(['replay', 'test/integration/fixtures', '--workflows', 'examples/operating/workflows.ts']),
    ]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/runs .*find, inspect and act on runs/);
    expect(listHelp.code).toBe(0);
    expect(listHelp.stdout).toContain('--status <status>');
    const oneLine = (r: Result, re: RegExp) => {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(re);
      expect(r.stdout).toBe('');
    };
    oneLine(badStatus, /^skein: UsageError: .*--status.*unknown status bogus/);
    oneLine(badInput, /^skein: UsageError: .*--input.*expected JSON/);
    oneLine(unknownRun, /^skein: UnknownRunError: unknown run 'no-such-run'/);
    oneLine(noTarget, /^skein: UsageError: skein runs cancel: give a run id, or filters/);
    oneLine(unknownCmd, /^skein: UsageError: unknown command 'frobnicate'/);
    oneLine(badModule, /^skein: ConfigError: cannot load --workflows .*no-such-module/);
    oneLine(badUrl, /^skein: ConfigError: --database-url is not a valid PostgreSQL URL/);
    expect(badUrl.stderr).not.toContain('secret');
    oneLine(runIdAsWorkflowId, /^skein: InvalidArgumentError: .*form of a run id/);
    oneLine(badSince, /^skein: UsageError: .*--since.*expected an ISO date-time/);
    oneLine(otherCopy, /^skein: ConfigError: --workflows examples\/operating\/workflows\.ts builds its workflows with another copy of skein \(\S+\/src\) than the one running \(\S+\/dist\)/);
  });

  it('start --wait, list (filters, --json, pages), count, describe, tree, history, result, signal, workers', async () => {
    const schema = await schemaForTest();
    const s = ['--schema', schema];
    await startWorker(schema, 'cli-w1');

    // start --wait: progress lines on stderr (not a terminal), the result on stdout
    const [ok, failed] = await Promise.all([
      skein(['start', 'greet', '--input', '"ada"', '--workflow-id', 'g-1', '--wait', ...s]),
      skein(['start', 'refuse', '--input', '"no"', '--workflow-id', 'r-1', '--wait', ...s]),
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^started g-1 \(run r_\S+, workflow greet\)\ncompleted \(took \S+\)\n"hello ada"\n$/);
    expect(ok.stderr).toMatch(/g-1 \[greet\] completed · tree: 1 completed/);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/r-1 \(run r_\S+\) failed:\nApplicationError: refused: no\n {2}at /);
    const [again, ...more] = await Promise.all([
      skein(['start', 'greet', '--input', '"ada"', '--workflow-id', 'g-1', '--json', ...s]),
      ...['g-2', 'g-3', 'g-4'].map((id) => skein(['start', 'greet', '--input', `"${id}"`, '--workflow-id', id, ...s])),
    ]);
    expect(parse(again!)).toMatchObject({ workflowId: 'g-1', created: false });
    for (const r of more) expect(r.code, r.stderr).toBe(0);
    expect((await skein(['runs', 'result', 'g-4', '--wait', '--timeout-ms', '20000', ...s])).stdout).toContain('"hello g-4"');

    // pages of 2: every g- run once, newest first
    const seen: Array<{ workflowId: string; createdAt: number }> = [];
    let cursor: string | null = null;
    do {
      const page: { runs: Array<{ workflowId: string; createdAt: number }>; nextCursor: string | null } = parse(
        await skein(['runs', 'list', '--prefix', 'g-', '--limit', '2', '--json', ...(cursor ? ['--cursor', cursor] : []), ...s]),
      );
      expect(page.runs.length).toBeLessThanOrEqual(2);
      seen.push(...page.runs);
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen.map((r) => r.workflowId).sort()).toEqual(['g-1', 'g-2', 'g-3', 'g-4']);
    expect(seen.map((r) => r.createdAt)).toEqual(seen.map((r) => r.createdAt).sort((a, b) => b - a));
    expect(seen[3]!.workflowId).toBe('g-1'); // started before the others

    const [failedList, table, counts, firstPage] = await Promise.all([
      skein(['runs', 'list', '--status', 'failed,blocked', '--json', ...s]),
      skein(['runs', 'list', '--workflow', 'greet', '--since', '10m', ...s]),
      skein(['runs', 'count', '--json', ...s]),
      skein(['runs', 'list', '--prefix', 'g-', '--limit', '3', ...s]),
    ]);
    expect(parse<{ runs: Array<{ workflowId: string }> }>(failedList).runs.map((r) => r.workflowId)).toEqual(['r-1']);
    expect(table.stdout.split('\n')[0]).toMatch(/^STATUS +WORKFLOW ID +WORKFLOW +STARTED +TOOK +RUN ID$/);
    expect(table.stdout).toMatch(/\ncompleted +g-1 +greet +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\S+ +r_\S+\n/);
    expect(parse(counts)).toEqual({ total: 5, byStatus: expect.objectContaining({ completed: 4, failed: 1, running: 0 }) });
    expect(firstPage.stdout).toMatch(/\nmore: skein runs list --prefix g- --limit 3 --schema \w+ --cursor \S+\n$/);

    // a tree: two children done, one waiting for a signal
    expect((await skein(['start', 'family', '--input', '["ann","bob"]', '--workflow-id', 'fam', ...s])).code).toBe(0);
    const tree = await waitFor('the family tree to wait on its signal', async () => {
      const t = await skein(['runs', 'tree', 'fam', ...s]);
      return t.stdout.includes("waits on signal 'go'") && t;
    });
    const lines = tree.stdout.split('\n');
    expect(lines[0]).toMatch(/^fam \[family\] running {2}r_\S+ {2}waits on child waiter fam\/waiting \(r_\S+\), since /);
    expect(lines).toContainEqual(expect.stringMatching(/^├─ fam\/waiting \[waiter\] running {2}r_\S+ {2}waits on signal 'go', since /));
    expect(lines).toContainEqual(expect.stringMatching(/^[├└]─ fam\/ann \[greet\] completed {2}r_\S+$/));
    expect(lines).toContainEqual(expect.stringMatching(/^[├└]─ fam\/bob \[greet\] completed {2}r_\S+$/));
    expect(tree.stdout).toContain('\ntree: 2 running, 2 completed\n');

    const [described, describedJson, history, historyJson, notYet, workers] = await Promise.all([
      skein(['runs', 'describe', 'fam', ...s]),
      skein(['runs', 'describe', 'fam', '--json', ...s]),
      skein(['runs', 'history', 'fam', ...s]),
      skein(['runs', 'history', 'fam', '--json', ...s]),
      skein(['runs', 'result', 'fam', ...s]),
      skein(['workers', ...s]),
    ]);
    expect(described.stdout).toMatch(/^run {10}r_\S+\nworkflow id  fam\nworkflow {5}family\nstatus {7}running\n/);
    expect(described.stdout).toMatch(/\nwaits on \(1, child first\)\n {2}1 {5}child waiter fam\/waiting \(r_\S+\), since /);
    expect(described.stdout).toMatch(/\nchildren \(3\)\n {2}STATUS +WORKFLOW ID +WORKFLOW +RUN ID\n/);
    expect(parse(describedJson)).toMatchObject({ status: 'running', waitKind: 'child', openWaits: [{ kind: 'child', childWorkflowId: 'fam/waiting' }] });
    expect(history.stdout).toMatch(/^fam \[family\] run r_\S+, 6 events\nSEQ +AT +EVENT +DETAILS\n1 +\S+ \S+ +RunStarted +family \(workflow id fam\) input \["ann","bob"\]\n/);
    expect(history.stdout).toMatch(/\n6 +\S+ \S+ +ChildScheduled +path 1: child waiter fam\/waiting \(r_\S+\)\n/);
    expect(parse(historyJson)).toMatchObject({ format: 'skein-history/1', workflowId: 'fam', workflow: 'family' });
    expect(notYet.code).toBe(1);
    expect(notYet.stderr).toMatch(/^fam \(run r_\S+\) is running: no result yet \(--wait to wait for it\)\n$/);

    // a signal by workflow id, then the result of the whole tree
    const sent = await skein(['runs', 'signal', 'fam/waiting', 'go', '{"ok":true}', ...s]);
    expect(sent.stdout).toMatch(/^sent 'go' to fam\/waiting \(run r_\S+\), signal id \S+\n$/);
    const result = parse(await skein(['runs', 'result', 'fam', '--wait', '--timeout-ms', '20000', '--json', ...s]));
    expect(result).toMatchObject({ workflowId: 'fam', status: 'completed', result: { greetings: ['hello ann', 'hello bob'], waited: { got: { ok: true } } } });

    // the worker is visible
    expect(workers.stdout.split('\n')[0]).toMatch(/^STATUS +WORKER ID +HOST +PID +QUEUES +WORKFLOWS +ACTIVITIES +RUNS +STARTED +LAST SEEN$/);
    expect(workers.stdout).toMatch(/\nalive +cli-w1 +\S+ +\d+ +default +greet,refuse,waiter \+2 +hello,shout +\d+\/1000 /);
  });

  it('cancel and terminate (one run; many by filter, dry run first), retry, list --watch', async () => {
    const schema = await schemaForTest();
    const s = ['--schema', schema];
    await startWorker(schema, 'cli-w2');
    const watch = spawnSkein(['runs', 'list', '--workflow', 'waiter', '--watch', '--interval-ms', '500', ...s]);
    // one after another: the listing is newest first, so the order of their creation is what the test reads
    for (const id of ['w-1', 'w-2', 'w-3']) {
      const r = await skein(['start', 'waiter', '--workflow-id', id, ...s]);
      expect(r.code, r.stderr).toBe(0);
      await new Promise((res) => setTimeout(res, 5)); // distinct creation times (ms clock)
    }
    await waitFor('the watch to show the three runs', () => ['w-1', 'w-2', 'w-3'].every((id) => new RegExp(`running +${id} \\[waiter\\]`).test(watch.output())));

    const notSure = await skein(['runs', 'cancel', '--status', 'running', '--workflow', 'waiter', ...s]);
    expect(notSure.code).toBe(2);
    expect(notSure.stderr).toContain('look first with --dry-run, then pass --yes');
    const dry = await skein(['runs', 'cancel', '--status', 'running', '--workflow', 'waiter', '--dry-run', ...s]);
    expect(dry.stdout).toMatch(/^would cancel 3 runs \(dry run: nothing changed\):\nSTATUS .*\nrunning +w-3 .*\nrunning +w-2 .*\nrunning +w-1 /);
    expect(parse(await skein(['runs', 'count', '--status', 'running', '--json', ...s]))).toMatchObject({ total: 3 });

    const cancelled = await skein(['runs', 'cancel', 'w-1', '--reason', 'customer asked', '--grace-ms', '0', ...s]);
    expect(cancelled.stdout).toMatch(/^w-1 \(run r_\S+\): cancelled\n$/);
    const terminated = await skein(['runs', 'terminate', 'w-2', '--reason', 'bad input', ...s]);
    expect(terminated.stdout).toMatch(/^w-2 \(run r_\S+\): terminated\n$/);
    const bulk = parse<{ matched: number; done: string[] }>(await skein(['runs', 'cancel', '--workflow', 'waiter', '--status', 'running', '--reason', 'cleanup', '--grace-ms', '0', '--yes', '--json', ...s]));
    expect(bulk).toMatchObject({ matched: 1, done: [expect.stringMatching(/^r_/)] });
    const closedAlready = await skein(['runs', 'cancel', 'w-1', ...s]);
    expect(closedAlready.code).toBe(2);
    expect(closedAlready.stderr).toMatch(/^skein: RunClosedError: cannot cancel run r_\S+: it is cancelled\n$/);
    await waitFor('the watch to show the closes', () => /cancelled +w-1 \[waiter\] r_\S+ +CancelledError: customer asked/.test(watch.output()) && /terminated +w-2 /.test(watch.output()));
    watch.child.kill('SIGINT');
    expect(await watch.exited).toBe(0);

    // retry the terminated run: a new run of the same workflow id and input, which then completes
    const retried = await skein(['runs', 'retry', 'w-2', '--reason', 'fixed the input', ...s]);
    expect(retried.stdout).toMatch(/^retrying w-2: new run (r_\S+) \(retry of r_\S+, which was terminated\)\n$/);
    const chain = parse<{ runs: Array<{ status: string }> }>(await skein(['runs', 'list', '--workflow-id', 'w-2', '--json', ...s]));
    expect(chain.runs.map((r) => r.status)).toEqual(['running', 'terminated']);
    await skein(['runs', 'signal', 'w-2', 'go', '"again"', ...s]); // to the retry (the newest run of w-2); buffered until it waits
    const done = await skein(['runs', 'result', 'w-2', '--wait', '--timeout-ms', '20000', ...s]);
    expect(done.stdout).toMatch(/\n\{\n {2}"got": "again"\n\}\n$/);
    const started = parse<{ events: Array<{ type: string; payload: { retry?: { reason: string } } }> }>(await skein(['runs', 'history', 'w-2', '--json', ...s]));
    expect(started.events[0]!.payload.retry).toMatchObject({ reason: 'fixed the input' });
  });

  it('resume after fixing a blocked workflow: a second worker process has the fix', async () => {
    const schema = await schemaForTest();
    const s = ['--schema', schema];
    const buggy = await startWorker(schema, 'cli-buggy');
    const blocked = await skein(['start', 'fragile', '--input', '{"n":4}', '--workflow-id', 'frag', '--wait', ...s]);
    expect(blocked.code).toBe(1);
    expect(blocked.stderr).toMatch(/frag \(run r_\S+\) is blocked .*:\nTypeError: Cannot read properties of undefined \(reading 'factor'\)\n {2}at .*cli-workflows\.ts/);

    const described = await skein(['runs', 'describe', 'frag', ...s]);
    expect(described.stdout).toMatch(/\nstatus {7}blocked\n/);
    expect(described.stdout).toMatch(/\nwaiting for {3}an operator, since \S+ \(\S+ ago\): the run is blocked by a bug or a code change;\n/);
    expect(described.stdout).toMatch(/\nerror {9}TypeError: Cannot read properties of undefined \(reading 'factor'\)\n {16}at .*cli-workflows\.ts:\d+/);
    expect(parse<{ runs: Array<{ workflowId: string }> }>(await skein(['runs', 'list', '--status', 'blocked', '--json', ...s])).runs.map((r) => r.workflowId)).toEqual(['frag']);

    buggy.child.kill('SIGTERM');
    expect(await buggy.exited).toBe(0);
    await startWorker(schema, 'cli-fixed', { SKEIN_CLI_FIXED: '1' });
    const resumed = await skein(['runs', 'resume', 'frag', '--reason', 'deployed the fix', ...s]);
    expect(resumed.stdout).toMatch(/^resumed frag \(run r_\S+\): due now/);
    const result = parse(await skein(['runs', 'result', 'frag', '--wait', '--timeout-ms', '20000', '--json', ...s]));
    expect(result).toMatchObject({ status: 'completed', result: { greeting: 'hello n4', doubled: 8 } });
    const history = await skein(['runs', 'history', 'frag', ...s]);
    expect(history.stdout).toMatch(/\n2 +\S+ \S+ +RunBlocked +TypeError: .*\n3 +\S+ \S+ +RunResumed +deployed the fix\n/);
    const again = await skein(['runs', 'resume', 'frag', ...s]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^skein: RunStateError: cannot resume run r_\S+: it is completed/);
  });

  it('replay: exported histories replay against the code (exit 0); a changed workflow diverges (exit 1: file, seq, both commands)', async () => {
    const schema = await schemaForTest();
    const s = ['--schema', schema];
    await startWorker(schema, 'cli-w3');
    const dir = await mkdtemp(path.join(tmpdir(), 'skein-cli-histories-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await Promise.all(
      ([['greet', 'g-1', '"ada"'], ['refuse', 'r-1', '"no"']] as const).map(async ([wf, id, input]) => {
        await skein(['start', wf, '--input', input, '--workflow-id', id, '--wait', ...s]);
        const h = await skein(['runs', 'history', id, '--json', ...s]);
        await writeFile(path.join(dir, `${id}.json`), h.stdout);
      }),
    );
    const same = await skein(['replay', dir, '--workflows', FIXTURE]);
    expect(same.code, same.stdout + same.stderr).toBe(0);
    expect(same.stdout).toMatch(/^ok +\S+g-1\.json +greet g-1 \(run r_\S+\): 4 events, completed\nok +\S+r-1\.json +refuse r-1 \(run r_\S+\): \d+ events, failed\n\n2 histories: 2 ok\n$/);

    const changed = await skein(['replay', dir, '--workflows', FIXTURE], { SKEIN_CLI_V2: '1' });
    expect(changed.code).toBe(1);
    expect(changed.stdout).toContain(
      `FAIL  ${path.join(dir, 'g-1.json')}  greet g-1 (run `,
    );
    expect(changed.stdout).toMatch(/: diverges at seq 2\n {6}journaled: ActivityScheduled\(path 0, activity 'hello', input hash \w+\)\n {6}code now: {2}ActivityScheduled\(path 0, activity 'shout', input hash \w+\)\n/);
    expect(changed.stdout).toMatch(/\n2 histories: 1 ok, 1 failed\n$/);
    const one = await skein(['replay', path.join(dir, 'g-1.json'), '--workflows', FIXTURE, '--json'], { SKEIN_CLI_V2: '1' });
    expect(one.code).toBe(1);
    expect(JSON.parse(one.stdout)).toMatchObject([{ ok: false, workflowId: 'g-1', error: { name: 'NonDeterminismError', seq: 2 } }]);
    const missing = await skein(['replay', path.join(dir, 'nope'), '--workflows', FIXTURE]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^skein: UsageError: no such file or folder: /);
  });

  it('dashboard: serves the front-end the build bundled (dist/dashboard/assets: it cannot bundle one), exits 0 on SIGTERM', async () => {
    const schema = await schemaForTest();
    const d = spawnSkein(['dashboard', '--port', '0', '--schema', schema]);
    await waitFor('the dashboard to listen', () => /skein dashboard on http/.test(d.output()) || d.child.exitCode !== null, 30_000);
    const base = /skein dashboard on (http:\/\/\S+)/.exec(d.output())?.[1];
    expect(base, d.output()).toBeDefined();
    const page = await fetch(base!);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('/assets/app.js');
    const js = await fetch(new URL('/assets/app.js', base));
    expect(await js.text()).toBe(await readFile(path.join(repoRoot, 'dist/dashboard/assets/app.js'), 'utf8'));
    d.child.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });
});
