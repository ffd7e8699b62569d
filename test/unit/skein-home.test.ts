/**
 * Where the embedded server's data lives (src/journal/home.ts): found the same way from any directory of a project.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultDataDir, skeinHome } from '../../src/index.js';

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'skein-home-'));
  await writeFile(join(base, 'package.json'), '{}');
  await mkdir(join(base, 'scripts', 'deep'), { recursive: true });
  await mkdir(join(base, 'packages', 'api', 'src'), { recursive: true });
  await writeFile(join(base, 'packages', 'api', 'package.json'), '{}');
});
afterAll(() => rm(base, { recursive: true, force: true }));

describe('skeinHome', () => {
  it("is .skein in the nearest package.json's folder, from any directory below it", () => {
    expect(skeinHome(base, {})).toBe(join(base, '.skein'));
    expect(skeinHome(join(base, 'scripts'), {})).toBe(join(base, '.skein'));
    expect(skeinHome(join(base, 'scripts', 'deep'), {})).toBe(join(base, '.skein'));
    expect(defaultDataDir(join(base, 'scripts', 'deep'), {})).toBe(join(base, '.skein', 'pg'));
    // a package of a workspace has its own
    expect(skeinHome(join(base, 'packages', 'api', 'src'), {})).toBe(join(base, 'packages', 'api', '.skein'));
  });

  it('is SKEIN_HOME when set (a relative one from the current directory)', () => {
    expect(skeinHome(join(base, 'scripts'), { SKEIN_HOME: '/var/lib/skein' })).toBe('/var/lib/skein');
    expect(skeinHome(join(base, 'scripts'), { SKEIN_HOME: '../shared' })).toBe(join(base, 'shared'));
  });

  it('is .skein in the current directory when no package.json is above it', () => {
    expect(skeinHome('/', {})).toBe('/.skein');
  });
});
