import { useState } from 'preact/hooks';
import { get, STATUSES, type RunCounts, type RunsPage as Page } from './api.js';
import { Status, ErrorBox } from './common.js';
import { duration, time } from './format.js';
import { runHref, usePoll } from './router.js';

const FIELDS = ['status', 'workflow', 'queue', 'workflowIdPrefix', 'startedAfter', 'startedBefore'] as const;
type Field = (typeof FIELDS)[number];

/** datetime-local value <-> epoch ms (the API's time bounds). */
const toMs = (v: string | null) => (v ? String(new Date(v).getTime()) : undefined);

export function RunsPage({ params }: { params: URLSearchParams }) {
  const filter: Record<Field, string> = Object.fromEntries(FIELDS.map((f) => [f, params.get(f) ?? ''])) as Record<Field, string>;
  const [draft, setDraft] = useState(filter);
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [page, setPage] = useState<Page | null>(null);
  const [counts, setCounts] = useState<RunCounts | null>(null);
  const [live, setLive] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const key = params.toString();
  const cursor = cursors[cursors.length - 1] ?? null;
  const apiFilter = {
    workflow: filter.workflow,
    queue: filter.queue,
    workflowIdPrefix: filter.workflowIdPrefix,
    startedAfter: toMs(filter.startedAfter),
    startedBefore: toMs(filter.startedBefore),
  };

  usePoll(
    async () => {
      try {
        const [p, c] = await Promise.all([get<Page>('runs', { ...apiFilter, status: filter.status, limit: 50, cursor }), get<RunCounts>('runs/counts', apiFilter)]);
        setPage(p);
        setCounts(c);
        setError(null);
      } catch (err) {
        setError((err as Error).message);
      }
    },
    2000,
    live,
    [key, cursor],
  );

  const go = (next: Partial<Record<Field, string>>) => {
    const q = new URLSearchParams();
    const merged = { ...filter, ...next };
    for (const f of FIELDS) if (merged[f]) q.set(f, merged[f]);
    setCursors([null]);
    location.hash = `#/runs${q.toString() ? `?${q}` : ''}`;
  };

  return (
    <section>
      <h1>Runs</h1>
      <div class="counts" aria-label="counts by status">
        <button class={`chip ${filter.status ? '' : 'on'}`} onClick={() => go({ status: '' })}>
          all <b>{counts?.total ?? '…'}</b>
        </button>
        {STATUSES.map((s) => (
          <button key={s} class={`chip c-${s} ${filter.status === s ? 'on' : ''}`} data-status={s} onClick={() => go({ status: s })}>
            {s.replace('_', ' ')} <b>{counts?.byStatus[s] ?? 0}</b>
          </button>
        ))}
      </div>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          go(draft);
        }}
      >
        <label>
          status
          <select name="status" value={draft.status} onChange={(e) => setDraft({ ...draft, status: (e.target as HTMLSelectElement).value })}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        {(
          [
            ['workflow', 'workflow', 'text'],
            ['queue', 'queue', 'text'],
            ['workflowIdPrefix', 'workflow id prefix', 'text'],
            ['startedAfter', 'started after', 'datetime-local'],
            ['startedBefore', 'started before', 'datetime-local'],
          ] as const
        ).map(([f, label, type]) => (
          <label key={f}>
            {label}
            <input name={f} type={type as 'text' /* text or datetime-local */} value={draft[f]} onInput={(e) => setDraft({ ...draft, [f]: (e.target as HTMLInputElement).value })} />
          </label>
        ))}
        <button type="submit">Apply</button>
        <button type="button" onClick={() => (setDraft(Object.fromEntries(FIELDS.map((f) => [f, ''])) as Record<Field, string>), go(Object.fromEntries(FIELDS.map((f) => [f, ''])) as Record<Field, string>))}>
          Clear
        </button>
        <label class="live">
          <input type="checkbox" checked={live} onChange={(e) => setLive((e.target as HTMLInputElement).checked)} /> live
        </label>
      </form>
      <ErrorBox error={error} />
      <table class="runs">
        <thead>
          <tr>
            <th>status</th>
            <th>workflow id</th>
            <th>workflow</th>
            <th>queue</th>
            <th>run id</th>
            <th>started</th>
            <th>took</th>
          </tr>
        </thead>
        <tbody>
          {page?.runs.map((r) => (
            <tr key={r.runId} data-run-id={r.runId}>
              <td>
                <Status status={r.status} />
              </td>
              <td>
                <a href={runHref(r.runId)}>{r.workflowId}</a>
              </td>
              <td>{r.workflow}</td>
              <td>{r.queue}</td>
              <td class="mono">{r.runId}</td>
              <td>{time(r.createdAt)}</td>
              <td>{r.closedAt ? duration(r.closedAt - r.createdAt) : <i>open</i>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {page && !page.runs.length ? <p class="empty">No runs match.</p> : null}
      <div class="pager">
        <button disabled={cursors.length < 2} onClick={() => setCursors(cursors.slice(0, -1))}>
          ← Newer
        </button>
        <span>page {cursors.length}</span>
        <button disabled={!page?.nextCursor} onClick={() => page?.nextCursor && setCursors([...cursors, page.nextCursor])}>
          Older →
        </button>
      </div>
    </section>
  );
}
