/**
 * Admission of activations: at most `limit` of a worker's runs activate (read, decide, commit) at once; the others
 * wait their turn here, in arrival order, with their leases kept alive by the lease heartbeat. It bounds the work
 * queued for the journal's connections by what they can commit, rather than by the worker's concurrency: a worker
 * that took 1,000 runs would otherwise send 1,000 activations at 10 connections, every commit would wait seconds,
 * and the poll would claim more while it cannot keep up. The worker's poll asks `backlog` before it claims more.
 */
export class Admission {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    readonly limit: number,
    /** Called when a slot frees up and nobody waits: the worker may claim more. */
    private readonly onIdleSlot: () => void = () => {},
  ) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`admission limit must be an integer >= 1, got ${limit}`);
  }

  /** Activations admitted and running now, and waiting for a slot. */
  get active(): number {
    return this.running;
  }
  get backlog(): number {
    return this.waiting.length;
  }

  /** Runs `fn` when a slot is free. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    else this.running++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next(); // the slot passes on directly: `running` stays the same
      else {
        this.running--;
        this.onIdleSlot();
      }
    }
  }
}
