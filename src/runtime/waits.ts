/**
 * What a run waits on, as the engine sees it (RunEngine.openWaits()), stored with each commit so that describe(), the
 * CLI and the dashboard show exactly what the one interpreter knows, without re-reading the journal.
 */
export interface OpenWait {
  kind: 'child' | 'activity' | 'timer' | 'signal';
  /** The command's call path (`<position>` or, inside a barrier, `<position>.<leaf index>`). */
  path: string;
  /** When the run started waiting on it (epoch ms of the journal clock). */
  since: number;
  // child
  workflow?: string;
  callId?: string;
  childRunId?: string;
  childWorkflowId?: string;
  /** Retry attempt of a child (absent: 1). */
  attempt?: number;
  /** When the parent stops waiting (child timeout) or the signal wait times out. */
  deadline?: number;
  // activity
  activity?: string;
  // timer
  fireAt?: number;
  // signal
  signal?: string;
  // barrier membership
  /** The innermost barrier group holding this member: `<barrier path>` then `/<member index>` per nesting level. */
  groupId?: string;
  /** Group ids from the outermost barrier to the innermost. */
  groupPath?: string[];
  /** Index of the member in its innermost group, and that group's size. */
  index?: number;
  size?: number;
  /** Depth-first leaf index across the whole barrier (the failure-selection tie-breaker). */
  leafIndex?: number;
}

/** How many open waits a run stores with a commit; a fan-out of 10,000 children stores the first ones and a count. */
export const STORED_WAITS_LIMIT = 50;

/** The stored form: the first waits in call-path order (RunEngine.openWaits(limit)), and how many there are in all. */
export interface StoredWaits {
  waits: OpenWait[];
  total: number;
}

/**
 * What wakes a suspended run, derived by the engine from what its code waits on (RunEngine.waitSpec()) and stored by
 * the journal with each commit. The transaction that closes a child evaluates this on the parent (by the child's run
 * id) and sets the parent's `nextWakeupAt` to now when it holds:
 *  - the child is in `onClose`, or
 *  - the child failed (any unsuccessful close) and is in `onFailure`, or
 *  - the child is in `onAllClosed` and every run in `onAllClosed` is now closed.
 * `timerAt` is the earliest durable timer. `busy` means the run holds in-process work (activities) and stays due
 * so that, if its worker dies, whoever takes over after the lease expires redoes that work.
 */
export interface WaitSpec {
  timerAt: number | null;
  onClose: string[];
  onFailure: string[];
  onAllClosed: string[];
  busy: boolean;
}

export const NO_WAIT: WaitSpec = { timerAt: null, onClose: [], onFailure: [], onAllClosed: [], busy: false };
