import { randomUUID } from 'node:crypto';
import {
  ActivityCommand,
  AllCommand,
  ChildCommand,
  ChildResultCommand,
  ChildSignalCommand,
  Command,
  ContinueAsNewCommand,
  PatchCommand,
  SideEffectCommand,
  SleepCommand,
  WaitForSignalCommand,
  signalName,
  type SignalDef,
  type ParentClosePolicy,
  type RetryPolicy,
  type ChildHandle,
  type Shape,
  type WorkflowDef,
  type WorkflowGenerator,
} from './commands.js';
import {
  ActivityFailedError,
  CancelledError,
  ChildCancelledError,
  ChildDepthExceededError,
  ChildFailedError,
  ChildTerminatedError,
  ChildTimeoutError,
  CorruptJournalError,
  DuplicateChildIdError,
  NonDeterminismError,
  RunClosedError,
  RunTimeoutError,
  serializeError,
  SignalTimeoutError,
  WorkflowCodeError,
  isProgrammingError,
  type ChildRef,
  type SerializedError,
} from './errors.js';
import {
  CLOSE_TYPES,
  DECISION_TYPES,
  EVENT_FAMILY,
  type ChildOutcomePayload,
  type ChildOutcomeType,
  type DecisionType,
  type DeliveryType,
  type EventPayloads,
  type EventType,
  type JournalEvent,
  type NewEvent,
} from './events.js';
import { deriveId, hashText, journalValue, toJson } from './json.js';
import { continuedRunId, type NewRun } from './runs.js';
import type { OpenWait, StoredWaits, WaitSpec } from './waits.js';
import { backoffMs } from './activities.js';

/**
 * The replay engine: drives one run's generator from its journal, live and on replay, with one interpreter.
 *
 * The rule that makes replay exact: the engine walks the journal in seq order with a single cursor. A delivery
 * (child closed, activity finished, timer fired) is applied when the cursor reaches it, and the generator is then
 * advanced as far as it can go. Every command the generator issues must be the decision at the cursor; when the
 * cursor is at the end of the journal the decision is new and is appended. Live activations do exactly the same
 * thing, appending each delivery before advancing, so the journal order *is* the order the code saw things in, and
 * a replay sees them in the same order. Where the code makes a choice among things that happened (which failure a
 * barrier throws), the choice is also journaled and replay takes the journaled one.
 */

export interface EngineOptions {
  /** Children deeper than this fail with ChildDepthExceededError. Default 10. */
  maxChildDepth?: number;
  /**
   * Test hosts only (the fuzzer): runs for which a patch is treated as deployed after they passed it, so patched(id)
   * reached live answers false and journals nothing, exactly as the journal of a run started before the patch reads.
   * Lets a test explore the old branch of every patched() under today's code.
   */
  prePatch?: (patchId: string, run: EngineRun) => boolean;
}

export const DEFAULT_MAX_CHILD_DEPTH = 10;

/** patchesSeen of a run that reached no patched() (read-only: never written to). */
const NO_PATCHES: ReadonlyMap<string, boolean> = new Map();

/** Children are not retried unless asked; when asked, these fill in what the policy leaves out. */
export const DEFAULT_CHILD_RETRY: Required<RetryPolicy> = {
  maximumAttempts: 1,
  initialIntervalMs: 1000,
  backoffCoefficient: 2,
  maximumIntervalMs: 60_000,
  nonRetryableErrors: [],
};

export { continuedRunId } from './runs.js';

/** Where the run sits in the tree, read from its run row. */
export interface EngineRun {
  runId: string;
  workflowId: string;
  depth: number;
  queue: string;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: Error };

/** A leaf the generator can wait on: it settles once, with a close time used for failure selection. */
interface Leaf {
  readonly path: string;
  outcome: Outcome | null;
  closedAt: number;
  /** When the code started waiting on it (its decision's journal time): describe() says "since". */
  since?: number;
  /** The flat barriers waiting on it, told when it settles (see Tally); dropped once it has. */
  tallies?: Array<{ tally: Tally; leafIndex: number }>;
}

/**
 * The running count of a flat barrier (a group whose members are all leaves, the shape of every fan-out): members
 * still open, and the failure the barrier would throw (earliest close, then lowest leaf index). Kept up to date as
 * leaves settle (RunEngine.settle), so evaluating a barrier of N children is O(1) until it completes, instead of a
 * walk over N members each time one of them closes (a 10,000-child fan-out walked 50 million members).
 */
interface Tally {
  open: number;
  failed: (LeafState & { leafIndex: number }) | null;
}

interface ChildState extends Leaf {
  readonly kind: 'child';
  readonly ref: ChildRef;
  /** Its handle, made when the code first asks for it (startChild, children()): an awaited child() never does. */
  handle?: ChildHandle<unknown>;
  /** The child's newest run (it moves along a continue-as-new chain; ref.childRunId stays the first). */
  currentRunId: string;
  readonly policy: ParentClosePolicy;
  /** When the parent stops waiting (timeout option), and what it returns then. */
  readonly deadline: number | null;
  readonly timeoutValue: { value: unknown } | null;
  /** Retry policy (null: none) and the attempt running now (1-based). */
  readonly retry: Required<RetryPolicy> | null;
  attempt: number;
  /** What a retry needs to start the next attempt (kept only with a retry policy). */
  readonly spec: { workflow: string; input: unknown; inputHash: string; id: string | undefined; workflowId: string; queue: string; awaited: boolean } | null;
}
interface ActivityState extends Leaf {
  readonly kind: 'activity';
  readonly name: string;
  readonly input: unknown;
}
interface TimerState extends Leaf {
  readonly kind: 'timer';
  readonly fireAt: number;
}
interface ImmediateState extends Leaf {
  readonly kind: 'immediate';
}
interface SignalWaitState extends Leaf {
  readonly kind: 'signal';
  readonly name: string;
  readonly deadline: number | null;
  readonly timeoutMs: number;
}
type LeafState = ChildState | ActivityState | TimerState | ImmediateState | SignalWaitState;

/** A node of the thing the generator is blocked on: a leaf, or a barrier group (possibly nested). */
type WaitNode =
  | { type: 'leaf'; leaf: LeafState; leafIndex: number }
  | {
      type: 'group';
      path: string;
      settled: boolean;
      keys: string[] | null; // object keys, or null for an array
      members: WaitNode[];
      /** Only for a group whose members are all leaves. */
      tally?: Tally;
    };

type GroupResult = { state: 'open' } | { state: 'ok'; value: unknown } | { state: 'failed'; leaf: LeafState & { leafIndex: number } };

export interface ActivityTask {
  path: string;
  name: string;
  input: unknown;
}

/** A signal this run sends to another run (its child), delivered exactly once by signal id. */
export interface OutboundSignal {
  runId: string;
  signalId: string;
  name: string;
  payload: unknown;
}

export type EngineClose =
  | { status: 'completed'; result: unknown }
  | { status: 'failed'; error: SerializedError }
  | { status: 'cancelled'; error: SerializedError; result?: unknown }
  | { status: 'continued'; next: NewRun }
  | { status: 'timed_out'; error: SerializedError };

/** What one activation decided, for the host to commit in one journal transaction. */
export interface ActivationOutput {
  events: NewEvent[];
  children: NewRun[];
  /** Activities issued in this activation (the host runs them). */
  activities: ActivityTask[];
  /** Signals to other runs, written to their inboxes in the same transaction. */
  signals: OutboundSignal[];
  /** Children the parent stopped waiting for (timeout): closed per their policy in the same transaction. */
  closeChildren: { runId: string; policy: ParentClosePolicy }[];
  close?: EngineClose;
}

export class RunEngine {
  private readonly maxChildDepth: number;
  private history: JournalEvent[] = [];
  private cursor = 0;
  private gen: WorkflowGenerator<unknown> | null = null;
  private started = false;
  private blocked: WaitNode | null = null;
  private position = 0;
  private closedWith: ActivationOutput['close'] | undefined;

