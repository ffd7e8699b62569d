import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerWorkerCommand } from './worker-command.js';

/** What a command's action tells main() (commander ignores what actions return). */
export interface CliContext {
  exitCode: number;
}

/**
 * The `skein` command line: one commander program, one `register…Command(program, ctx)` per subcommand (`worker`
 * today; `runs list`, `start`, … slot in the same way). Commander parses and validates; it never exits the process
 * itself (exitOverride): main() turns its errors into one line on stderr and exit code 2.
 */
export function buildProgram(ctx: CliContext): Command {
  const program = new Command('skein')
    .description('skein: durable workflows as TypeScript generators, journaled in PostgreSQL')
    .version(packageVersion(), '-V, --version')
    .exitOverride()
    // main() prints usage errors itself, as one line; help and version still go to stdout
    .configureOutput({ outputError: () => {} })
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);
  registerWorkerCommand(program, ctx);
  return program;
}

function packageVersion(): string {
  // src/cli/program.ts and dist/cli/program.js are both two levels below package.json
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
