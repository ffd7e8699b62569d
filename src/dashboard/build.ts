/**
 * `npm run build` runs this after tsc: bundles the dashboard's front-end (src/dashboard/ui) into
 * dist/dashboard/assets, where the compiled server finds it. Prints the bundle's size.
 */
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBundle } from './assets.js';

const outdir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/dashboard/assets');
const { js, css } = await buildBundle(outdir);
const kb = (s: string) => `${(Buffer.byteLength(s) / 1024).toFixed(1)} kB (${(gzipSync(s).length / 1024).toFixed(1)} kB gzipped)`;
console.log(`dashboard bundle in ${path.relative(process.cwd(), outdir)}: app.js ${kb(js)}, app.css ${kb(css)}`);
