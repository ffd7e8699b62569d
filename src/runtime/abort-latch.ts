/**
 * A one-shot abort that costs almost nothing until something listens to it.
 *
 * Every activity attempt needs a way to be stopped (its timeout, its run's cancel, its actor's end), but almost none
 * is. A Node AbortController with an `abort` listener costs ~5 us and several objects the collector has to trace;
 * a fan-out of 1,000 trivial children paid ~35 ms for them (bench:durable W1, measured before and after). The latch
 * keeps plain callbacks, and makes the real AbortSignal an activity reads as `ctx.signal` only when it reads it.
 */
export class AbortLatch {
  private state: { reason: unknown } | null = null;
  private listeners: Array<(reason: unknown) => void> | null = null;
  private controller: AbortController | null = null;

  get aborted(): boolean {
    return this.state !== null;
  }

  /** Why it was aborted (undefined while it is not). */
  get reason(): unknown {
    return this.state?.reason;
  }

  /** Aborts once: later calls are ignored (the first reason stays). */
  abort(reason: unknown): void {
    if (this.state) return;
    this.state = { reason };
    this.controller?.abort(reason);
    const listeners = this.listeners;
    this.listeners = null;
    if (listeners) for (const fn of listeners) fn(reason);
  }

  /** Calls `fn` when aborted (at once if it already is); returns what unsubscribes it. */
  onAbort(fn: (reason: unknown) => void): () => void {
    if (this.state) {
      fn(this.state.reason);
      return noop;
    }
    (this.listeners ??= []).push(fn);
    return () => {
      const i = this.listeners?.indexOf(fn) ?? -1;
      if (i >= 0) this.listeners!.splice(i, 1);
    };
  }

  /** A standard AbortSignal that follows this latch, made on first use. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.state) this.controller.abort(this.state.reason);
    }
    return this.controller.signal;
  }
}

function noop(): void {}
