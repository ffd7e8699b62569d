/**
 * skein as a user gets it: `npm pack`, then `npm install` of the tarball into two fresh projects outside the
 * repository, type-checked with strict TypeScript against the published .d.ts files (`skipLibCheck: false`,
 * `exactOptionalPropertyTypes: true`) and run with plain node:
 *  - an ES module project (`"type": "module"`) using skein and skein/testing, the fuzzer included (fast-check
 *    installed);
 *  - a CommonJS project (no `"type"`, `module: nodenext`) that loads skein through `require` (Node's require(esm),
 *    see `engines`) and skein/testing without fast-check installed.
 * The tarball's contents are checked too: what the README and the docs link to is in it, the source maps resolve.
 * Nothing here imports from src/.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const NPM_ENV = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };

/** The ESM consumer: the testing toolkit end to end, plus the runtime on the memory journal. */
const ESM_PROGRAM = `
import fc from 'fast-check';
import { activity, child, Client, defineActivity, defineSignal, MemoryJournal, NonDeterminismError, random, sleep, uuid, waitForSignal, Worker, workflow } from 'skein';
import { createTestEnv, fuzzWorkflow, FuzzFailure, replayHistory, type ExportedHistory } from 'skein/testing';

const DAY = 24 * 60 * 60 * 1000;
const charge = defineActivity('charge', async (n: number) => n * 2);
const leaf = workflow('leaf', function* (n: number) {
  return yield* activity(charge, n);
});
const reminder = workflow('reminder', function* (n: number) {
  yield* sleep(DAY);
  const doubled = yield* child(leaf, n);
  const r = yield* random();
  return { doubled, inRange: r >= 0 && r < 1 };
});
const coin = workflow('coin', function* () {
  return Math.random() < 0.5 ? yield* activity(charge, 1) : yield* activity(charge, 2);
});
const tagged = workflow('tagged', function* () {
  return yield* uuid();
});

const out: Record<string, unknown> = {};

// The runtime: a worker and a client on the memory journal, a typed signal, the activity context.
const approve = defineSignal<{ by: string }>('approve');
const greet = defineActivity('greet', async (name: string, ctx) => ({ text: 'hello ' + name, attempt: ctx.attempt, key: ctx.activityId.slice(0, 2) }));
const hello = workflow('hello', function* (name: string) {
  const { by } = yield* waitForSignal(approve);
  return { ...(yield* activity(greet, name)), by };
});
const journal = new MemoryJournal();
const worker = new Worker({ workflows: [hello], activities: [greet], journal, pollIntervalMs: 10 });
worker.start();
const client = new Client(journal);
const run = await client.start(hello, 'ada');
await client.signal(run.runId, approve, { by: 'bob' });
out.hello = await client.result(run, { timeoutMs: 5000 });
await worker.shutdown();

const tags = [];
for (const seed of [1, 1, 2]) tags.push(await createTestEnv({ workflows: [tagged], seed }).execute(tagged, null));
out.uuids = { sameSeedSame: tags[0] === tags[1], otherSeedOther: tags[0] !== tags[2] };
const env = createTestEnv({ workflows: [reminder, leaf], activities: [charge] });
const t0 = env.now();
const wall = Date.now();
const ref = await env.start(reminder, 21);
out.result = await env.result(ref);
out.virtualDays = (env.now() - t0) / DAY;
out.realMsUnderASecond = Date.now() - wall < 1000;

const history: ExportedHistory = JSON.parse(JSON.stringify(await env.exportHistory(ref.runId)));
out.replay = (await replayHistory([reminder, leaf], history)).status;
const changed = workflow('reminder', function* (n: number) {
  yield* sleep(DAY);
  return yield* child(leaf, n + 1);
});
try {
  await replayHistory([changed, leaf], history);
  out.changed = 'replayed';
} catch (e) {
  out.changed = e instanceof NonDeterminismError ? { seq: e.seq, journaled: e.journaled, issued: e.issued } : String(e);
}

const stats = await fuzzWorkflow(reminder, { workflows: [leaf], input: fc.integer({ min: 0, max: 100 }), outcomes: { charge: fc.integer() }, numRuns: 25 });
out.fuzzCases = stats.cases;
try {
  await fuzzWorkflow(coin, { outcomes: { charge: fc.integer() }, numRuns: 25 });
  out.coin = 'passed';
} catch (e) {
  out.coin = e instanceof FuzzFailure ? { failure: 'FuzzFailure', namesTheDirectRead: e.message.includes('read Math.random() directly at main.js:'), schedule: e.schedule.length > 0 } : String(e);
}
console.log(JSON.stringify(out));
`;

