import { useState } from 'preact/hooks';
import { ApiError, get, post, runPath, type ExportedHistory, type RunDescription } from './api.js';
import { ErrorBox, Status } from './common.js';
import { duration, time } from './format.js';
import { runHref, usePoll } from './router.js';
import { Tree } from './tree.js';
import { Waits } from './waits.js';

export function RunPage({ id }: { id: string }) {
  const [d, setD] = useState<RunDescription | null>(null);
  const [error, setError] = useState<string | null>(null);
  const open = !d || d.status === 'running' || d.status === 'blocked';
  const refresh = usePoll(
    async () => {
      try {
        setD(await get<RunDescription>(runPath(id)));
        setError(null);
      } catch (err) {
        setError(err instanceof ApiError && err.status === 404 ? `No run '${id}'.` : (err as Error).message);
      }
    },
    2000,
    open,
    [id],
  );
  if (!d) return <section>{error ? <ErrorBox error={error} /> : <p>loading…</p>}</section>;
  const r = d.run;
  return (
    <section class="run">
      <div class="run-head">
        <h1>
          <Status status={d.status} /> <span class="mono" data-testid="workflow-id">{r.workflowId}</span>
        </h1>
        <Actions d={d} onDone={refresh} />
      </div>
      <ErrorBox error={error} />
      <dl class="facts">
        <dt>workflow</dt>
        <dd>{r.workflow}</dd>
        <dt>run id</dt>
        <dd class="mono">{r.runId}</dd>
        <dt>queue</dt>
        <dd>{r.queue}</dd>
        <dt>started</dt>
        <dd>{time(r.createdAt)}</dd>
        <dt>closed</dt>
        <dd>{r.closedAt ? `${time(r.closedAt)} (took ${duration(r.closedAt - r.createdAt)})` : <i>open for {duration(Date.now() - r.createdAt)}</i>}</dd>
        <dt>depth</dt>
        <dd>{r.depth}</dd>
        {r.cancelRequest ? (
          <>
            <dt>cancel requested</dt>
            <dd>
              {time(r.cancelRequest.requestedAt)}: “{r.cancelRequest.reason}”, grace until {time(r.cancelRequest.deadline)}
            </dd>
          </>
        ) : null}
      </dl>
      {r.error ? (
        <div class="run-error" data-testid="run-error">
          <b>
            {r.error.name}: {r.error.message}
          </b>
          {r.error.stack ? <pre>{r.error.stack}</pre> : null}
        </div>
      ) : null}
      {r.status === 'completed' ? (
        <details class="result">
          <summary>result</summary>
          <pre>{JSON.stringify(r.result, null, 2)}</pre>
        </details>
      ) : null}
      <details class="result">
        <summary>input</summary>
        <pre>{JSON.stringify(r.input, null, 2)}</pre>
      </details>
      <h2>Waiting on</h2>
      <Waits d={d} />
      <h2>Lineage</h2>
      <Lineage d={d} />
      <h2>Tree</h2>
      <Tree id={r.runId} live={open} />
      <h2>Timeline</h2>
      <Timeline d={d} />
      <h2>History</h2>
      <History id={r.runId} />
    </section>
  );
}

function Lineage({ d }: { d: RunDescription }) {
  const l = d.lineage;
  const link = (id: string | null | undefined) => (id ? <a class="mono" href={runHref(id)}>{id}</a> : '—');
  return (
    <dl class="facts lineage">
      <dt>parent</dt>
      <dd>{link(l.parentRunId)}</dd>
      <dt>root</dt>
      <dd>{l.rootRunId === d.run.runId ? 'this run' : link(l.rootRunId)}</dd>
      <dt>continued from</dt>
      <dd>{link(l.continuedFrom)}</dd>
      <dt>continued to</dt>
      <dd>{link(l.continuedTo)}</dd>
      <dt>retry of</dt>
      <dd>{link(d.run.retryOf)}</dd>
      <dt>retried by</dt>
      <dd>{link(d.run.retriedTo)}</dd>
      <dt>children</dt>
      <dd>{l.children.length}</dd>
    </dl>
  );
}

