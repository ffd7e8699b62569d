import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { firstLine } from '../journal/connection.js';
import { ConfigError } from '../runtime/errors.js';
import type { ActivitiesInput, WorkflowsInput } from '../runtime/registry.js';

/** Extensions Node cannot load by itself (before type stripping), which tsx can. */
const TYPESCRIPT = /\.(ts|mts|cts|tsx)$/;

export interface WorkflowsModule {
  workflows: WorkflowsInput;
  activities?: ActivitiesInput;
}

/**
 * Loads a module of workflows and activities (`--workflows`): its `workflows` and `activities` exports, or its default
 * export's. A TypeScript module is loaded through tsx (`tsx/esm/api`'s `register()`), found from the module's folder,
 * then the current folder, then skein's own; without tsx, a ConfigError says how to get it. Registering tsx when it is
 * already active (`node --import tsx`) is harmless. Anything that cannot give the workflows is a ConfigError naming
 * `option` (exit code 2).
 */
export async function loadWorkflowsModule(modulePath: string, option = '--workflows'): Promise<WorkflowsModule> {
  const file = path.resolve(modulePath);
  if (TYPESCRIPT.test(file)) await registerTsx(file, modulePath, option);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(option, modulePath, `cannot load ${option} ${modulePath}: ${firstLine(err)}`, { cause: err });
  }
  if (otherCopies.size) {
    const other = [...otherCopies][0]!;
    throw new ConfigError(
      option,
      modulePath,
      `${option} ${modulePath} builds its workflows with another copy of skein (${path.dirname(path.dirname(other))}) than the one running ` +
        `(${path.dirname(path.dirname(OWN_COMMANDS))}); its commands would not be recognised. Import skein from the same installation as ` +
        `this command (in the skein repository, run the command from the sources: npx tsx src/cli/main.ts)`,
    );
  }
  const source = (mod.workflows ? mod : (mod.default ?? {})) as { workflows?: WorkflowsInput; activities?: ActivitiesInput };
  if (!source.workflows) throw new ConfigError(option, modulePath, `${option} ${modulePath} exports no 'workflows' (nor a default export holding them)`);
  return { workflows: source.workflows, ...(source.activities ? { activities: source.activities } : {}) };
}

let registered = false;

/** This copy's runtime/commands module, without its extension (.js built, .ts from the sources). */
const OWN_COMMANDS = stripExt(fileURLToPath(new URL('../runtime/commands.js', import.meta.url)));

/**
 * The runtime/commands modules of other copies of skein the workflows module imported (seen through tsx's onImport):
 * a command built by another copy is not a command to this one's engine (it checks `instanceof Command`), so its
 * runs would block with "yielded object". Happens when a module imports skein's sources while the CLI runs from
 * dist/ (tsconfig `paths`), or with two installations.
 */
const otherCopies = new Set<string>();

function stripExt(file: string): string {
  return file.replace(/\.(ts|js|mts|mjs)$/, '');
}

function noteImport(url: string): void {
  if (!/\/runtime\/commands\.(ts|js|mts|mjs)$/.test(url) || !url.startsWith('file:')) return;
  const file = fileURLToPath(url);
  if (stripExt(file) === OWN_COMMANDS) return;
  // skein's layout (runtime/ next to client/), not a file of the user's that happens to have this name
  const root = path.dirname(path.dirname(file));
  if (['client/client.ts', 'client/client.js'].some((f) => existsSync(path.join(root, f)))) otherCopies.add(file);
}

async function registerTsx(file: string, shown: string, option: string): Promise<void> {
  if (registered) return;
  const api = findTsxApi([path.dirname(file), process.cwd(), path.dirname(fileURLToPath(import.meta.url))]);
  if (!api) {
    throw new ConfigError(
      option,
      shown,
      `cannot load ${option} ${shown}: a TypeScript module needs tsx to load it, and tsx is not installed here ` +
        `(npm install --save-dev tsx; or compile the module to JavaScript and pass the .js file)`,
    );
  }
  const { register } = (await import(pathToFileURL(api).href)) as { register: (o?: { onImport?: (url: string) => void }) => unknown };
  register({ onImport: noteImport });
  registered = true;
}

/** The file of `tsx/esm/api` (its ESM build) as resolved from one of `bases`, or null when tsx is not installed. */
function findTsxApi(bases: string[]): string | null {
  for (const base of bases) {
    try {
      const pkgFile = createRequire(path.join(base, 'noop.js')).resolve('tsx/package.json');
      const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { exports?: Record<string, unknown> };
      const entry = pkg.exports?.['./esm/api'];
      const rel = typeof entry === 'string' ? entry : importTarget(entry);
      if (rel) return path.join(path.dirname(pkgFile), rel);
    } catch {
      // not from here
    }
  }
  return null;
}

function importTarget(entry: unknown): string | null {
  const imp = (entry as { import?: unknown } | undefined)?.import;
  if (typeof imp === 'string') return imp;
  const def = (imp as { default?: unknown } | undefined)?.default;
  return typeof def === 'string' ? def : null;
}