  // The leaves by kind, made on their first entry: most engines (a run of one activity, each inline child of a
  // fan-out) use one of these, and eight empty Maps were a third of a 30,000-child fan-out's engine allocations.
  private childByPath?: Map<string, ChildState>;
  private childByCallId?: Map<string, ChildState>;
  private childByRunId?: Map<string, ChildState>;
  private usedIds?: Map<string, string>;
  private activities?: Map<string, ActivityState>;
  private timers?: Map<string, TimerState>;
  /** Signals received and not yet taken by a wait, in journal order. */
  private readonly signalBuffer: { signalId: string; name: string; payload: unknown }[] = [];
  private signalWaits?: Map<string, SignalWaitState>;
  private seenSignals?: Set<string>;
  /** What patched(id) answered in this run, by patch id (see decidePatch). */
  private patches?: Map<string, boolean>;
  /** Execution timeout of this run (from RunStarted). */
  private runDeadline: number | null = null;
  /** Set once CancelRequested is journaled: the code gets CancelledError once, then may clean up until `deadline`. */
  private cancelState: { reason: string; deadline: number; delivered: boolean } | null = null;

  private out: ActivationOutput = emptyOutput();
  private clockNow = 0;
  private committed = 0;

  constructor(
    private readonly def: WorkflowDef,
    readonly run: EngineRun,
    private readonly options: EngineOptions = {},
  ) {
    this.maxChildDepth = options.maxChildDepth ?? DEFAULT_MAX_CHILD_DEPTH;
  }

  /** The seq of the last event this engine has seen or produced. */
  get lastSeq(): number {
    return this.history.length;
  }

  /** The seq of the last event known to be in the journal (replayed, or committed via markCommitted). */
  get committedSeq(): number {
    return this.committed;
  }

