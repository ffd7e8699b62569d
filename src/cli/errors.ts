import { SkeinError } from '../runtime/errors.js';

/**
 * Exit codes of the `skein` command. A worker exits non-zero only when it cannot go on:
 *  - 0: done (a worker stopped by SIGTERM/SIGINT, gracefully; `--help`, `--version`);
 *  - 1: an unexpected failure (a bug, or an environment skein cannot work in, e.g. the embedded server fails to
 *       start); the error is printed with its stack;
 *  - 2: bad input that retrying cannot fix: an unknown command or option, a bad option value, a workflows module
 *       that cannot be loaded, a malformed DATABASE_URL or one the server refuses (password, role, database). One
 *       line on stderr: `skein: <ErrorClass>: <what is wrong>`. (systemd: `RestartPreventExitStatus=2`.)
 * A database that does not answer is not a reason to exit, at startup or later: the worker waits for it, retrying
 * with backoff (see docs/semantics.md, "Worker processes and the embedded server").
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A command line skein cannot run: unknown command or option, a missing or malformed option value. */
export class UsageError extends SkeinError {}