function Timeline({ d }: { d: RunDescription }) {
  const [all, setAll] = useState(false);
  const start = d.timeline[0]?.at ?? d.run.createdAt;
  const shown = all ? d.timeline : d.timeline.slice(0, 200);
  return (
    <>
      <table class="timeline">
        <thead>
          <tr>
            <th>seq</th>
            <th>event</th>
            <th>at</th>
            <th>+</th>
            <th>path</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((e) => (
            <tr key={e.seq}>
              <td>{e.seq}</td>
              <td class={`ev ev-${e.type}`}>{e.type}</td>
              <td>{time(e.at)}</td>
              <td>{duration(e.at - start)}</td>
              <td class="mono">{e.path ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {shown.length < d.timeline.length ? <button onClick={() => setAll(true)}>Show all {d.timeline.length} events</button> : null}
    </>
  );
}

function History({ id }: { id: string }) {
  const [h, setH] = useState<string | null>(null);
  return (
    <div class="history">
      <a class="button" href={`/api/${runPath(id)}/history?download=1`} download>
        Download history JSON
      </a>{' '}
      <span class="hint">(skein-history/1: what the replay tester and `skein replay` read)</span>
      <details
        onToggle={async (e) => {
          if ((e.target as HTMLDetailsElement).open && h === null) {
            try {
              setH(JSON.stringify(await get<ExportedHistory>(`${runPath(id)}/history`), null, 2));
            } catch (err) {
              setH(`(${(err as Error).message})`);
            }
          }
        }}
      >
        <summary>Show history JSON</summary>
        <pre class="json">{h ?? 'loading…'}</pre>
      </details>
    </div>
  );
}

type ActionName = 'cancel' | 'terminate' | 'signal' | 'resume' | 'retry';

function Actions({ d, onDone }: { d: RunDescription; onDone: () => void }) {
  const [open, setOpen] = useState<ActionName | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const s = d.status;
  const isOpen = s === 'running' || s === 'blocked';
  const can: Record<ActionName, boolean> = {
    cancel: isOpen,
    terminate: isOpen,
    signal: isOpen,
    resume: s === 'blocked',
    retry: !d.run.parentRunId && !d.run.retriedTo && ['failed', 'cancelled', 'terminated', 'timed_out'].includes(s),
  };
  return (
    <div class="actions">
      {(Object.keys(can) as ActionName[]).map((a) => (
        <button key={a} class={`act act-${a}`} disabled={!can[a]} onClick={() => (setNote(null), setOpen(a))}>
          {a[0]!.toUpperCase() + a.slice(1)}
        </button>
      ))}
      {note ? <span class="note" role="status">{note}</span> : null}
      {open ? (
        <Confirm
          action={open}
          d={d}
          onClose={(msg) => {
            setOpen(null);
            if (msg) {
              setNote(msg);
              onDone();
            }
          }}
        />
      ) : null}
    </div>
  );
}

function Confirm({ action, d, onClose }: { action: ActionName; d: RunDescription; onClose: (done?: string) => void }) {
  const [reason, setReason] = useState('');
  const [grace, setGrace] = useState('10');
  const [name, setName] = useState(d.openWaits.find((w) => w.kind === 'signal')?.signal ?? '');
  const [payload, setPayload] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  let payloadError: string | null = null;
  let parsed: unknown = undefined;
  if (action === 'signal' && payload.trim()) {
    try {
      parsed = JSON.parse(payload);
    } catch (err) {
      payloadError = (err as Error).message;
    }
  }
  const invalid = (action === 'signal' && (!name || payloadError !== null)) || (action === 'cancel' && !(Number(grace) >= 0));
  const what: Record<ActionName, string> = {
    cancel: 'Cancel this run and its open descendants (gracefully: CancelledError at the current yield; compensation may run until the grace period ends).',
    terminate: 'Terminate this run and its open descendants at once: no workflow code runs.',
    signal: 'Send a signal to this run (buffered until the run waits for it; delivered once).',
    resume: 'Resume this blocked run: it replays with the code its workers have now.',
    retry: 'Retry this run as a new run of the same workflow id, with the same input.',
  };
  const submit = async () => {
    setBusy(true);
    setError(null);
    try {
      const body =
        action === 'signal' ? { name, ...(parsed !== undefined ? { payload: parsed } : {}) } : action === 'cancel' ? { reason, graceMs: Math.round(Number(grace) * 1000) } : { reason };
      const res = await post<{ cancelled?: string[]; signalId?: string; run?: { runId: string } }>(`${runPath(d.run.runId)}/${action}`, body);
      onClose(
        action === 'signal'
          ? `signal '${name}' sent`
          : action === 'retry' && res.run
            ? `retried as ${res.run.runId}`
            : `${action} done${Array.isArray(res.cancelled) ? `: ${res.cancelled.length} run(s)` : ''}`,
      );
    } catch (err) {
      setError((err as Error).message);
      setBusy(false);
    }
  };
  return (
    <div class="modal-bg" role="dialog" aria-label={`${action} run`}>
      <form
        class="modal"
        onSubmit={(e) => {
          e.preventDefault();
          if (!invalid && !busy) void submit();
        }}
      >
        <h3>
          {action[0]!.toUpperCase() + action.slice(1)} {d.run.workflowId}?
        </h3>
        <p>{what[action]}</p>
        {action === 'signal' ? (
          <>
            <label>
              signal name
              <input name="signal" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
            </label>
            <label>
              payload (JSON; empty for none)
              <textarea name="payload" rows={6} class={payloadError ? 'bad' : ''} value={payload} onInput={(e) => setPayload((e.target as HTMLTextAreaElement).value)} />
            </label>
            {payloadError ? <div class="bad-json">invalid JSON: {payloadError}</div> : null}
          </>
        ) : (
          <label>
            reason
            <input name="reason" placeholder={`${action} from the dashboard`} value={reason} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
          </label>
        )}
        {action === 'cancel' ? (
          <label>
            grace period (seconds)
            <input name="grace" type="number" min="0" value={grace} onInput={(e) => setGrace((e.target as HTMLInputElement).value)} />
          </label>
        ) : null}
        <ErrorBox error={error} />
        <div class="modal-buttons">
          <button type="button" onClick={() => onClose()}>
            Back
          </button>
          <button type="submit" class={`danger confirm-${action}`} disabled={invalid || busy}>
            Confirm {action}
          </button>
        </div>
      </form>
    </div>
  );
}