/** The CommonJS consumer: compiled to require() calls; no fast-check installed. */
const CJS_PROGRAM = `
import { activity, Client, defineActivity, defineSignal, MemoryJournal, waitForSignal, Worker, workflow, type ActivityContext } from 'skein';
import { createTestEnv } from 'skein/testing';

const approve = defineSignal<{ by: string }>('approve');
const greet = defineActivity('greet', async (name: string, ctx: ActivityContext) => \`hello \${name} (attempt \${ctx.attempt})\`);
const hello = workflow('hello', function* (name: string) {
  const { by } = yield* waitForSignal(approve);
  const text = yield* activity(greet, name);
  return { text, by };
});

async function main(): Promise<void> {
  const journal = new MemoryJournal();
  const worker = new Worker({ workflows: [hello], activities: [greet], journal, pollIntervalMs: 10 });
  worker.start();
  const client = new Client(journal);
  const ref = await client.start(hello, 'ada', { workflowId: 'hello-ada' });
  await client.signal(ref.runId, approve, { by: 'bob' });
  const result = await client.result(ref, { timeoutMs: 5000 });
  await worker.shutdown();

  const env = createTestEnv({ workflows: [hello], activities: [greet] });
  const envRef = await env.start(hello, 'eve');
  await env.signal(envRef.runId, approve, { by: 'test' });
  const envResult = await env.result(envRef);
  console.log(JSON.stringify({ result, envResult, commonjs: typeof module !== 'undefined' && typeof require === 'function' }));
}
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
`;

const STRICT = { strict: true, skipLibCheck: false, exactOptionalPropertyTypes: true, types: ['node'], lib: ['ES2023'], target: 'ES2022', outDir: '.' };

let tmp: string;
let tarball: string;
let packed: string[];

async function npmInstall(dir: string, specs: string[]): Promise<void> {
  await run('npm', ['install', '--prefer-offline', '--ignore-scripts', '--no-package-lock', ...specs], { cwd: dir, env: NPM_ENV, maxBuffer: 1 << 24 });
}

async function versionOf(pkg: string): Promise<string> {
  return (JSON.parse(await readFile(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'skein-consumer-'));
  // The package, staged outside the repository (the repo's own dist/ may be in use by other tests): what `files`
  // ships, the build configuration, and the repository's node_modules for the build.
  const pkg = join(tmp, 'pkg');
  await mkdir(pkg);
  for (const f of ['package.json', 'README.md', 'tsconfig.json', 'tsconfig.build.json', 'src', 'docs', 'examples']) await cp(join(ROOT, f), join(pkg, f), { recursive: true });
  await symlink(join(ROOT, 'node_modules'), join(pkg, 'node_modules'), 'dir');
  try {
    await run(process.execPath, [TSC, '-p', join(pkg, 'tsconfig.build.json')], { cwd: pkg, maxBuffer: 1 << 24 });
  } catch (err) {
    // tsc exits non-zero on any type error but still emits. Type errors are `npm test`'s typecheck's business; this
    // test fails only on errors in the API a user imports, and runs the emitted code.
    const out = String((err as { stdout?: string }).stdout ?? err);
    const mine = out.split('\n').filter((l) => /^src\/(testing\/|index\.ts|client\/|runtime\/)/.test(l));
    if (mine.length) throw new Error(`the build has errors in the shipped API:\n${mine.join('\n')}`);
  }
  // (prepack builds; it was done above, with the staged tsconfig)
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: pkg, env: NPM_ENV, maxBuffer: 1 << 24 });
  const info = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  tarball = join(tmp, info[0]!.filename);
  packed = info[0]!.files.map((f) => f.path).sort();

  const typesNode = `@types/node@${await versionOf('@types/node')}`;
  const esm = join(tmp, 'esm');
  await mkdir(esm);
  await writeFile(join(esm, 'package.json'), JSON.stringify({ name: 'esm-consumer', private: true, type: 'module' }));
  await writeFile(join(esm, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...STRICT, module: 'NodeNext', moduleResolution: 'NodeNext' }, files: ['main.ts'] }));
  await writeFile(join(esm, 'main.ts'), ESM_PROGRAM);
  await npmInstall(esm, [tarball, typesNode, `fast-check@${await versionOf('fast-check')}`]);

  const cjs = join(tmp, 'cjs');
  await mkdir(cjs);
  await writeFile(join(cjs, 'package.json'), JSON.stringify({ name: 'cjs-consumer', private: true }));
  await writeFile(join(cjs, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...STRICT, module: 'NodeNext', moduleResolution: 'NodeNext' }, files: ['main.ts'] }));
  await writeFile(join(cjs, 'main.ts'), CJS_PROGRAM);
  await npmInstall(cjs, [tarball, typesNode]);
}, 600_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Runs `node file` in `dir` with skein's logs silenced; returns the last line of stdout, parsed. */
async function runNode(dir: string, args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, args, { cwd: dir, env: { ...process.env, SKEIN_LOG_LEVEL: 'silent' } });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

