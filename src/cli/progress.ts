/**
 * Live progress for `start --wait` and `runs list --watch`. On a terminal one status line is redrawn in place (or a
 * whole screen, for `--watch`); elsewhere (a pipe, a CI log) each change is one plain line, and nothing is written
 * while nothing changes.
 */
export class StatusLine {
  private last = '';
  private drawn = false;
  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    readonly tty = Boolean(stream.isTTY),
  ) {}

  /**
   * Shows `text`. On a terminal, redraws the line (always: a clock in it may tick); elsewhere writes it only if
   * `key` (default: the text) differs from the last one written.
   */
  update(text: string, key = text): void {
    if (this.tty) {
      const cols = this.stream.columns || 120;
      this.stream.write(`\r\x1b[2K${text.length > cols - 1 ? `${text.slice(0, cols - 2)}…` : text}`);
      this.drawn = true;
      return;
    }
    if (key === this.last) return;
    this.last = key;
    this.stream.write(`${text}\n`);
  }

  /** Ends the live line (a terminal gets its newline), so what follows starts on a line of its own. */
  done(): void {
    if (this.tty && this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}

/** Redraws a whole screen (`runs list --watch` on a terminal). */
export function redrawScreen(text: string, stream: NodeJS.WriteStream = process.stdout): void {
  stream.write(`\x1b[H\x1b[2J${text}\n`);
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((done) => {
    if (signal.aborted) return done();
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      done();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      done();
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** An AbortSignal that aborts on SIGINT or SIGTERM (Ctrl-C ends a watch: exit code 0), and its cleanup. */
export function interruptSignal(): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return {
    signal: ac.signal,
    dispose: () => {
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
    },
  };
}
