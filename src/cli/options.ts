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

function integer(value: string, min: number, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected ${what}.`);
  return n;
}

/** A TCP port, 0 to 65535 (0: any free port). */
export function port(value: string): number {
  return integer(value, 0, 'a port number (0-65535)', 65_535);
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

/**
 * A JSON value (`--input`, a signal's payload). Commander reports a parse error as a usage error naming the option
 * (exit code 2); a bare word that is not JSON is refused too, so `--input ada` does not silently become a string.
 */
export function jsonValue(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new InvalidArgumentError(`expected JSON (${(err as Error).message}); quote strings: '"ada"'.`);
  }
}

/** One or more run statuses, comma-separated; repeating the option adds to the list. */
export function statusList(statuses: readonly string[]): (value: string, previous: string[] | undefined) => string[] {
  return (value, previous) => {
    const given = nameList(value);
    const bad = given.filter((s) => !statuses.includes(s));
    if (bad.length) throw new InvalidArgumentError(`unknown status ${bad.join(', ')}: expected ${statuses.join(', ')}.`);
    return [...new Set([...(previous ?? []), ...given])];
  };
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * A point in time: an ISO date or date-time (`2026-11-21`, `2026-11-21T05:30:00Z`), epoch milliseconds, or a duration
 * ago (`90s`, `15m`, `2h`, `7d`). Returns epoch milliseconds.
 */
export function timeBound(value: string, now = Date.now()): number {
  const v = value.trim();
  const rel = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(v);
  if (rel) return Math.round(now - Number(rel[1]) * UNIT_MS[rel[2]!]!);
  if (/^\d{12,}$/.test(v)) return Number(v);
  if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = Date.parse(v);
    if (Number.isFinite(t)) return t;
  }
  throw new InvalidArgumentError('expected an ISO date-time (2026-11-21T05:30:00Z), epoch ms, or a duration ago (30s, 15m, 2h, 7d).');
}
