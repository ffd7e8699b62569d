import { createRequire } from 'node:module';
import type * as FastCheck from 'fast-check';
import { SkeinError } from '../runtime/errors.js';

/**
 * fast-check, loaded when the fuzzer first needs it: it is an optional peer dependency, and everything else in
 * skein/testing (createTestEnv, the replay tester, the simulator) works without it.
 *
 * Loaded as ESM (the same module instance as the user's `import fc from 'fast-check'`), ahead of time when this
 * module is imported, and awaited by fuzzWorkflow. Only a synchronous first use (fuzzProperty before anything else)
 * falls back to `require`.
 */
type FC = typeof FastCheck;

let mod: FC | undefined;
let loading: Promise<FC> | undefined;

function missing(err: unknown): Error {
  return new SkeinError("skein/testing's fuzzer needs fast-check, an optional peer dependency: npm install --save-dev fast-check", { cause: err });
}

/** Loads fast-check (once); rejects with a SkeinError saying how to install it when it is not installed. */
export function loadFastCheck(): Promise<FC> {
  return (loading ??= import('fast-check').then(
    (m) => (mod ??= m as FC),
    (err: unknown) => {
      loading = undefined;
      throw missing(err);
    },
  ));
}

/** fast-check, now (loaded already, else required synchronously). */
export function fastCheck(): FC {
  if (mod) return mod;
  try {
    mod = createRequire(import.meta.url)('fast-check') as FC;
  } catch (err) {
    throw missing(err);
  }
  return mod;
}

// Start loading now, so that a later synchronous use finds the ESM instance; without fast-check, nothing happens.
loadFastCheck().catch(() => {});
