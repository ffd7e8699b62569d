import { useMemo, useRef, useState } from 'preact/hooks';
import { get, runPath, type TreeNode, type TreePageJson } from './api.js';
import { ErrorBox, Status } from './common.js';
import { duration } from './format.js';
import { runHref, usePoll } from './router.js';

const ROW = 28;
const HEIGHT = 420;
const PAGE = 1000;
/** Pages read at once; beyond, a button reads more. */
const AUTO_PAGES = 5;

interface Loaded {
  root: TreeNode;
  byId: Map<string, TreeNode>;
  kids: Map<string, string[]>;
  count: number;
  nextCursor: string | null;
}

/**
 * The run's descendants, read a page (1,000) at a time, rendered as a virtualised list: only the rows in view are
 * in the DOM, so a fan-out of thousands scrolls and expands without freezing. The run's own children show at once;
 * deeper levels expand on click.
 */
export function Tree({ id, live }: { id: string; live: boolean }) {
  const [data, setData] = useState<Loaded | null>(null);
  const [expanded, setExpanded] = useState<Set<string>>(() => new Set());
  const [scroll, setScroll] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const [pages, setPages] = useState(AUTO_PAGES);
  const box = useRef<HTMLDivElement>(null);

  usePoll(
    async () => {
      try {
        let cursor: string | null = null;
        const nodes: TreeNode[] = [];
        let root: TreeNode | null = null;
        for (let i = 0; i < pages; i++) {
          const p: TreePageJson = await get<TreePageJson>(`${runPath(id)}/tree`, { limit: PAGE, cursor });
          root = p.root;
          nodes.push(...p.nodes);
          cursor = p.nextCursor;
          if (!cursor) break;
        }
        const byId = new Map<string, TreeNode>();
        const kids = new Map<string, string[]>();
        for (const n of nodes) {
          byId.set(n.run.runId, n);
          const p = n.run.parentRunId ?? '';
          let l = kids.get(p);
          if (!l) kids.set(p, (l = []));
          l.push(n.run.runId);
        }
        setData({ root: root!, byId, kids, count: nodes.length, nextCursor: cursor });
        setError(null);
      } catch (err) {
        setError((err as Error).message);
      }
    },
    5000,
    live,
    [id, pages],
  );

  // The visible rows: depth first from the run, through expanded nodes (the run itself starts expanded).
  const rows = useMemo(() => {
    const out: { n: TreeNode; level: number; kids: number }[] = [];
    if (!data) return out;
    const walk = (n: TreeNode, level: number) => {
      const k = data.kids.get(n.run.runId) ?? [];
      out.push({ n, level, kids: k.length });
      const open = level === 0 ? !expanded.has(`-${n.run.runId}`) : expanded.has(n.run.runId);
      if (open) for (const c of k) walk(data.byId.get(c)!, level + 1);
    };
    walk(data.root, 0);
    return out;
  }, [data, expanded]);

  if (!data) return error ? <ErrorBox error={error} /> : <p>loading tree…</p>;
  const toggle = (runId: string, level: number) => {
    const key = level === 0 ? `-${runId}` : runId;
    const next = new Set(expanded);
    if (next.has(key)) next.delete(key);
    else next.add(key);
    setExpanded(next);
  };
  const first = Math.max(0, Math.floor(scroll / ROW) - 10);
  const last = Math.min(rows.length, Math.ceil((scroll + HEIGHT) / ROW) + 10);
  return (
    <div class="tree-wrap">
      <div class="tree-bar">
        <span data-testid="tree-count">{data.count} descendants loaded{data.nextCursor ? ' (more exist)' : ''}</span>
        {data.nextCursor ? <button onClick={() => setPages(pages + AUTO_PAGES)}>Load {AUTO_PAGES * PAGE} more</button> : null}
        <button
          onClick={() => {
            const all = new Set<string>();
            for (const [p] of data.kids) if (p) all.add(p);
            setExpanded(all);
          }}
        >
          Expand all
        </button>
        <button onClick={() => setExpanded(new Set([`-${data.root.run.runId}`]))}>Collapse all</button>
      </div>
      <ErrorBox error={error} />
      <div class="tree" ref={box} style={{ height: `${Math.min(HEIGHT, rows.length * ROW + 2)}px` }} onScroll={(e) => setScroll((e.target as HTMLDivElement).scrollTop)} data-rows={rows.length}>
        <div style={{ height: `${rows.length * ROW}px`, position: 'relative' }}>
          {rows.slice(first, last).map(({ n, level, kids }, i) => {
            const r = n.run;
            const open = level === 0 ? !expanded.has(`-${r.runId}`) : expanded.has(r.runId);
            return (
              <div key={r.runId} class="tree-row" data-run-id={r.runId} data-level={level} style={{ top: `${(first + i) * ROW}px`, paddingLeft: `${8 + level * 18}px` }}>
                {kids ? (
                  <button class="toggle" aria-label={open ? 'collapse' : 'expand'} aria-expanded={open} onClick={() => toggle(r.runId, level)}>
                    {open ? '▾' : '▸'}
                  </button>
                ) : (
                  <span class="toggle-space" />
                )}
                <Status status={r.status} />
                <a href={runHref(r.runId)} class="mono">
                  {r.workflowId}
                </a>
                <span class="wf">{r.workflow}</span>
                {kids ? <span class="hint">{kids} children</span> : null}
                {n.waitingFor ? <span class="hint">waiting for {n.waitingFor}</span> : n.waitKind ? <span class="hint">waits on {n.waitKind}{n.openWaitCount > 1 ? ` ×${n.openWaitCount}` : ''}</span> : null}
                <span class="took">{r.closedAt ? duration(r.closedAt - r.createdAt) : ''}</span>
              </div>
            );
          })}
        </div>
      </div>
    </div>
  );
}