  /** The host committed everything this engine produced so far. */
  markCommitted(): void {
    this.committed = this.history.length;
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  get events(): readonly JournalEvent[] {
    return this.history;
  }

  /**
   * Replays a journal from its start (seq 1, RunStarted). Throws NonDeterminismError when the code no longer issues
   * what the journal recorded, CorruptJournalError when the journal itself is not a valid history. If the code,
   * after the last journaled event, goes on to issue new commands, they are left in the output for the host to
   * commit (this is how a brand-new run takes its first step).
   */
  replay(events: readonly JournalEvent[], now: number): void {
    if (this.history.length) throw new Error('RunEngine.replay: engine already has history');
    this.clockNow = now;
    events.forEach((e, i) => {
      if (e.seq !== i + 1) throw new CorruptJournalError(this.run.runId, `expected seq ${i + 1}, found ${e.seq} (gap or reorder)`);
    });
    const first = events[0];
    if (!first || first.type !== 'RunStarted') throw new CorruptJournalError(this.run.runId, 'the first event is not RunStarted');
    this.history = events.slice();
    this.committed = events.length;
    this.cursor = 1;
    this.runDeadline = first.payload.deadline ?? null;
    this.start(first.payload.input);
    while (this.cursor < this.history.length) {
      const e = this.history[this.cursor]!;
      if (!this.closed && this.closeFromOutsideAtCursor()) continue;
      if (this.closed && !DECISION_TYPES.has(e.type)) {
        this.cursor++;
        continue;
      }
      if (DECISION_TYPES.has(e.type)) {
        throw new NonDeterminismError(e.seq, describeEvent(e), `nothing (the code ${this.describeBlocked()})`);
      }
      this.cursor++;
      this.apply(e);
      this.advance();
    }
  }

  /**
   * One live step: journals the deliveries (ordered by close time, then call path, so that the earliest close is
   * seen first), advancing the generator after each. Deliveries already known (a child outcome read twice) are
   * dropped. Returns everything decided since the last call.
   */
  activate(deliveries: NewEvent[], now: number): ActivationOutput {
    this.clockNow = now;
    const fresh = deliveries.filter((d) => this.isNews(d)).sort(compareDeliveries);
    for (const d of fresh) {
      if (this.closed) break;
      this.appendLive(d);
      this.apply(d);
      this.advance();
    }
    // The execution timeout is reached: the run closes as timed_out without running more code.
    if (this.runDeadline !== null && !this.closed && now >= this.runDeadline) {
      this.decide({ type: 'RunTimedOut', payload: { deadline: this.runDeadline } });
      this.closedWith = { status: 'timed_out', error: serializeError(new RunTimeoutError(this.run.runId, this.runDeadline)) };
      this.blocked = null;
    }
    // The grace period of a cancellation is over: the run closes as cancelled without running more code.
    const c = this.cancelState;
    if (c && !this.closed && now >= c.deadline) {
      this.decide({ type: 'RunCancelled', payload: { reason: c.reason, forced: true } });
      this.closedWith = { status: 'cancelled', error: serializeError(new CancelledError(c.reason)) };
      this.blocked = null;
    }
    return this.takeOutput();
  }

  /**
   * Closes the generator where it stands (its finally blocks run; whatever they yield is ignored). For hosts that
   * drop an engine in a process that goes on, such as the replay tester after a replay, so that state the code
   * cleans up in `finally` is cleaned up. Never journals anything.
   */
  dispose(): void {
    const g = this.gen;
    this.gen = null;
    this.blocked = null;
    try {
      g?.return(undefined);
    } catch {
      // (a finally block that throws: nothing to report to anyone)
    }
  }

  /** Everything decided since the last call (for a new run, its first step after replay). */
  takeOutput(): ActivationOutput {
    const o = this.out;
    this.out = emptyOutput();
    if (this.closedWith && !o.close && o.events.some((e) => CLOSE_TYPES.has(e.type))) o.close = this.closedWith;
    return o;
  }

  /**
   * Puts taken output back in front of whatever comes next, uncommitted (a host that ran a new run's first step
   * ahead of time hands the engine over to the run's own actor, which commits it).
   */
  restoreOutput(o: ActivationOutput): void {
    const n = this.out;
    this.out = {
      events: [...o.events, ...n.events],
      children: [...o.children, ...n.children],
      // only those still open: some finished while the output was out
      activities: [...o.activities.filter((a) => !this.activities?.get(a.path)?.outcome), ...n.activities],
      signals: [...o.signals, ...n.signals],
      closeChildren: [...o.closeChildren, ...n.closeChildren],
    };
  }

  /** Child runs (their newest run ids) whose outcome this run has not journaled yet. */
  openChildren(): string[] {
    const ids: string[] = [];
    for (const c of (this.childByPath?.values() ?? [])) if (!c.outcome) ids.push(c.currentRunId);
    return ids;
  }

  /** Child run ids (any run of the child's chain) with their call paths, for building deliveries. */
  childPath(childRunId: string): { path: string; callId: string; currentRunId: string } | undefined {
    const c = this.childByRunId?.get(childRunId);
    return c ? { path: c.path, callId: c.ref.callId, currentRunId: c.currentRunId } : undefined;
  }

  /** What each patched(id) this run reached answered (true: the new code), in the order first reached. */
  get patchesSeen(): ReadonlyMap<string, boolean> {
    return this.patches ?? NO_PATCHES;
  }

  /** Whether a CancelRequested is journaled (the host then stops fetching it). */
  get cancelRequested(): boolean {
    return this.cancelState !== null;
  }

  /** Whether the run has ever started a child (a close with none has no open children to apply policies to). */
  get startedChildren(): boolean {
    return (this.childByPath?.size ?? 0) > 0;
  }

  /** The reason of the journaled (or just delivered) cancel request, or null. */
  get cancelReason(): string | null {
    return this.cancelState?.reason ?? null;
  }

  /** Signal ids this run has journaled (so the host never delivers one twice). */
  hasSignal(signalId: string): boolean {
    return this.seenSignals?.has(signalId) ?? false;
  }

  /** Activities scheduled and not yet finished (including ones journaled by a worker that died). */
  openActivities(): ActivityTask[] {
    const out: ActivityTask[] = [];
    for (const a of (this.activities?.values() ?? [])) if (!a.outcome) out.push({ path: a.path, name: a.name, input: a.input });
    return out;
  }

  /** Deliveries for every deadline reached at `now`: timers, signal-wait timeouts, child timeouts. */
  dueTimers(now: number): NewEvent[] {
    const out: NewEvent[] = [];
    for (const t of (this.timers?.values() ?? [])) {
      if (!t.outcome && t.fireAt <= now) out.push({ type: 'TimerFired', payload: { path: t.path, closedAt: t.fireAt } });
    }
    for (const w of (this.signalWaits?.values() ?? [])) {
      if (!w.outcome && w.deadline !== null && w.deadline <= now) out.push({ type: 'TimerFired', payload: { path: w.path, closedAt: w.deadline } });
    }
    for (const c of (this.childByPath?.values() ?? [])) {
      if (!c.outcome && c.deadline !== null && c.deadline <= now) {
        out.push({ type: 'ChildTimedOut', payload: { path: c.path, callId: c.ref.callId, childRunId: c.currentRunId, closedAt: c.deadline, byParent: true } });
      }
    }
    return out;
  }

  /** What wakes this run next, derived from what its generator waits on. */
  waitSpec(): WaitSpec {
    const spec: WaitSpec = { timerAt: null, onClose: [], onFailure: [], onAllClosed: [], busy: this.openActivities().length > 0 };
    const node = this.blocked;
    if (!node || this.closed) return spec;
    const earliest = (t: number | null) => {
      if (t !== null) spec.timerAt = Math.min(spec.timerAt ?? Infinity, t);
    };
    if (this.cancelState) earliest(this.cancelState.deadline);
    earliest(this.runDeadline);
    if (node.type === 'leaf') {
      const l = node.leaf;
      if (!l.outcome && l.kind === 'child') {
        spec.onClose.push(l.currentRunId);
        earliest(l.deadline);
      }
      if (!l.outcome && l.kind === 'timer') earliest(l.fireAt);
      if (!l.outcome && l.kind === 'signal') earliest(l.deadline);
      return spec;
    }
    let onlyChildrenOpen = true;
    const openChildren: string[] = [];
    const walk = (n: WaitNode, failFast: boolean): void => {
      if (n.type === 'group') {
        for (const m of n.members) walk(m, failFast && !n.settled);
        return;
      }
      const l = n.leaf;
      if (l.outcome) return;
      if (l.kind === 'child') {
        openChildren.push(l.currentRunId);
        if (failFast) spec.onFailure.push(l.currentRunId);
        earliest(l.deadline);
      } else {
        onlyChildrenOpen = false;
        if (l.kind === 'timer') earliest(l.fireAt);
        if (l.kind === 'signal') earliest(l.deadline);
      }
    };
    walk(node, true);
    // Successful closes wake the parent only when they complete the whole barrier (SPEC section 4).
    if (onlyChildrenOpen) spec.onAllClosed = openChildren;
    return spec;
  }

  /** A short description of what the generator waits on (for errors and describe()). */
  describeBlocked(): string {
    if (this.closed) return 'has closed';
    const n = this.blocked;
    if (!n) return 'has not started';
    if (n.type === 'group') return `is waiting on the barrier at path ${n.path}`;
    return `is waiting on ${n.leaf.kind} at path ${n.leaf.path}`;
  }

  /**
   * What the generator waits on now, leaf by leaf, as describe() shows it: read from the engine's own state (the
   * one interpreter), so it cannot disagree with what the run will do. Barrier members carry their group, the path
   * of groups from the outermost barrier to the innermost, their index in the innermost group and its size. At most
   * `limit` waits are built (in call-path order); `total` counts them all (a commit stores the first 50 of a 10,000-child
   * barrier without building the other 9,950).
   */
  openWaits(limit = Infinity): StoredWaits {
    const node = this.blocked;
    const out: OpenWait[] = [];
    let total = 0;
    if (!node || this.closed) return { waits: out, total };
    const leafWait = (l: LeafState, since: number): OpenWait | null => {
      if (l.outcome || l.kind === 'immediate') return null;
      if (total++ >= limit) return null;
      const base = { path: l.path, since: l.since ?? since };
      switch (l.kind) {
        case 'child':
          return {
            kind: 'child',
            ...base,
            workflow: l.ref.workflow,
            callId: l.ref.callId,
            childRunId: l.currentRunId,
            childWorkflowId: l.ref.childWorkflowId,
            ...(l.attempt > 1 ? { attempt: l.attempt } : {}),
            ...(l.deadline !== null ? { deadline: l.deadline } : {}),
          };
        case 'activity':
          return { kind: 'activity', ...base, activity: l.name };
        case 'timer':
          return { kind: 'timer', ...base, fireAt: l.fireAt };
        case 'signal':
          return { kind: 'signal', ...base, signal: l.name, ...(l.deadline !== null ? { deadline: l.deadline } : {}) };
      }
    };
    if (node.type === 'leaf') {
      const w = leafWait(node.leaf, this.clockNow);
      return { waits: w ? [w] : [], total };
    }
    const walk = (n: WaitNode & { type: 'group' }, groups: string[]): void => {
      n.members.forEach((m, i) => {
        if (m.type === 'group') return walk(m, [...groups, `${groups[groups.length - 1]}/${i}`]);
        const w = leafWait(m.leaf, this.clockNow);
        if (w) out.push({ ...w, groupId: groups[groups.length - 1]!, groupPath: groups, index: i, size: n.members.length, leafIndex: m.leafIndex });
      });
    };
    walk(node, [node.path]);
    return { waits: out, total };
  }

  // -------------------------------------------------------------------------------------------------------------

  private start(input: unknown): void {
    this.started = true;
    try {
      const gen = this.def.body(input);
      if (!gen || typeof (gen as WorkflowGenerator<unknown>).next !== 'function') {
        throw new TypeError(`workflow '${this.def.name}' must be declared with function* (its body returned ${typeof gen})`);
      }
      this.gen = gen;
    } catch (err) {
      this.decideClose(err);
      return;
    }
    this.step({ ok: true, value: undefined }, null);
    this.advance();
  }

  /** Resumes the generator for as long as what it waits on is settled. */
  private advance(): void {
    while (this.started && !this.closed && this.blocked) {
      const node = this.blocked;
      const c = this.cancelState;
      if (c && !c.delivered) {
        // Graceful cancel: CancelledError at the current yield, so try/finally compensation can run.
        c.delivered = true;
        this.blocked = null;
        this.step({ ok: false, error: new CancelledError(c.reason) }, nodePath(node));
        continue;
      }
      let r: ReturnType<RunEngine['evaluate']>;
      try {
        r = this.evaluate(node);
      } catch (err) {
        if (err === CLOSED_FROM_OUTSIDE) return;
        throw err;
      }
      if (r.state === 'open') return;
      this.blocked = null;
      if (r.state === 'ok') {
        this.step({ ok: true, value: r.value }, null);
      } else {
        this.step({ ok: false, error: r.error }, r.path);
      }
    }
  }

  /** Sends one outcome into the generator and records what it does next. */
  private step(resume: Outcome, failurePath: string | null): void {
    try {
      this.stepCode(resume, failurePath);
    } catch (err) {
      if (err !== CLOSED_FROM_OUTSIDE) throw err;
    }
  }

  private stepCode(resume: Outcome, failurePath: string | null): void {
    let res: IteratorResult<unknown, unknown>;
    let input: Outcome = resume;
    let failedAt = failurePath;
    for (;;) {
      try {
        res = input.ok ? this.gen!.next(input.value) : this.gen!.throw(input.error);
      } catch (err) {
        this.decideClose(err);
        return;
      }
      if (!input.ok && failedAt !== null) {
        this.decide({ type: 'FailureHandled', payload: { path: failedAt, error: serializeError(input.error) } });
      }
      if (res.done) {
        this.decideComplete(res.value);
        return;
      }
      if (res.value instanceof PatchCommand) {
        // patched()/deprecatePatch() answer at once and take no call path: adding one moves no other command.
        const taken = this.decidePatch(res.value);
        input = { ok: true, value: res.value.deprecated ? undefined : taken };
        failedAt = null;
        continue;
      }
      const path = String(this.position++);
      const cmd = res.value;
      if (cmd instanceof ContinueAsNewCommand) {
        this.decideContinue(cmd.input);
        return;
      }
      if (!(cmd instanceof Command)) {
        input = { ok: false, error: new TypeError(`workflow '${this.def.name}' yielded ${typeof cmd}; yield commands (child, all, activity, sleep, …)`) };
        failedAt = path;
        continue;
      }
      try {
        this.blocked = this.issue(cmd, path, { next: 0 });
      } catch (err) {
        if (err === CLOSED_FROM_OUTSIDE || err instanceof NonDeterminismError || err instanceof CorruptJournalError || err instanceof WorkflowCodeError) throw err;
        // Bad input to a command (not serializable, a foreign handle): thrown at that yield, deterministically.
        input = { ok: false, error: err as Error };
        failedAt = path;
        continue;
      }
      return;
    }
  }

  /** Issues one command at `path`, journaling (or matching) its decision, and returns what the generator waits on. */
  private issue(cmd: Command<unknown>, path: string, leafCounter: { next: number }): WaitNode {
    if (cmd instanceof AllCommand) return this.issueGroup(cmd.shape, path, cmd.settled, leafCounter);
    const leaf = this.issueLeaf(cmd, path);
    return { type: 'leaf', leaf, leafIndex: leafCounter.next++ };
  }

  private issueGroup(shape: Shape, path: string, settled: boolean, counter: { next: number }): WaitNode {
    // Leaves are numbered depth-first, left to right, across nested groups: the leaf index of SPEC section 4.
    // A plain array or object inherits settled-ness from its enclosing group (not from the outermost one): inside
    // allSettled(…) it is a group of outcomes, inside a nested all(…) it fails fast.
    const build = (s: Shape, enclosingSettled: boolean): WaitNode => {
      if (s instanceof AllCommand) return groupOf(s.shape, s.settled);
      if (s instanceof Command) {
        const leafPath = `${path}.${counter.next}`;
        return { type: 'leaf', leaf: this.issueLeaf(s, leafPath), leafIndex: counter.next++ };
      }
      return groupOf(s, enclosingSettled);
    };
    const groupOf = (s: Shape, st: boolean): WaitNode => {
      const keys = Array.isArray(s) ? null : Object.keys(s as object);
      const members = keys ? keys.map((k) => build((s as Record<string, Shape>)[k]!, st)) : (s as Shape[]).map((m) => build(m, st));
      return withTally({ type: 'group', path, settled: st, keys, members });
    };
    return groupOf(shape, settled);
  }

  private issueLeaf(cmd: Command<unknown>, path: string): LeafState {
    if (cmd instanceof ChildCommand) return this.issueChild(cmd, path);
    if (cmd instanceof ChildResultCommand) {
      const c = this.childByCallId?.get(cmd.handle?.callId);
      if (!c) throw new TypeError('handle.result(): the handle does not belong to a child of this run');
      return c;
    }
    if (cmd instanceof ActivityCommand) {
      const live = this.isLive();
      const { hash, value } = this.payloadOf(cmd.input, live, `input of activity '${cmd.name}'`);
      const e = this.decide({ type: 'ActivityScheduled', payload: { path, name: cmd.name, inputHash: hash, input: value } });
      const input = (e.payload as EventPayloads['ActivityScheduled']).input;
      const a: ActivityState = { kind: 'activity', path, name: cmd.name, input, outcome: null, closedAt: 0, since: this.timeOf(e) };
      (this.activities ??= new Map()).set(path, a);
      if (live) this.out.activities.push({ path, name: cmd.name, input });
      return a;
    }
    if (cmd instanceof SleepCommand) {
      const e = this.decide({ type: 'TimerStarted', payload: { path, fireAt: this.clockNow + cmd.ms } });
      const t: TimerState = { kind: 'timer', path, fireAt: (e.payload as EventPayloads['TimerStarted']).fireAt, outcome: null, closedAt: 0, since: this.timeOf(e) };
      (this.timers ??= new Map()).set(path, t);
      return t;
    }
    if (cmd instanceof SideEffectCommand) {
      const live = this.isLive();
      let value: unknown = null;
      if (live) value = journalValue(produceSideEffect(cmd, this.clockNow), `value of ${cmd.effect}()`);
      const e = this.decide({ type: 'SideEffect', payload: { path, kind: cmd.effect, value } });
      return immediate(path, (e.payload as EventPayloads['SideEffect']).value, this.clockNow);
    }
    if (cmd instanceof WaitForSignalCommand) {
      const e = this.decide({
        type: 'SignalWaitStarted',
        payload: { path, name: cmd.name, deadline: cmd.timeout === null ? null : this.clockNow + cmd.timeout },
      });
      const deadline = (e.payload as EventPayloads['SignalWaitStarted']).deadline;
      const w: SignalWaitState = { kind: 'signal', path, name: cmd.name, deadline, timeoutMs: cmd.timeout ?? 0, outcome: null, closedAt: 0, since: this.timeOf(e) };
      (this.signalWaits ??= new Map()).set(path, w);
      // A signal that arrived before the wait was buffered: the oldest of that name is taken now.
      const i = this.signalBuffer.findIndex((b) => b.name === cmd.name);
      if (i >= 0) {
        const [b] = this.signalBuffer.splice(i, 1);
        settle(w, { ok: true, value: b!.payload }, this.clockNow);
      }
      return w;
    }
    if (cmd instanceof ChildSignalCommand) {
      const c = this.childByCallId?.get(cmd.handle?.callId);
      if (!c) throw new TypeError('handle.signal(): the handle does not belong to a child of this run');
      if (typeof cmd.name !== 'string' || !cmd.name) throw new TypeError('handle.signal(name): name must be a non-empty string');
      const live = this.isLive();
      const payload = live ? journalValue(cmd.payload, `payload of signal '${cmd.name}'`) : null;
      const signalId = deriveId('s_', this.run.runId, path);
      const e = this.decide({
        type: 'ChildSignalled',
        payload: { path, callId: c.ref.callId, childRunId: c.currentRunId, signalId, name: cmd.name, payload },
      });
      if (c.outcome) {
        // The parent already journaled the child's close: the signal would never be read.
        return { kind: 'immediate', path, outcome: { ok: false, error: new RunClosedError(c.currentRunId, 'closed') }, closedAt: this.clockNow };
      }
      if (live) this.out.signals.push({ runId: c.currentRunId, signalId, name: cmd.name, payload: (e.payload as EventPayloads['ChildSignalled']).payload });
      return immediate(path, undefined, this.clockNow);
    }
    // (every child started so far, in the order started: childByPath keeps insertion order)
    if (cmd.kind === 'children') return immediate(path, Array.from((this.childByPath?.values() ?? []), handleOf), this.clockNow);
    throw new TypeError(`command '${cmd.kind}' cannot be used here`);
  }

  private issueChild(cmd: ChildCommand<unknown>, path: string): LeafState {
    const workflow = cmd.def.name;
    const live = this.isLive();
    // A child with a retry policy keeps its input even on replay: a retry decided after this engine was rebuilt by
    // replay creates the next attempt's run with it.
    const { hash, value: input } = this.payloadOf(cmd.input, live || !!cmd.options.retry, `input of child workflow '${workflow}'`);
    const id = cmd.options.id;
    if (id !== undefined && (typeof id !== 'string' || id.length === 0)) throw new TypeError('child option id must be a non-empty string');
    const childWorkflowId = id !== undefined ? `${this.run.workflowId}/${id}` : `${this.run.workflowId}/${workflow}@${path}`;
    const depth = this.run.depth + 1;

    let refusal: Error | null = null;
    if (this.cancelState) refusal = new CancelledError(`run is being cancelled (${this.cancelState.reason}); no new children`);
    else if (depth > this.maxChildDepth) refusal = new ChildDepthExceededError(workflow, depth, this.maxChildDepth);
    else if (id !== undefined && this.usedIds?.has(id)) refusal = new DuplicateChildIdError(id, childWorkflowId);
    if (refusal) {
      const e = this.decide({ type: 'ChildStartFailed', payload: { path, workflow, inputHash: hash, error: serializeError(refusal), closedAt: this.clockNow } });
      // The refusal's close time is journaled and the journaled one wins: on replay the engine's clock is the replay's,
      // and a failure choice that is not journaled (an all() nested in allSettled()) must not depend on it.
      const p = e.payload as EventPayloads['ChildStartFailed'];
      const closedAt = p.closedAt ?? (e as Partial<JournalEvent>).recordedAt ?? this.clockNow;
      return { kind: 'immediate', path, outcome: { ok: false, error: refusal }, closedAt };
    }

    // Derived, never random: the same parent at the same call path (and id) always names the same child.
    const childRunId = deriveId('r_', this.run.runId, path, id ?? '');
    const callId = deriveId('c_', this.run.runId, path);
    const queue = cmd.options.queue ?? cmd.def.options.queue ?? this.run.queue;
    const policy = cmd.options.parentClosePolicy ?? 'cancel';
    if (!['cancel', 'terminate', 'abandon'].includes(policy)) throw new TypeError(`parentClosePolicy must be cancel, terminate or abandon; got ${String(policy)}`);
    const timeout = cmd.options.timeout;
    if (timeout !== undefined && (!Number.isFinite(timeout) || timeout < 0)) throw new RangeError(`child timeout must be a finite number >= 0, got ${timeout}`);
    const retry = cmd.options.retry ? { ...DEFAULT_CHILD_RETRY, ...cmd.options.retry } : null;
    const scheduled = this.decide({
      type: 'ChildScheduled',
      payload: {
        path,
        callId,
        workflow,
        inputHash: hash,
        childRunId,
        childWorkflowId,
        awaited: cmd.awaited,
        ...(id !== undefined ? { id } : {}),
        ...(queue !== this.run.queue ? { queue } : {}),
        ...(policy !== 'cancel' ? { parentClosePolicy: policy } : {}),
        ...(timeout !== undefined ? { deadline: this.clockNow + timeout } : {}),
      },
    });
    const deadline = (scheduled.payload as EventPayloads['ChildScheduled']).deadline ?? null;
    if (id !== undefined) (this.usedIds ??= new Map()).set(id, childWorkflowId);
    // Only a live decision creates the row; a replayed one already did, in the same transaction as its event.
    if (live) {
      this.out.children.push({ runId: childRunId, workflowId: childWorkflowId, workflow, input, queue, callId, depth, parentClosePolicy: policy });
    }
    const ref: ChildRef = { workflow, callId, childRunId, childWorkflowId };
    const state: ChildState = {
      kind: 'child',
      path,
      ref,
      outcome: null,
      closedAt: 0,
      since: this.timeOf(scheduled),
      currentRunId: childRunId,
      policy,
      deadline,
      timeoutValue: 'timeoutValue' in cmd.options ? { value: journalValue(cmd.options.timeoutValue, 'timeoutValue') } : null,
      retry,
      attempt: 1,
      spec: retry ? { workflow, input, inputHash: hash, id, workflowId: childWorkflowId, queue, awaited: cmd.awaited } : null,
    };
    (this.childByPath ??= new Map()).set(path, state);
    (this.childByCallId ??= new Map()).set(callId, state);
    (this.childByRunId ??= new Map()).set(childRunId, state);
    if (cmd.awaited) return state;
    return immediate(path, handleOf(state), this.clockNow);
  }

  /**
   * A command's input as journaled JSON and its hash. Live, the value is validated and round-tripped; on replay
   * only the hash is needed (the journaled value is used), which keeps replay cheap.
   */
  private payloadOf(input: unknown, live: boolean, what: string): { hash: string; value: unknown } {
    if (live) {
      const { json, value } = toJson(input, what);
      return { hash: hashText(json), value };
    }
    let json: string | undefined;
    try {
      json = JSON.stringify(input);
    } catch {
      json = undefined;
    }
    // Unserializable input during replay cannot match anything journaled: validate it properly to throw the error.
    if (json === undefined) return { hash: hashText(toJson(input, what).json), value: null };
    return { hash: hashText(json), value: null };
  }

  /**
   * Journals a decision: on replay it must equal the event at the cursor (which is returned, so journaled values
   * such as timer deadlines and side-effect results win); live it is appended.
   */
  private decide(e: NewEvent): NewEvent {
    this.skipNotes();
    // The run was closed from outside before its code got here: the code stops where the journal stops.
    if (this.closeFromOutsideAtCursor()) throw CLOSED_FROM_OUTSIDE;
    if (this.cursor < this.history.length) {
      const j = this.history[this.cursor]!;
      if (!sameDecision(j, e)) throw new NonDeterminismError(j.seq, describeEvent(j), describeEvent(e));
      this.cursor++;
      return j;
    }
    this.appendLive(e);
    return e;
  }

  private appendLive(e: NewEvent): void {
    const seq = this.history.length + 1;
    this.history.push({ ...e, seq, recordedAt: this.clockNow } as JournalEvent);
    this.cursor = this.history.length;
    this.out.events.push(e);
  }

  private isLive(): boolean {
    this.skipNotes();
    return this.cursor >= this.history.length;
  }

  /**
   * If the journal at the cursor records a close the code did not decide (terminated, timed out, cancelled at the end
   * of a grace period, or cancelled at once by a client or a parent-close policy: CancelRequested due at once followed
   * by a forced RunCancelled), takes it: the run is closed and the cursor passes it. What follows is the closing
   * transaction's notes.
   */
  private closeFromOutsideAtCursor(): boolean {
    const e = this.history[this.cursor];
    if (!e) return false;
    const next = this.history[this.cursor + 1];
    const atOnce = e.type === 'CancelRequested' && e.payload.deadline <= e.payload.closedAt && next?.type === 'RunCancelled' && next.payload.forced;
    if (!atOnce && !closedFromOutside(e)) return false;
    const closing = atOnce ? next! : e;
    this.cursor += atOnce ? 2 : 1;
    if (atOnce) this.cancelState = { reason: e.payload.reason, deadline: e.payload.deadline, delivered: true };
    this.closedWith = externalClose(closing);
    this.blocked = null;
    return true;
  }

  /** Operator notes (a block, a resume) sit between decisions without being one: the cursor steps over them. */
  private skipNotes(): void {
    while (this.cursor < this.history.length && EVENT_FAMILY[this.history[this.cursor]!.type] === 'note') this.cursor++;
  }

  /** The journal time of a decision: its recorded time on replay, the activation's clock live. */
  private timeOf(e: NewEvent): number {
    return (e as Partial<JournalEvent>).recordedAt ?? this.clockNow;
  }

  /**
   * patched(id): true where the journal has this patch's marker (consumed), or live (the marker is appended); false
   * where the journal goes on without it: the run passed here under the code before the patch. deprecatePatch(id)
   * takes a marker the same way and records one live (so that a rollback to the patched() code still replays). The
   * first call of a patch id in a run decides; later ones return the same and journal nothing.
   */
  private decidePatch(cmd: PatchCommand<unknown>): boolean {
    // Decided once per run: a patched() in a loop keeps its first answer (and journals one marker).
    const known = this.patches?.get(cmd.patchId);
    if (known !== undefined) return known;
    const taken = this.patchAtCursor(cmd);
    (this.patches ??= new Map()).set(cmd.patchId, taken);
    return taken;
  }

  private patchAtCursor(cmd: PatchCommand<unknown>): boolean {
    this.skipNotes();
    if (this.closeFromOutsideAtCursor()) throw CLOSED_FROM_OUTSIDE;
    const j = this.history[this.cursor];
    if (!j && !cmd.deprecated && this.options.prePatch?.(cmd.patchId, this.run)) return false;
    if (!j) {
      this.appendLive({ type: 'PatchMarker', payload: { patchId: cmd.patchId, ...(cmd.deprecated ? { deprecated: true } : {}) } });
      return true;
    }
    if (j.type === 'PatchMarker' && j.payload.patchId === cmd.patchId) {
      this.cursor++;
      return true;
    }
    return false;
  }

  private decideComplete(value: unknown): void {
    let result: unknown;
    try {
      result = journalValue(value, `result of workflow '${this.def.name}'`);
    } catch (err) {
      this.decideClose(err);
      return;
    }
    if (this.cancelState) {
      // Cancellation was requested: whatever the code returns after cleaning up, the run closes as cancelled.
      this.decide({ type: 'RunCancelled', payload: { reason: this.cancelState.reason, forced: false, result } });
      this.closedWith = { status: 'cancelled', error: serializeError(new CancelledError(this.cancelState.reason)), result };
    } else {
      this.decide({ type: 'RunCompleted', payload: { result } });
      this.closedWith = { status: 'completed', result };
    }
    this.blocked = null;
  }

  /**
   * A failed child with retries left starts its next attempt: a new run of the same call, created now and due after
   * the backoff. The decision is journaled right after the failure, so replay retries at the same point.
   */
  private retryChild(c: ChildState, type: ChildOutcomeType, payload: ChildOutcomePayload & { error?: SerializedError; byParent?: boolean }): boolean {
    const p = c.retry;
    if (!p || c.attempt >= p.maximumAttempts) return false;
    if (type !== 'ChildFailed' && !(type === 'ChildTimedOut' && !payload.byParent)) return false;
    const err = payload.error;
    if (err && (err.nonRetryable || p.nonRetryableErrors.includes(err.name))) return false;
    const attempt = c.attempt + 1;
    const s = c.spec!;
    const childRunId = deriveId('r_', this.run.runId, c.path, s.id ?? '', String(attempt));
    const workflowId = `${s.workflowId}~${attempt}`;
    const startAt = payload.closedAt + backoffMs(p, c.attempt);
    const live = this.isLive();
    this.decide({
      type: 'ChildScheduled',
      payload: {
        path: c.path,
        callId: c.ref.callId,
        workflow: s.workflow,
        inputHash: s.inputHash,
        childRunId,
        childWorkflowId: workflowId,
        awaited: s.awaited,
        attempt,
        startAt,
        ...(s.id !== undefined ? { id: s.id } : {}),
        ...(s.queue !== this.run.queue ? { queue: s.queue } : {}),
        ...(c.policy !== 'cancel' ? { parentClosePolicy: c.policy } : {}),
      },
    });
    if (live) {
      this.out.children.push({
        runId: childRunId,
        workflowId,
        workflow: s.workflow,
        input: s.input,
        queue: s.queue,
        callId: c.ref.callId,
        depth: this.run.depth + 1,
        parentClosePolicy: c.policy,
        startAt,
      });
    }
    c.attempt = attempt;
    c.currentRunId = childRunId;
    (this.childByRunId ??= new Map()).set(childRunId, c);
    return true;
  }

  private decideContinue(input: unknown): void {
    let value: unknown;
    try {
      value = journalValue(input, `input of continueAsNew for '${this.def.name}'`);
    } catch (err) {
      this.decideClose(err);
      return;
    }
    const nextRunId = continuedRunId(this.run.runId);
    const e = this.decide({ type: 'RunContinued', payload: { input: value, nextRunId } });
    const p = e.payload as EventPayloads['RunContinued'];
    this.closedWith = {
      status: 'continued',
      next: { runId: p.nextRunId, workflowId: this.run.workflowId, workflow: this.def.name, input: p.input, queue: this.run.queue, depth: this.run.depth },
    };
    this.blocked = null;
  }

  private decideClose(err: unknown): void {
    if (err instanceof NonDeterminismError || err instanceof CorruptJournalError || err instanceof WorkflowCodeError) throw err;
    // A bug in the workflow code (TypeError & co.) blocks the run instead of failing it: after a fix, an operator
    // resumes it and it replays with the new code. Only what the code throws on purpose fails the run.
    if (isProgrammingError(err)) throw new WorkflowCodeError(this.def.name, err);
    const error = serializeError(err);
    if (this.cancelState) {
      this.decide({ type: 'RunCancelled', payload: { reason: this.cancelState.reason, forced: false, error } });
      this.closedWith = { status: 'cancelled', error: serializeError(new CancelledError(this.cancelState.reason)) };
    } else {
      this.decide({ type: 'RunFailed', payload: { error } });
      this.closedWith = { status: 'failed', error };
    }
    this.blocked = null;
  }

  /**
   * Applies an event the cursor reached (or a live delivery): a delivery through its rule; notes and the closing
   * transaction's events are history only; anything else is not a delivery and cannot be here.
   */
  private apply(e: JournalEvent | NewEvent): void {
    if (isDelivery(e)) return applyRule(RunEngine.deliveries, this, e.type, e.payload);
    const family = EVENT_FAMILY[e.type];
    if (family !== 'note' && family !== 'closing') throw new CorruptJournalError(this.run.runId, `unexpected event type ${e.type} at this point`);
  }

  /** Whether a delivery brings something this engine has not applied yet (anything else never does). */
  private isNews(d: NewEvent): boolean {
    return isDelivery(d) && newsRule(RunEngine.deliveries, this, d.type, d.payload);
  }

  /**
   * How each delivery is applied to the state it settles, and whether it is news: one entry per delivery type
   * (EVENT_FAMILY decides which types those are; a missing entry does not compile). A second delivery for a settled
   * leaf is history only.
   */
  private static readonly deliveries: DeliveryRules = (() => {
    const childNews = (en: RunEngine, p: ChildOutcomePayload): boolean => {
      const c = en.childByPath?.get(p.path);
      return !!c && !c.outcome;
    };
    const child = <K extends ChildOutcomeType>(type: K, outcome: (p: EventPayloads[K], ref: ChildRef) => Outcome): DeliveryRule<K> => ({
      news: childNews,
      apply: (en, p) => en.applyChildOutcome(type, p, (ref) => outcome(p, ref)),
    });
    const activityNews = (en: RunEngine, p: { path: string }): boolean => {
      const a = en.activities?.get(p.path);
      return !!a && !a.outcome;
    };
    return {
      ChildCompleted: child('ChildCompleted', (p) => ({ ok: true, value: p.result })),
      ChildFailed: child('ChildFailed', (p, ref) => ({ ok: false, error: new ChildFailedError(ref, p.error) })),
      ChildCancelled: child('ChildCancelled', (p, ref) => ({ ok: false, error: new ChildCancelledError(ref, p.error) })),
      ChildTerminated: child('ChildTerminated', (p, ref) => ({ ok: false, error: new ChildTerminatedError(ref, p.error) })),
      ChildTimedOut: child('ChildTimedOut', (p, ref) => ({ ok: false, error: new ChildTimeoutError(ref, p.error) })),
      ChildStarted: {
        news: (en, p) => {
          const c = en.childByPath?.get(p.path);
          return !!c && !c.outcome && c.currentRunId !== p.childRunId;
        },
        apply: (en, p) => {
          const c = en.childByPath?.get(p.path);
          if (!c) throw new CorruptJournalError(en.run.runId, `ChildStarted for path ${p.path}, which scheduled no child`);
          c.currentRunId = p.childRunId;
          (en.childByRunId ??= new Map()).set(c.currentRunId, c);
        },
      },
      SignalReceived: {
        news: (en, p) => !en.seenSignals?.has(p.signalId),
        apply: (en, p) => {
          (en.seenSignals ??= new Set()).add(p.signalId);
          for (const w of (en.signalWaits?.values() ?? [])) {
            if (!w.outcome && w.name === p.name) {
              settle(w, { ok: true, value: p.payload }, p.closedAt);
              return;
            }
          }
          en.signalBuffer.push({ signalId: p.signalId, name: p.name, payload: p.payload });
        },
      },
      CancelRequested: {
        news: (en) => !en.cancelState,
        apply: (en, p) => {
          if (!en.cancelState) en.cancelState = { reason: p.reason, deadline: p.deadline, delivered: false };
        },
      },
      ActivityCompleted: {
        news: activityNews,
        apply: (en, p) => en.settleActivity(p, 'ActivityCompleted', () => ({ ok: true, value: p.result })),
      },
      ActivityFailed: {
        news: activityNews,
        apply: (en, p) => en.settleActivity(p, 'ActivityFailed', (a) => ({ ok: false, error: new ActivityFailedError(a.name, a.path, p.attempts, p.error) })),
      },
      TimerFired: {
        news: (en, p) => {
          const t = en.timers?.get(p.path) ?? en.signalWaits?.get(p.path);
          return !!t && !t.outcome;
        },
        apply: (en, p) => {
          const w = en.signalWaits?.get(p.path);
          if (w) {
            if (w.outcome) return;
            settle(w, { ok: false, error: new SignalTimeoutError(w.name, w.timeoutMs) }, p.closedAt);
            return;
          }
          const t = en.timers?.get(p.path);
          if (!t) throw new CorruptJournalError(en.run.runId, `TimerFired for path ${p.path}, which started no timer`);
          if (t.outcome) return;
          settle(t, { ok: true, value: undefined }, p.closedAt);
        },
      },
    };
  })();

  private applyChildOutcome(
    type: ChildOutcomeType,
    p: ChildOutcomePayload & { error?: SerializedError; byParent?: boolean },
    outcome: (ref: ChildRef) => Outcome,
  ): void {
    const c = this.childByPath?.get(p.path);
    if (!c) throw new CorruptJournalError(this.run.runId, `${type} for path ${p.path}, which scheduled no child`);
    if (c.outcome) return;
    if (p.childRunId !== c.currentRunId && type !== 'ChildTimedOut') return; // an earlier attempt's news
    if (this.retryChild(c, type, p)) return;
    settle(c, type === 'ChildTimedOut' && c.timeoutValue ? { ok: true, value: c.timeoutValue.value } : outcome(c.ref), p.closedAt);
    // The parent gave up on a child still open (its own deadline): close the child per its policy, in this commit.
    if (type === 'ChildTimedOut' && p.byParent && this.isLive()) {
      this.out.closeChildren.push({ runId: c.currentRunId, policy: c.policy });
    }
  }

  private settleActivity(p: { path: string; closedAt: number }, type: string, outcome: (a: ActivityState) => Outcome): void {
    const a = this.activities?.get(p.path);
    if (!a) throw new CorruptJournalError(this.run.runId, `${type} for path ${p.path}, which scheduled no activity`);
    if (a.outcome) return;
    settle(a, outcome(a), p.closedAt);
  }

  /** Settles what the generator waits on, if it can be: a value, or the error to throw (with its path). */
  private evaluate(node: WaitNode): { state: 'open' } | { state: 'ok'; value: unknown } | { state: 'failed'; error: Error; path: string } {
    if (node.type === 'leaf') {
      const o = node.leaf.outcome;
      if (!o) return { state: 'open' };
      return o.ok ? { state: 'ok', value: o.value } : { state: 'failed', error: o.error, path: node.leaf.path };
    }
    const r = evalGroup(node);
    if (r.state !== 'failed') return r;
    // The choice is journaled; on replay the journaled choice is authoritative.
    const chosen = r.leaf;
    const e = this.decide({ type: 'BarrierFailed', payload: { path: node.path, leafIndex: chosen.leafIndex, leafPath: chosen.path } });
    const p = e.payload as EventPayloads['BarrierFailed'];
    const leaf = p.leafIndex === chosen.leafIndex ? chosen : findLeaf(node, p.leafIndex);
    if (!leaf || !leaf.outcome || leaf.outcome.ok) {
      throw new NonDeterminismError(this.history[this.cursor - 1]!.seq, describeEvent(e), `a barrier whose leaf ${p.leafIndex} has not failed`);
    }
    return { state: 'failed', error: leaf.outcome.error, path: leaf.path };
  }
}

// ---------------------------------------------------------------------------------------------------------------

function emptyOutput(): ActivationOutput {
  return { events: [], children: [], activities: [], signals: [], closeChildren: [] };
}

function nodePath(n: WaitNode): string {
  return n.type === 'group' ? n.path : n.leaf.path;
}

function immediate(path: string, value: unknown, now: number): ImmediateState {
  return { kind: 'immediate', path, outcome: { ok: true, value }, closedAt: now };
}

function produceSideEffect(cmd: SideEffectCommand<unknown>, now: number): unknown {
  switch (cmd.effect) {
    case 'now':
      return now;
    case 'random':
      return Math.random();
    case 'uuid':
      return randomUUID();
    case 'sideEffect':
      return cmd.fn!();
  }
}

/** One delivery type's rule (see RunEngine.deliveries). */
interface DeliveryRule<K extends DeliveryType> {
  news(engine: RunEngine, p: EventPayloads[K]): boolean;
  apply(engine: RunEngine, p: EventPayloads[K]): void;
}
type DeliveryRules = { readonly [K in DeliveryType]: DeliveryRule<K> };

// The type and its payload travel together (TypeScript's correlated-union pattern): no casts at the call sites.
function applyRule<K extends DeliveryType>(rules: DeliveryRules, engine: RunEngine, type: K, payload: EventPayloads[K]): void {
  rules[type].apply(engine, payload);
}
function newsRule<K extends DeliveryType>(rules: DeliveryRules, engine: RunEngine, type: K, payload: EventPayloads[K]): boolean {
  return rules[type].news(engine, payload);
}

/** A child's handle, made once, when the code first asks for it. */
function handleOf(state: ChildState): ChildHandle<unknown> {
  if (state.handle) return state.handle;
  const handle: ChildHandle<unknown> = Object.freeze({
    workflow: state.ref.workflow,
    get runId() {
      return state.currentRunId;
    },
    workflowId: state.ref.childWorkflowId,
    callId: state.ref.callId,
    result: () => new ChildResultCommand(handle),
    signal: (sig: SignalDef<any> | string, payload?: unknown) => new ChildSignalCommand(handle, signalName(sig), payload),
  });
  return (state.handle = handle);
}

/** Settles a leaf (once: outcomes never change) and tells the flat barriers waiting on it. */
function settle(leaf: LeafState, outcome: Outcome, closedAt: number): void {
  leaf.closedAt = closedAt;
  leaf.outcome = outcome;
  const tallies = leaf.tallies;
  if (!tallies) return;
  leaf.tallies = undefined;
  for (const { tally, leafIndex } of tallies) tallyLeaf(tally, leaf, leafIndex);
}

/** Counts a settled leaf into a tally: one fewer open member; a failure competes for the barrier's error. */
function tallyLeaf(t: Tally, leaf: LeafState, leafIndex: number): void {
  t.open--;
  if (leaf.outcome!.ok) return;
  const f = t.failed;
  if (!f || leaf.closedAt < f.closedAt || (leaf.closedAt === f.closedAt && leafIndex < f.leafIndex)) t.failed = { ...leaf, leafIndex } as LeafState & { leafIndex: number };
}

/** Gives a group whose members are all leaves its tally: counted once now, then kept by settle(). */
function withTally(g: WaitNode & { type: 'group' }): WaitNode & { type: 'group' } {
  if (!g.members.every((m) => m.type === 'leaf')) return g;
  const tally: Tally = { open: g.members.length, failed: null };
  for (const m of g.members as Array<WaitNode & { type: 'leaf' }>) {
    if (m.leaf.outcome) tallyLeaf(tally, m.leaf, m.leafIndex);
    else (m.leaf.tallies ??= []).push({ tally, leafIndex: m.leafIndex });
  }
  g.tally = tally;
  return g;
}

/**
 * Evaluates a barrier group. An `all` group fails as soon as any leaf under it (outside nested allSettled groups)
 * has failed, choosing the earliest close, then the lowest leaf index; it succeeds when every member has. An
 * `allSettled` group settles when every member has settled.
 */
function evalGroup(g: WaitNode & { type: 'group' }): GroupResult {
  // A flat barrier answers from its tally until it completes (then its values are gathered, once).
  const t = g.tally;
  if (t) {
    if (!g.settled && t.failed) return { state: 'failed', leaf: t.failed };
    if (t.open > 0) return { state: 'open' };
  }
  if (g.settled) {
    const values: unknown[] = [];
    for (const m of g.members) {
      const v = settledValue(m);
      if (v === OPEN) return { state: 'open' };
      values.push(v);
    }
    return { state: 'ok', value: shapeOf(g, values) };
  }
  let chosen: (LeafState & { leafIndex: number }) | null = null;
  let open = false;
  const visit = (n: WaitNode): void => {
    if (n.type === 'group') {
      if (n.settled) {
        if (settledValue(n) === OPEN) open = true;
        return;
      }
      if (n.tally) {
        // (a nested flat all(): its open count and its best failure are those of its leaves)
        if (n.tally.open > 0) open = true;
        const f = n.tally.failed;
        if (f && (!chosen || f.closedAt < chosen.closedAt || (f.closedAt === chosen.closedAt && f.leafIndex < chosen.leafIndex))) chosen = f;
        return;
      }
      for (const m of n.members) visit(m);
      return;
    }
    const o = n.leaf.outcome;
    if (!o) {
      open = true;
      return;
    }
    if (o.ok) return;
    if (!chosen || n.leaf.closedAt < chosen.closedAt || (n.leaf.closedAt === chosen.closedAt && n.leafIndex < chosen.leafIndex)) {
      chosen = { ...n.leaf, leafIndex: n.leafIndex } as LeafState & { leafIndex: number };
    }
  };
  visit(g);
  if (chosen) return { state: 'failed', leaf: chosen };
  if (open) return { state: 'open' };
  return { state: 'ok', value: successValue(g) };
}

const OPEN = Symbol('open');

function settledValue(n: WaitNode): unknown {
  if (n.type === 'leaf') {
    const o = n.leaf.outcome;
    if (!o) return OPEN;
    return o.ok ? { status: 'fulfilled', value: o.value } : { status: 'rejected', reason: o.error };
  }
  if (n.settled) {
    const vals: unknown[] = [];
    for (const m of n.members) {
      const v = settledValue(m);
      if (v === OPEN) return OPEN;
      vals.push(v);
    }
    return shapeOf(n, vals);
  }
  // A plain nested array inside allSettled inherits settled-ness, so this is a nested all(): one outcome.
  const r = evalGroup(n);
  if (r.state === 'open') return OPEN;
  if (r.state === 'ok') return { status: 'fulfilled', value: r.value };
  return { status: 'rejected', reason: (r.leaf.outcome as { ok: false; error: Error }).error };
}

function successValue(n: WaitNode): unknown {
  if (n.type === 'leaf') return (n.leaf.outcome as { ok: true; value: unknown }).value;
  if (n.settled) return settledValue(n);
  return shapeOf(n, n.members.map(successValue));
}

function shapeOf(g: WaitNode & { type: 'group' }, values: unknown[]): unknown {
  if (!g.keys) return values;
  const o: Record<string, unknown> = {};
  g.keys.forEach((k, i) => (o[k] = values[i]));
  return o;
}

function findLeaf(n: WaitNode, leafIndex: number): LeafState | null {
  if (n.type === 'leaf') return n.leafIndex === leafIndex ? n.leaf : null;
  for (const m of n.members) {
    const f = findLeaf(m, leafIndex);
    if (f) return f;
  }
  return null;
}

/** Deliveries of one activation are journaled earliest close first, then by call path (leaf order). */
function compareDeliveries(a: NewEvent, b: NewEvent): number {
  const ta = (a.payload as { closedAt?: number }).closedAt ?? 0;
  const tb = (b.payload as { closedAt?: number }).closedAt ?? 0;
  if (ta !== tb) return ta - tb;
  // A cancel request goes before the outcomes of the same instant: those are its own cascade closing the run's
  // children, and the run must see CancelledError at the yield it waits on (so its compensation runs), not
  // ChildCancelledError for a child it is losing because of that very cancel.
  if (a.type === 'CancelRequested' || b.type === 'CancelRequested') return (a.type === 'CancelRequested' ? 0 : 1) - (b.type === 'CancelRequested' ? 0 : 1);
  // Signals have no call path: they go after same-time outcomes, in their given order.
  const pa = (a.payload as { path?: string }).path;
  const pb = (b.payload as { path?: string }).path;
  if (pa === undefined || pb === undefined) return (pa === undefined ? 1 : 0) - (pb === undefined ? 1 : 0);
  return comparePaths(pa, pb);
}

export function comparePaths(a: string, b: string): number {
  const pa = a.split('.');
  const pb = b.split('.');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const d = Number(pa[i]) - Number(pb[i]);
    if (d !== 0) return d;
  }
  return pa.length - pb.length;
}

