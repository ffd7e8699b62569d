import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerDashboardCommand } from './dashboard-command.js';
import { registerReplayCommand } from './replay-command.js';
import { registerRunsCommand } from './runs-command.js';
import { registerStartCommand } from './start-command.js';
import { registerWorkerCommand } from './worker-command.js';
import { registerWorkersCommand } from './workers-command.js';

/** What a command's action tells main() (commander ignores what actions return). */
export interface CliContext {
  exitCode: number;
}

/**
 * The `skein` command line: one commander program, one `register…Command(program, ctx)` per subcommand (`worker`,
 * `start`, `runs …`, `workers`, `replay`). Commander parses and validates; it never exits the process itself
 * (exitOverride): main() turns its errors into one line on stderr and exit code 2. Subcommands inherit these settings
 * (commander copies them to each command created after them).
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
  registerStartCommand(program, ctx);
  registerRunsCommand(program, ctx);
  registerWorkersCommand(program, ctx);
  registerReplayCommand(program, ctx);
  registerDashboardCommand(program, ctx);
  program.addHelpText(
    'after',
    `
Every command that reads the journal takes --database-url (default: DATABASE_URL, else the embedded server under
$SKEIN_HOME, as \`skein worker\` finds it) and --schema (default: SKEIN_SCHEMA, else skein); --json prints what the
API returns, for scripts. A run is named by its run id or its workflow id.
Exit codes: 0 done; 1 the thing asked about failed (a run that did not complete, a replay that diverges); 2 bad input.
More: docs/operating.md.`,
  );
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
