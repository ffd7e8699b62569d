#!/usr/bin/env node
/**
 * skein command line (see program.ts for the commands, errors.ts for the exit codes, docs/operating.md for a tour).
 *
 *   skein worker --workflows ./path/to/module [--queues a,b] [--concurrency N] ...
 *   skein start <workflow> --input '<json>' [--workflow-id id] [--wait]
 *   skein runs list|count|describe|tree|history|result|signal|cancel|terminate|resume|retry ...
 *   skein workers
 *   skein replay <histories> --workflows ./path/to/module
 *   skein <command> --help
 *
 * The journal is PostgreSQL at --database-url or DATABASE_URL, or the embedded server under $SKEIN_HOME (default
 * .skein/ in the folder of the nearest package.json) when none is set.
 */
import { CommanderError } from 'commander';
import { redactSecrets } from '../journal/connection.js';
import {
  ConfigError,
  DatabaseUnreachableError,
  DuplicateWorkflowIdError,
  InvalidArgumentError,
  PayloadError,
  RunClosedError,
  RunStateError,
  UnknownRunError,
  UnknownWorkflowError,
} from '../runtime/errors.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from './errors.js';
import { buildProgram, type CliContext } from './program.js';

async function main(argv: string[]): Promise<number> {
  const ctx: CliContext = { exitCode: EXIT_OK };
  try {
    await buildProgram(ctx).parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      // `skein` alone: commander has printed the help on stderr already
      if (err.code !== 'commander.help') printError(new UsageError(err.message.replace(/^error: /, '')));
      return EXIT_USAGE;
    }
    if (BAD_INPUT.some((c) => err instanceof c)) {
      printError(err as Error);
      return EXIT_USAGE;
    }
    if (err instanceof DatabaseUnreachableError) {
      printError(err);
      return EXIT_FAILURE;
    }
    console.error(err);
    return EXIT_FAILURE;
  }
}

/** Errors that mean the command as given cannot be done (exit code 2, one line): see errors.ts. */
const BAD_INPUT = [
  UsageError,
  ConfigError,
  UnknownRunError,
  UnknownWorkflowError,
  RunStateError,
  RunClosedError,
  DuplicateWorkflowIdError,
  InvalidArgumentError,
  PayloadError,
];

/** One line on stderr: `skein: <ErrorClass>: <message>`, passwords redacted. */
function printError(err: Error): void {
  process.stderr.write(`skein: ${err.name}: ${redactSecrets(err.message).replace(/\s*\n\s*/g, ' ')}\n`);
}

// `skein runs list --json | head`: a reader that leaves early is not an error of ours
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(EXIT_OK);
  throw err;
});

main(process.argv.slice(2)).then(
  // exit once stdout has taken everything written (a large --json output piped to another program)
  (code) => process.stdout.write('', () => process.exit(code)),
  (err) => {
    console.error(err);
    process.exit(EXIT_FAILURE);
  },
);
