import type { OpenWait } from '../../runtime/waits.js';
import type { RunDescription } from './api.js';
import { Status } from './common.js';
import { ago, time } from './format.js';
import { runHref } from './router.js';

/** What the run waits on and since when: its engine's open waits (barriers grouped), or what holds it up. */
export function Waits({ d }: { d: RunDescription }) {
  const r = d.run;
  const statusOf = new Map(d.lineage.children.map((c) => [c.runId, c.status]));
  const held = d.waitingFor;
  const closed = !(d.status === 'running' || d.status === 'blocked');
  if (closed) return <p class="waits none">Nothing: the run is {d.status}.</p>;
  // barrier members grouped by their innermost group
  const groups = new Map<string, OpenWait[]>();
  for (const w of d.openWaits) {
    const g = w.groupId ?? '';
    groups.set(g, [...(groups.get(g) ?? []), w]);
  }
  return (
    <div class="waits" data-testid="waits">
      {held?.kind === 'worker' ? (
        <div class="wait held">
          Waiting for a worker: no worker serving queue <b>{held.queue}</b> with workflow <b>{held.workflow}</b> has started it, since {time(held.since)} ({ago(held.since)}).
        </div>
      ) : null}
      {held?.kind === 'operator' ? (
        <div class="wait held">
          Blocked since {time(held.since)} ({ago(held.since)}): waiting for an operator (resume after a fix, or terminate).
          {held.error ? <div class="mono">{held.error.name}: {held.error.message}</div> : null}
        </div>
      ) : null}
      {r.stall ? (
        <div class="wait held">
          Stalled: activity <b>{r.stall.activity}</b> is registered on no worker it reached (last: {r.stall.workerId}, {r.stall.attempts} attempt(s)), since {time(r.stall.since)} ({ago(r.stall.since)}); next try {time(r.stall.nextAttemptAt)}.
        </div>
      ) : null}
      {r.cancelRequest ? (
        <div class="wait held">
          Cancelling: “{r.cancelRequest.reason}”, must close by {time(r.cancelRequest.deadline)} ({ago(r.cancelRequest.deadline)}).
        </div>
      ) : null}
      {!d.openWaits.length && !held && !r.stall ? <p class="none">Nothing open: the run is being worked on (or about to be).</p> : null}
      {[...groups].map(([g, ws]) => (
        <div key={g} class={g ? 'barrier' : ''}>
          {g ? (
            <div class="barrier-head">
              barrier <span class="mono">{g}</span>: {ws.length} open of {ws[0]?.size ?? '?'} members
            </div>
          ) : null}
          <ul>
            {ws.map((w) => (
              <li key={w.path} class={`wait w-${w.kind}`} data-kind={w.kind}>
                <span class="kind">{w.kind}</span> <Describe w={w} status={w.childRunId ? statusOf.get(w.childRunId) : undefined} /> <span class="since">since {time(w.since)} ({ago(w.since)})</span>
                {w.index !== undefined ? <span class="hint"> member {w.index + 1}/{w.size}</span> : null}
                <span class="hint mono"> @{w.path}</span>
              </li>
            ))}
          </ul>
        </div>
      ))}
      {d.openWaitCount > d.openWaits.length ? <p class="hint">…and {d.openWaitCount - d.openWaits.length} more (the first {d.openWaits.length} are stored with each commit; the tree below shows every child).</p> : null}
    </div>
  );
}

function Describe({ w, status }: { w: OpenWait; status: RunDescription['status'] | undefined }) {
  switch (w.kind) {
    case 'signal':
      return (
        <span>
          signal <b class="signal-name">{w.signal}</b>
          {w.deadline ? ` (times out ${time(w.deadline)})` : ''}
        </span>
      );
    case 'timer':
      return <span>timer due {w.fireAt ? `${time(w.fireAt)} (${ago(w.fireAt)})` : '?'}</span>;
    case 'activity':
      return (
        <span>
          activity <b>{w.activity}</b>
        </span>
      );
    case 'child':
      return (
        <span>
          child <b>{w.workflow}</b> {w.childRunId ? <a href={runHref(w.childRunId)}>{w.childWorkflowId ?? w.childRunId}</a> : null} {status ? <Status status={status} /> : null}
          {w.attempt && w.attempt > 1 ? ` attempt ${w.attempt}` : ''}
          {w.deadline ? ` (parent stops waiting ${time(w.deadline)})` : ''}
        </span>
      );
  }
}