/**
 * The fields a replayed decision must reproduce: kind, name, input hash, call path (SPEC section 6). One entry per
 * decision type (a missing one does not compile); a closing decision matches on its type alone.
 */
const SAME_DECISION: { readonly [K in DecisionType]: (journaled: EventPayloads[K], issued: EventPayloads[K]) => boolean } = {
  ChildScheduled: (a, b) => a.path === b.path && a.workflow === b.workflow && a.inputHash === b.inputHash && a.childRunId === b.childRunId && a.awaited === b.awaited,
  ChildStartFailed: (a, b) => a.path === b.path && a.workflow === b.workflow && a.inputHash === b.inputHash,
  ActivityScheduled: (a, b) => a.path === b.path && a.name === b.name && a.inputHash === b.inputHash,
  TimerStarted: (a, b) => a.path === b.path,
  BarrierFailed: (a, b) => a.path === b.path,
  FailureHandled: (a, b) => a.path === b.path,
  SignalWaitStarted: (a, b) => a.path === b.path && a.name === b.name,
  ChildSignalled: (a, b) => a.path === b.path && a.name === b.name && a.callId === b.callId,
  SideEffect: (a, b) => a.path === b.path && a.kind === b.kind,
  PatchMarker: (a, b) => a.patchId === b.patchId,
  RunCompleted: () => true,
  RunFailed: () => true,
  RunCancelled: () => true,
  RunContinued: () => true,
  RunTimedOut: () => true,
};