async function typecheck(dir: string): Promise<string> {
  const r = await run(process.execPath, [TSC, '-p', join(dir, 'tsconfig.json')], { cwd: dir }).catch((e: { stdout?: string }) => e);
  return r.stdout ?? '';
}

describe('the npm package', () => {
  it('ships the build, its sources (the maps resolve), the docs and examples the README links to, and nothing else', async () => {
    for (const f of ['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/testing/index.js', 'dist/testing/index.d.ts', 'dist/cli/main.js', 'src/index.ts', 'docs/semantics.md', 'docs/testing.md']) {
      expect(packed, f).toContain(f);
    }
    expect(packed.filter((f) => /^(test|bench|node_modules|\.skein)\//.test(f))).toEqual([]);
    // Every relative link of the shipped Markdown points at a shipped file.
    const broken: string[] = [];
    for (const md of packed.filter((f) => f.endsWith('.md'))) {
      const text = await readFile(join(tmp, 'pkg', md), 'utf8');
      for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        const path = normalize(join(dirname(md), target));
        if (!packed.includes(path) && !packed.some((f) => f.startsWith(path + '/'))) broken.push(`${md} -> ${target}`);
      }
    }
    expect(broken).toEqual([]);
    // Every source map names sources that are in the package.
    const unresolved: string[] = [];
    for (const map of packed.filter((f) => f.endsWith('.map'))) {
      const { sources } = JSON.parse(await readFile(join(tmp, 'pkg', map), 'utf8')) as { sources: string[] };
      for (const s of sources) if (!packed.includes(normalize(join(dirname(map), s)))) unresolved.push(`${map} -> ${s}`);
    }
    expect(unresolved).toEqual([]);
    // Public types need only declared dependencies (and Node's): pg's types come from @types/pg, a dependency.
    const manifest = JSON.parse(await readFile(join(tmp, 'pkg', 'package.json'), 'utf8'));
    expect(Object.keys(manifest.dependencies)).toContain('@types/pg');
    expect(manifest.exports['.'].default).toBe('./dist/index.js');
  });

  it('an ES module project type-checks strictly against it and runs a worker, a client and skein/testing', async () => {
    const dir = join(tmp, 'esm');
    expect(await typecheck(dir), 'the ESM consumer should type-check against the published types').toBe('');
    const out = await runNode(dir, ['main.js']);
    expect(out.hello).toEqual({ text: 'hello ada', attempt: 1, key: 'a_', by: 'bob' });
    expect(out.uuids).toEqual({ sameSeedSame: true, otherSeedOther: true });
    expect(out.result).toEqual({ doubled: 42, inRange: true });
    expect(out.virtualDays).toBe(1);
    expect(out.realMsUnderASecond).toBe(true);
    expect(out.replay).toBe('completed');
    expect((out.changed as { seq: number }).seq).toBe(4);
    expect(out.fuzzCases).toBe(25);
    expect(out.coin).toEqual({ failure: 'FuzzFailure', namesTheDirectRead: true, schedule: true });
  }, 120_000);

  it('a CommonJS project requires it (require(esm)), type-checks strictly and runs, without fast-check installed', async () => {
    const dir = join(tmp, 'cjs');
    expect(existsSync(join(dir, 'node_modules', 'fast-check'))).toBe(false);
    expect(await typecheck(dir), 'the CommonJS consumer should type-check against the published types').toBe('');
    const main = await readFile(join(dir, 'main.js'), 'utf8');
    expect(main).toContain('require("skein")');
    const out = await runNode(dir, ['main.js']);
    expect(out).toEqual({ result: { text: 'hello ada (attempt 1)', by: 'bob' }, envResult: { text: 'hello eve (attempt 1)', by: 'test' }, commonjs: true });
    // Plain require from JavaScript, both entry points; the fuzzer says what it needs.
    const probe = await runNode(dir, [
      '-e',
      `const s = require('skein'); const t = require('skein/testing');
       t.fuzzWorkflow(s.workflow('w', function* () { return 1; }), {}).then(() => 'ran', (e) => e.message).then((fuzz) =>
         console.log(JSON.stringify({ workflow: typeof s.workflow, env: typeof t.createTestEnv, fuzz })));`,
    ]);
    expect(probe).toMatchObject({ workflow: 'function', env: 'function' });
    expect(probe.fuzz).toContain('npm install --save-dev fast-check');
  }, 120_000);
});
