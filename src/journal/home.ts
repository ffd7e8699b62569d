import { existsSync } from 'node:fs';
import path from 'node:path';

/**
 * Where skein keeps its local state (the embedded PostgreSQL's data, its port, its users), found the same way from
 * any directory of a project, so that a worker started at the project's root and a client script run from `scripts/`
 * share one database:
 *  1. `SKEIN_HOME`, if set (a relative path is taken from the current directory);
 *  2. else `.skein` in the folder of the nearest `package.json`, from the current directory up;
 *  3. else `.skein` in the current directory (no package.json above it).
 */
export function skeinHome(cwd: string = process.cwd(), env: NodeJS.ProcessEnv = process.env): string {
  if (env.SKEIN_HOME) return path.resolve(cwd, env.SKEIN_HOME);
  return path.join(projectRoot(cwd) ?? path.resolve(cwd), '.skein');
}

/** The folder of the nearest package.json at or above `dir`, or undefined. */
export function projectRoot(dir: string): string | undefined {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (existsSync(path.join(d, 'package.json'))) return d;
    if (path.dirname(d) === d) return undefined;
  }
}

/** Where the embedded server keeps its data unless told: `<skeinHome()>/pg`. */
export function defaultDataDir(cwd?: string, env?: NodeJS.ProcessEnv): string {
  return path.join(skeinHome(cwd, env), 'pg');
}
