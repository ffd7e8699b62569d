import type { Logger } from 'pino';
import type { Journal, WorkerHeartbeat } from '../journal/journal.js';
import { firstLine, isUnreachable } from '../journal/connection.js';

/**
 * A worker's row in the journal's `workers` table (Journal.workerHeartbeat): written at start, refreshed every
 * `intervalMs`, marked stopped on graceful shutdown. A worker not seen for 3 intervals is listed as gone (killed,
 * frozen, cut off from the database).
 *
 * It never fails the worker: a heartbeat the journal does not take is said at debug when the database is unreachable
 * (the worker says that outage once, at warn, from its polls: one line per outage, not one per failing call), and
 * otherwise once at warn, then at info when one gets through again; the timer goes on either way. Its timer does not
 * keep the process alive.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  private inflight: Promise<void> | null = null;
  private stopped = false;
  /** Since when heartbeats fail for a reason other than an unreachable database (said at warn), or null. */
  private failingSince: number | null = null;
  /** When the journal last took a heartbeat (wall time), and the last failure's message (null after a success). */
  lastOkAt: number | null = null;
  lastError: string | null = null;

  constructor(
    private readonly journal: Journal,
    private readonly snapshot: () => WorkerHeartbeat,
    readonly intervalMs: number,
    private readonly log: Logger,
    private readonly onFailure: () => void = () => {},
  ) {}

  start(): void {
    if (this.timer || this.stopped) return;
    void this.beat();
    this.timer = setInterval(() => void this.beat(), this.intervalMs);
    this.timer.unref?.();
  }

  /**
   * Stops beating and marks the worker stopped, waiting at most `timeoutMs` for the journal (a database that is down
   * does not hold up a shutdown: the row then goes gone by itself after 3 intervals).
   */
  async stop(timeoutMs = 2000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const done = (async () => {
      // a heartbeat still in flight must land before the stop, or it would be the last word
      await this.inflight;
      await this.journal.workerStopped(this.snapshot().workerId);
    })();
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((r) => {
      t = setTimeout(r, timeoutMs);
      t.unref?.();
    });
    try {
      await Promise.race([done.catch((err: unknown) => this.log.debug({ reason: firstLine(err) }, 'could not mark the worker stopped')), timeout]);
    } finally {
      clearTimeout(t);
    }
  }

  private async beat(): Promise<void> {
    if (this.inflight || this.stopped) return; // one at a time: a slow database does not pile them up
    const p = this.journal.workerHeartbeat(this.snapshot()).then(
      () => {
        this.lastOkAt = Date.now();
        this.lastError = null;
        if (this.failingSince !== null) {
          this.log.info({ failedForMs: Date.now() - this.failingSince }, 'worker heartbeat recorded again');
          this.failingSince = null;
        }
      },
      (err: unknown) => {
        this.lastError = firstLine(err);
        this.onFailure();
        if (isUnreachable(err)) {
          this.log.debug({ reason: this.lastError }, 'worker heartbeat failed: database unreachable');
        } else if (this.failingSince === null) {
          this.failingSince = Date.now();
          this.log.warn({ reason: this.lastError }, 'worker heartbeat failed: will keep trying (the worker runs on)');
        } else {
          this.log.debug({ reason: this.lastError }, 'worker heartbeat failed again');
        }
      },
    );
    this.inflight = p;
    try {
      await p;
    } finally {
      this.inflight = null;
    }
  }
}