function sameRule<K extends DecisionType>(type: K, journaled: EventPayloads[K], issued: EventPayloads[K]): boolean {
  return SAME_DECISION[type](journaled, issued);
}

function sameDecision(j: JournalEvent, e: NewEvent): boolean {
  if (j.type !== e.type || !isDecision(e)) return j.type === e.type;
  // (same type: the journaled payload is the issued type's)
  return sameRule(e.type, j.payload as EventPayloads[typeof e.type], e.payload);
}

function isDecision(e: NewEvent): e is Extract<NewEvent, { type: DecisionType }> {
  return DECISION_TYPES.has(e.type);
}

function isDelivery<E extends NewEvent>(e: E): e is Extract<E, { type: DeliveryType }> {
  return EVENT_FAMILY[e.type] === 'delivery';
}

/** How each event reads in a NonDeterminismError (one entry per type: a new one does not compile without its line). */
const DESCRIBE: { readonly [K in EventType]: (p: EventPayloads[K]) => string } = {
  RunStarted: () => 'RunStarted',
  ChildScheduled: (p) => `ChildScheduled(path ${p.path}, workflow '${p.workflow}', input hash ${p.inputHash}${p.id !== undefined ? `, id '${p.id}'` : ''})`,
  ChildStartFailed: (p) => `ChildStartFailed(path ${p.path}, workflow '${p.workflow}', input hash ${p.inputHash})`,
  ActivityScheduled: (p) => `ActivityScheduled(path ${p.path}, activity '${p.name}', input hash ${p.inputHash})`,
  TimerStarted: (p) => `TimerStarted(path ${p.path})`,
  SideEffect: (p) => `SideEffect(path ${p.path}, ${p.kind})`,
  BarrierFailed: (p) => `BarrierFailed(path ${p.path}, leaf ${p.leafIndex})`,
  FailureHandled: (p) => `FailureHandled(path ${p.path})`,
  SignalWaitStarted: (p) => `SignalWaitStarted(path ${p.path}, signal '${p.name}')`,
  ChildSignalled: (p) => `ChildSignalled(path ${p.path}, signal '${p.name}')`,
  PatchMarker: (p) => `PatchMarker('${p.patchId}'${p.deprecated ? ', deprecated' : ''})`,
  RunCompleted: () => 'RunCompleted',
  RunFailed: () => 'RunFailed',
  RunCancelled: () => 'RunCancelled',
  RunContinued: () => 'RunContinued',
  RunTimedOut: () => 'RunTimedOut',
  ChildCompleted: () => 'ChildCompleted',
  ChildFailed: () => 'ChildFailed',
  ChildCancelled: () => 'ChildCancelled',
  ChildTerminated: () => 'ChildTerminated',
  ChildTimedOut: () => 'ChildTimedOut',
  ActivityCompleted: () => 'ActivityCompleted',
  ActivityFailed: () => 'ActivityFailed',
  TimerFired: () => 'TimerFired',
  SignalReceived: () => 'SignalReceived',
  CancelRequested: () => 'CancelRequested',
  ChildStarted: () => 'ChildStarted',
  ParentClosePolicyApplied: () => 'ParentClosePolicyApplied',
  ParentClosePolicyFailed: () => 'ParentClosePolicyFailed',
  RunBlocked: () => 'RunBlocked',
  RunResumed: () => 'RunResumed',
  RunTerminated: () => 'RunTerminated',
};

function describeRule<K extends EventType>(type: K, payload: EventPayloads[K]): string {
  return DESCRIBE[type](payload);
}

/** A one-line description of an event, for NonDeterminismError messages. */
export function describeEvent(e: NewEvent): string {
  return describeRule(e.type, e.payload);
}

/** Thrown inside the engine to stop the code where a close from outside cut its journal (see decide()). */
const CLOSED_FROM_OUTSIDE = Symbol('closed from outside');


/** A closing event that the run's code did not decide: the journal (or the deadline) closed the run. */
function closedFromOutside(e: JournalEvent): boolean {
  return e.type === 'RunTerminated' || e.type === 'RunTimedOut' || (e.type === 'RunCancelled' && e.payload.forced);
}

function externalClose(e: JournalEvent): EngineClose {
  if (e.type === 'RunTimedOut') return { status: 'timed_out', error: serializeError(new RunTimeoutError('', e.payload.deadline)) };
  const reason = (e.payload as { reason: string }).reason;
  return { status: 'cancelled', error: serializeError(new CancelledError(reason)) };
}
