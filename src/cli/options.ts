import { InvalidArgumentError } from 'commander';

/**
 * Parsers for option values, shared by the subcommands. Each throws commander's InvalidArgumentError, which commander
 * reports as a usage error naming the option and the value (exit code 2).
 */

/** An integer >= 1 (counts, and durations where 0 makes no sense). */
export function positiveInt(value: string): number {
  return integer(value, 1, 'a positive integer');
}

/** An integer >= 0 (durations where 0 means "not at all"). */
export function nonNegativeInt(value: string): number {
  return integer(value, 0, 'an integer >= 0');
}

function integer(value: string, min: number, what: string): number {
  const n = /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`expected ${what}.`);
  return n;
}

/** A comma-separated, non-empty list of names. */
export function nameList(value: string): string[] {
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!names.length) throw new InvalidArgumentError('expected one or more comma-separated names.');
  return names;
}

/** A PostgreSQL schema name as the journal takes it: a lower-case identifier. */
export function schemaName(value: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(value)) throw new InvalidArgumentError('expected a lower-case identifier (a-z, 0-9, _; not starting with a digit).');
  return value;
}

/** A non-empty string. */
export function nonEmpty(value: string): string {
  if (!value.trim()) throw new InvalidArgumentError('expected a non-empty value.');
  return value;
}

/** A redis:// or rediss:// URL. */
export function redisUrl(value: string): string {
  let protocol = '';
  try {
    protocol = new URL(value).protocol;
  } catch {
    // below
  }
  if (protocol !== 'redis:' && protocol !== 'rediss:') throw new InvalidArgumentError('expected a redis:// or rediss:// URL.');
  return value;
}
