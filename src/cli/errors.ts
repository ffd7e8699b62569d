import { SkeinError } from '../runtime/errors.js';

/**
 * Exit codes of the `skein` command:
 *  - 0: done (a command that did what was asked; a worker stopped by SIGTERM/SIGINT, gracefully; `--help`,
 *       `--version`);
 *  - 1: the thing asked about failed (`start --wait` or `runs result` of a run that did not complete, a `replay` that
 *       diverges), a database that does not answer a one-shot command (one line), or an unexpected failure (a bug,
 *       an environment skein cannot work in, e.g. the embedded server fails to start; printed with its stack);
 *  - 2: bad input that retrying cannot fix: an unknown command or option, a bad option value, a workflows module
 *       that cannot be loaded, a malformed DATABASE_URL or one the server refuses (password, role, database), an
 *       unknown run or workflow id, an action the run's state refuses (cancel a closed run, resume a run that is not
 *       blocked). One line on stderr: `skein: <ErrorClass>: <what is wrong>`. (systemd: `RestartPreventExitStatus=2`.)
 * A database that does not answer is not a reason for a worker to exit, at startup or later: the worker waits for it,
 * retrying with backoff (see docs/semantics.md, "Worker processes and the embedded server").
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A command line skein cannot run: unknown command or option, a missing or malformed option value. */
export class UsageError extends SkeinError {}
