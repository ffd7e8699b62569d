/**
 * Telling a database that is away (worth waiting for) from one that refuses us (a setting to fix), and showing a
 * connection URL without its password. Used by openJournal, the worker (its outage log) and the CLI.
 */

/** Node socket errors of a server that is down or out of reach. */
const UNREACHABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EAI_AGAIN', 'ENOTFOUND']);

/**
 * SQLSTATEs of a server that is going away or not ready: admin_shutdown (a restart ends our sessions),
 * crash_shutdown, cannot_connect_now (starting up, shutting down, in recovery), too_many_connections.
 */
const UNREACHABLE_SQLSTATE = new Set(['57P01', '57P02', '57P03', '53300']);

/** pg's own errors for a connection that went away (they carry no code). */
const UNREACHABLE_MESSAGE = /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Connection is closed/i;

/**
 * True when `err` says the database cannot be reached right now (refused, cut, unreachable, starting up or shutting
 * down): the same call may succeed later. False for everything else, including a server that refuses our settings
 * (bad password, no such database), which retrying does not fix. ENOTFOUND counts as unreachable: in a container
 * network the database's host name often resolves only once its container is up.
 */
export function isUnreachable(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: unknown; message?: unknown; errors?: unknown; cause?: unknown };
  if (typeof e.code === 'string') {
    if (UNREACHABLE_ERRNO.has(e.code) || UNREACHABLE_SQLSTATE.has(e.code) || e.code.startsWith('08')) return true;
  }
  // a host name with several addresses (localhost: ::1 and 127.0.0.1) fails with an AggregateError of each attempt
  if (Array.isArray(e.errors) && e.errors.length > 0 && e.errors.every(isUnreachable)) return true;
  if (typeof e.message === 'string' && UNREACHABLE_MESSAGE.test(e.message)) return true;
  return e.cause !== undefined && e.cause !== err && isUnreachable(e.cause);
}

/** A connection string with its password (URL or `password=` form) replaced by '***'. Never throws. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    if (u.searchParams.has('password')) u.searchParams.set('password', '***');
    return u.toString().replace('%2A%2A%2A', '***');
  } catch {
    return redactSecrets(url);
  }
}

/** Any text with the passwords of the URLs (`//user:password@`) and `password=` settings in it replaced by '***'. */
export function redactSecrets(text: string): string {
  return text.replace(/(\/\/[^:/@\s]*:)[^@\s]*@/g, '$1***@').replace(/(password=)[^\s&]*/gi, '$1***');
}

/** The first line of an error's message (driver messages may run on, with hints and details). */
export function firstLine(err: unknown): string {
  const e = err as { message?: unknown; code?: unknown } | undefined;
  const text = (typeof e?.message === 'string' && e.message) || (typeof e?.code === 'string' && e.code) || String(err);
  return text.split('\n')[0]!;
}
