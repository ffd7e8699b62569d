#!/usr/bin/env node
/**
 * skein command line (see program.ts for the commands, errors.ts for the exit codes).
 *
 *   skein worker --workflows ./path/to/module [--queues a,b] [--concurrency N] [--lease-ms N] [--poll-ms N]
 *                [--inline-children-ms N] [--shutdown-grace-ms N] [--schema s] [--redis-url URL] [--worker-id id]
 *   skein worker --help
 *
 * The module exports `workflows` and `activities` (arrays or name maps), or a default export holding both. The
 * journal is PostgreSQL at DATABASE_URL, or the embedded server under $SKEIN_HOME (default ./.skein/) when none is
 * set. SIGTERM and SIGINT shut the worker down gracefully (running activities finish or their runs are released;
 * nothing is lost).
 */
import { CommanderError } from 'commander';
import { redactSecrets } from '../journal/connection.js';
import { ConfigError } from '../runtime/errors.js';
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
    if (err instanceof UsageError || err instanceof ConfigError) {
      printError(err);
      return EXIT_USAGE;
    }
    console.error(err);
    return EXIT_FAILURE;
  }
}

/** One line on stderr: `skein: <ErrorClass>: <message>`, passwords redacted. */
function printError(err: Error): void {
  process.stderr.write(`skein: ${err.name}: ${redactSecrets(err.message).replace(/\s*\n\s*/g, ' ')}\n`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(EXIT_FAILURE);
  },
);
