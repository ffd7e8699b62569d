/**
 * skein/testing as a user gets it: build the package, install it (by symlink) into a scratch project outside the
 * repository, type-check a small TypeScript program against the published .d.ts files and run it with plain node.
 * Nothing here imports from src/: resolution goes through package.json "exports" to dist/.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

const PROGRAM = `
import fc from 'fast-check';
import { activity, child, defineActivity, NonDeterminismError, random, sleep, uuid, workflow } from 'skein';
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
  out.coin = e instanceof FuzzFailure ? { failure: 'FuzzFailure', mentionsNonDeterminism: e.message.includes('NonDeterminismError'), schedule: e.schedule.length > 0 } : String(e);
}
console.log(JSON.stringify(out));
`;

let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'skein-consumer-'));
  const pkg = join(tmp, 'pkg');
  // The package: the real build into a scratch dist/ (not the repo's, which other tests may be using), with the
  // repository's package.json so "exports" and "type" are exactly what would be published.
  try {
    await run(process.execPath, [TSC, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')], { cwd: ROOT, maxBuffer: 1 << 24 });
  } catch (err) {
    // tsc exits non-zero on any type error but still emits. Type errors are `npm test`'s typecheck's business; this
    // test is about the package, so it fails only on errors in what skein/testing ships, and runs the emitted code.
    const out = String((err as { stdout?: string }).stdout ?? err);
    const mine = out.split('\n').filter((l) => /^src\/(testing\/|index\.ts|client\/|runtime\/)/.test(l));
    if (mine.length) throw new Error(`the build has errors in the shipped API:\n${mine.join('\n')}`);
  }
  await cp(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  await symlink(join(ROOT, 'node_modules'), join(pkg, 'node_modules'), 'dir');

  // The consumer: its own package.json and tsconfig, skein and fast-check in its node_modules.
  const app = join(tmp, 'app');
  await mkdir(join(app, 'node_modules'), { recursive: true });
  await symlink(pkg, join(app, 'node_modules', 'skein'), 'dir');
  await symlink(join(ROOT, 'node_modules', 'fast-check'), join(app, 'node_modules', 'fast-check'), 'dir');
  await symlink(join(ROOT, 'node_modules', '@types'), join(app, 'node_modules', '@types'), 'dir');
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  await writeFile(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: true, types: ['node'], lib: ['ES2023'], outDir: '.' },
      files: ['main.ts'],
    }),
  );
  await writeFile(join(app, 'main.ts'), PROGRAM);
}, 180_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('skein/testing from the built package', () => {
  it('type-checks and runs a consumer program with createTestEnv, replayHistory and fuzzWorkflow', async () => {
    const app = join(tmp, 'app');
    // The published types: strict TypeScript against dist/**/*.d.ts via "exports".
    const tsc = await run(process.execPath, [TSC, '-p', join(app, 'tsconfig.json')], { cwd: app }).catch((e) => e);
    expect(tsc.stdout ?? '', 'the consumer program should type-check against the published types').toBe('');
    expect(JSON.parse(await readFile(join(app, 'node_modules', 'skein', 'package.json'), 'utf8')).exports['./testing']).toBeDefined();

    const { stdout } = await run(process.execPath, [join(app, 'main.js')], { cwd: app });
    const out = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(out.uuids).toEqual({ sameSeedSame: true, otherSeedOther: true });
    expect(out.result).toEqual({ doubled: 42, inRange: true });
    expect(out.virtualDays).toBe(1);
    expect(out.realMsUnderASecond).toBe(true);
    expect(out.replay).toBe('completed');
    expect(out.changed.seq).toBe(4);
    expect(out.changed.journaled).toMatch(/^ChildScheduled\(path 1, workflow 'leaf', input hash \w+\)$/);
    expect(out.changed.issued).toMatch(/^ChildScheduled\(path 1, workflow 'leaf', input hash \w+\)$/);
    expect(out.fuzzCases).toBe(25);
    expect(out.coin).toEqual({ failure: 'FuzzFailure', mentionsNonDeterminism: true, schedule: true });
  }, 120_000);
});
