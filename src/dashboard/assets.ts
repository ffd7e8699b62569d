import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The dashboard's front-end: one script and one stylesheet (Preact, bundled by esbuild). */
export interface DashboardAssets {
  js: string;
  css: string;
  /** Where they came from: prebuilt (dist/dashboard/assets, `npm run build`) or built now from the sources. */
  origin: 'prebuilt' | 'built';
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** The front-end's entry (sources only: `src/dashboard/ui`). */
export const UI_ENTRY = path.join(here, 'ui', 'main.tsx');
/** The prebuilt bundle next to the compiled server (dist/dashboard/assets). */
const PREBUILT = path.join(here, 'assets');

let cached: Promise<DashboardAssets> | undefined;

/**
 * The bundle, read once per process: the prebuilt one when the server runs from dist/ (`npm run build` writes it),
 * else built in memory from src/dashboard/ui with esbuild (a dev dependency: a fresh clone after `npm install`, the
 * tests). Nothing is ever fetched from the network.
 */
export function loadAssets(): Promise<DashboardAssets> {
  cached ??= load().catch((err: unknown) => {
    cached = undefined;
    throw err;
  });
  return cached;
}

async function load(): Promise<DashboardAssets> {
  const js = path.join(PREBUILT, 'app.js');
  if (existsSync(js)) {
    return { js: await readFile(js, 'utf8'), css: await readFile(path.join(PREBUILT, 'app.css'), 'utf8').catch(() => ''), origin: 'prebuilt' };
  }
  if (!existsSync(UI_ENTRY)) {
    throw new Error(`the dashboard's bundle is missing (${js}) and its sources are not here to build it: run \`npm run build\``);
  }
  return { ...(await buildBundle()), origin: 'built' };
}

/** Bundles src/dashboard/ui (minified, ES2020, no source map) with esbuild; writes it to `outdir` when given. */
export async function buildBundle(outdir?: string): Promise<{ js: string; css: string }> {
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    entryPoints: [UI_ENTRY],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2020',
    platform: 'browser',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    outdir: 'out',
    entryNames: 'app',
    write: false,
    legalComments: 'none',
    logLevel: 'silent',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  let js = '';
  let css = '';
  for (const f of result.outputFiles) {
    if (f.path.endsWith('.js')) js = f.text;
    else if (f.path.endsWith('.css')) css = f.text;
  }
  if (outdir) {
    await mkdir(outdir, { recursive: true });
    await writeFile(path.join(outdir, 'app.js'), js);
    await writeFile(path.join(outdir, 'app.css'), css);
  }
  return { js, css };
}
