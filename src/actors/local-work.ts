import type { ActivityTask } from '../runtime/engine.js';
import type { NewEvent } from '../runtime/events.js';

/** Activities running in this process for one run; results wait here until the next activation journals them. */
export class LocalWork {
  private readonly inflight = new Map<string, Promise<void>>();
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
  start(task: ActivityTask, run: () => Promise<NewEvent>): Promise<void> {
    const running = this.inflight.get(task.path);
    if (running) return running;
    if (this.readyPaths.has(task.path)) return Promise.resolve();
    const p = run().then((delivery) => {
      this.inflight.delete(task.path);
      this.ready.push(delivery);
      this.readyPaths.add(task.path);
      this.onReady();
    });
    this.inflight.set(task.path, p);
    return p;
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
