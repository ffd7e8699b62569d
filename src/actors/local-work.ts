import type { ActivityTask } from '../runtime/engine.js';
import type { NewEvent } from '../runtime/events.js';
import { AbortLatch } from '../runtime/abort-latch.js';
import { ActivityAbortedError, CancelledError } from '../runtime/errors.js';
import type { Journal } from '../journal/journal.js';

/** How a run actor ended (WorkerHealth counts them). */
export type RunEndReason = 'closed' | 'suspended' | 'blocked' | 'lost' | 'failed' | 'stopped';

/** Activities running in this process for one run; results wait here until the next activation journals them. */
export class LocalWork {
  private readonly inflight = new Map<string, Promise<void>>();
  /** Each running task's abort latch: its activity's `ctx.signal` follows it (see abort, stop). */
  private readonly latches = new Map<string, AbortLatch>();
  /** Set by stop(): the run's actor has ended here, results are dropped. */
  private stopped = false;
  private ready: NewEvent[] = [];
  /** Paths of the results in `ready`: finished here, not yet handed to an activation. */
  private readonly readyPaths = new Set<string>();
  constructor(private onReady: () => void) {}

  /** Who is told when a result is ready (a run's actor takes over work its parent's actor started for it). */
  setListener(onReady: () => void): void {
    this.onReady = onReady;
  }

  get size(): number {
    return this.inflight.size;
  }

  /** Finished here, result not yet taken. */
  isDone(path: string): boolean {
    return this.readyPaths.has(path);
  }

  /** Resolves when nothing runs here any more. */
  async idle(): Promise<void> {
    await Promise.all([...this.inflight.values()]);
  }

  has(path: string): boolean {
    return this.inflight.has(path);
  }

  /**
   * Starts a task unless it already runs here, or already finished here with its result waiting for the next
   * activation; returns its completion either way. (Each activation first restarts every activity the journal shows
   * open, for runs taken over from a dead worker; without the second check an activity that had just finished here,
   * and whose ACTIVITY_DONE caused that very activation, would be executed a second time.)
   */
  start(task: ActivityTask, run: (latch: AbortLatch) => Promise<NewEvent>): Promise<void> {
    const running = this.inflight.get(task.path);
    if (running) return running;
    if (this.readyPaths.has(task.path)) return Promise.resolve();
    const latch = new AbortLatch();
    this.latches.set(task.path, latch);
    const p = run(latch).then((delivery) => {
      this.inflight.delete(task.path);
      this.latches.delete(task.path);
      if (this.stopped) return;
      this.ready.push(delivery);
      this.readyPaths.add(task.path);
      this.onReady();
    });
    this.inflight.set(task.path, p);
    return p;
  }

  /** The paths of the tasks running here now. */
  running(): string[] {
    return [...this.inflight.keys()];
  }

  /**
   * Aborts the running tasks at `paths` (default: all) with `reason`: their activities' signals fire and each ends at
   * once, failed with that reason, a result the run still journals (a graceful cancel: the code no longer waits for
   * them, the history says what became of them).
   */
  abort(reason: Error, paths: Iterable<string> = [...this.latches.keys()]): void {
    for (const p of paths) this.latches.get(p)?.abort(reason);
  }

  /**
   * The run's actor has ended here (its run closed, was closed from outside, was taken over; the worker shuts down):
   * aborts whatever still runs, with `reason` (or what it returns), and drops the results: nobody here will journal
   * them.
   */
  stop(reason: Error | (() => Error | Promise<Error>)): void {
    this.stopped = true;
    // (the reason is worked out only when something still runs: most runs end with nothing in flight, and an error's
    // stack, or the inbox read of a lost run's reason, is not free)
    if (!this.latches.size) return;
    const r = typeof reason === 'function' ? reason() : reason;
    // (abortReason's promise settles with a reason, never rejects)
    if (r instanceof Error) this.abort(r);
    else void r.then((e) => this.abort(e));
  }

  take(): NewEvent[] {
    const r = this.ready;
    this.ready = [];
    this.readyPaths.clear();
    return r;
  }

  get hasReady(): boolean {
    return this.ready.length > 0;
  }
}

/** Waits for `p`, but not past `deadline`. One event-loop turn first: most activities are quick, and a fan-out of
 *  thousands of children would otherwise arm thousands of timers. */
export async function settleWithin(p: Promise<unknown>, deadline: number): Promise<void> {
  let finished = false;
  void p.then(() => (finished = true));
  await new Promise<void>((r) => setImmediate(r));
  if (finished || Date.now() >= deadline) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))))]);
  clearTimeout(timer);
}

/**
 * Why the activities of a run whose actor ended here (`how`: the run actor's end) are aborted: the `reason` of their
 * `ctx.signal`. A run being cancelled says so (CancelledError with the cancel's reason), whatever ended the actor.
 */
export function abortReason(how: string, cancelReason: string | null): Error;
/**
 * (`how` 'lost', with the journal: a run whose lease was voided is most often being cancelled; its inbox says so.)
 */
export function abortReason(how: string, cancelReason: string | null, journal: Pick<Journal, 'inbox'>, runId: string): Error | Promise<Error>;
export function abortReason(how: string, cancelReason: string | null, journal?: Pick<Journal, 'inbox'>, runId?: string): Error | Promise<Error> {
  if (cancelReason === null && how === 'lost' && journal && runId) {
    return journal.inbox(runId).then(
      (inbox) => abortReason(how, inbox.cancel?.reason ?? null),
      () => abortReason(how, null),
    );
  }
  if (cancelReason !== null) return new CancelledError(cancelReason);
  switch (how) {
    case 'closed':
      return new ActivityAbortedError('its run closed');
    case 'stopped':
      return new ActivityAbortedError('its run was closed from outside (cancelled or terminated)');
    case 'lost':
      return new ActivityAbortedError('its run was taken over by another worker, or closed from outside');
    case 'blocked':
      return new ActivityAbortedError('its run is blocked');
    case 'shutdown':
      return new ActivityAbortedError('the worker shut down before it finished (past its grace period)');
    default:
      return new ActivityAbortedError('its run stopped in this worker; it resumes from its journal');
  }
}
