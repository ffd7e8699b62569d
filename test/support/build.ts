/**
 * dist/ for the tests that run the built CLI (`node dist/cli/main.js`, as a user runs `skein`): the process tests
 * (test/integration/fixtures/processes.ts, cli.test.ts, getting-started.test.ts, test/soak) and the worker fixture
 * modules they pass as --workflows, which import dist/ (see fixtures/cli-workflows.ts).
 *
 * A vitest globalSetup (vitest.config.ts; vitest.soak.config.ts inherits it): runs once per `vitest run`, in vitest's
 * own process before any test file, and builds only what is stale:
 *  - the compiled package (`tsc -p tsconfig.build.json --noCheck`, some 10 s on 2 cores), when a file under src/
 *    (the dashboard's front-end aside) or a tsconfig is newer than dist/cli/main.js;
 *  - the dashboard's front-end bundle (dist/dashboard/assets, what `npm run build` writes with src/dashboard/build.ts;
 *    the built `skein dashboard` serves it and cannot build it), when src/dashboard/ui or the bundler is newer.
 * No type checking here: `npm test` type checks first. Each output is stamped with the time its build started, so a
 * source saved during a build makes the next run build again.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The built CLI's entry point: `node <CLI> …args` is `skein …args`. */
export const CLI = path.join(repoRoot, 'dist/cli/main.js');

const UI = path.join(repoRoot, 'src/dashboard/ui');
const BUNDLE = path.join(repoRoot, 'dist/dashboard/assets/app.js');

const mtime = (file: string): number => (existsSync(file) ? statSync(file).mtimeMs : 0);

/** The newest modification time of the files under `dir` (0 for none), skipping the folders in `skip`. */
function newest(dir: string, skip: string[] = []): number {
  let max = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (!skip.includes(p)) max = Math.max(max, newest(p, skip));
    } else {
      max = Math.max(max, statSync(p).mtimeMs);
    }
  }
  return max;
}

/** Compiles src/ to dist/ when a source is newer than the CLI's entry point. Returns whether it built. */
export function buildPackageIfStale(): boolean {
  const built = mtime(CLI);
  const sources = Math.max(newest(path.join(repoRoot, 'src'), [UI]), mtime(path.join(repoRoot, 'tsconfig.json')), mtime(path.join(repoRoot, 'tsconfig.build.json')));
  if (sources <= built) return false;
  const started = new Date();
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--noCheck'], { cwd: repoRoot, encoding: 'utf8' });
  if (r.status !== 0) console.warn(`tsc -p tsconfig.build.json reported errors (the build still emitted):\n${r.stdout.slice(0, 2000)}`);
  if (mtime(CLI) <= built) throw new Error(`the build did not produce ${CLI}:\n${r.stdout}\n${r.stderr}`);
  utimesSync(CLI, started, started);
  return true;
}

/** Bundles the dashboard's front-end into dist/dashboard/assets when its sources are newer than the bundle. */
export async function buildDashboardIfStale(): Promise<boolean> {
  const built = mtime(BUNDLE);
  if (Math.max(newest(UI), mtime(path.join(repoRoot, 'src/dashboard/assets.ts'))) <= built) return false;
  const started = new Date();
  const { buildBundle } = await import('../../src/dashboard/assets.js');
  await buildBundle(path.dirname(BUNDLE));
  utimesSync(BUNDLE, started, started);
  return true;
}

export default async function setup(): Promise<void> {
  const t0 = Date.now();
  const built = [buildPackageIfStale() && 'dist/ (tsc)', (await buildDashboardIfStale()) && 'the dashboard bundle'].filter(Boolean);
  if (built.length) console.log(`test setup: built ${built.join(' and ')} from changed sources in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
