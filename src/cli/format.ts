/**
 * Output for people: padded tables, times, durations, short JSON. (Scripts use `--json`, which prints the API's own
 * objects.)
 */

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. Headers in capitals. */
export function table(headers: string[], rows: string[][]): string {
  const all = [headers.map((h) => h.toUpperCase()), ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => width(r[i] ?? ''))));
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell + ' '.repeat(widths[i]! - width(cell))))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

const width = (s: string) => [...s].length;

/** Two columns, `key  value`, keys padded; a value of several lines is indented under its first. */
export function fields(rows: Array<[string, string | null | undefined]>): string {
  const shown = rows.filter((r): r is [string, string] => r[1] !== undefined && r[1] !== null);
  const w = Math.max(...shown.map(([k]) => width(k)));
  return shown.map(([k, v]) => `${k}${' '.repeat(w - width(k))}  ${v.split('\n').join(`\n${' '.repeat(w + 2)}`)}`).join('\n');
}

/** `2026-11-21 05:32:41` (UTC, to the second): for tables. */
export function shortTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-';
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}

/** `2026-11-21T05:32:41.016Z (3m 12s ago)`: for describe. */
export function longTime(ms: number | null | undefined, now = Date.now()): string {
  if (ms === null || ms === undefined) return '-';
  const d = now - ms;
  return `${new Date(ms).toISOString()} (${d >= 0 ? `${duration(d)} ago` : `in ${duration(-d)}`})`;
}

/** `850ms`, `12.3s`, `3m 12s`, `2h 5m`, `3d 4h`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

/** JSON on one line, cut at `max` characters. */
export function shortJson(v: unknown, max = 60): string {
  let s: string;
  try {
    s = v === undefined ? '-' : JSON.stringify(v);
  } catch {
    s = String(v);
  }
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** A string cut at `max` characters. */
export function cut(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** Pretty JSON followed by a newline (for --json). */
export function json(v: unknown): string {
  return `${JSON.stringify(v, null, 2)}\n`;
}

/** Writes lines to stdout. */
export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}
