/** The dashboard's JSON API (src/dashboard/server.ts), typed with the server's own types. */
import type { RunDescription, TreeNode, ExportedHistory } from '../../client/client.js';
import type { RunCounts, RunRecord, RunStatus, WorkerInfo } from '../../journal/journal.js';

export type { RunDescription, TreeNode, ExportedHistory, RunCounts, RunRecord, RunStatus, WorkerInfo };
export type RunSummary = Omit<RunRecord, 'input' | 'result'>;
export interface RunsPage {
  runs: RunSummary[];
  nextCursor: string | null;
}
export interface TreePageJson {
  root: TreeNode;
  nodes: TreeNode[];
  nextCursor: string | null;
}

export const STATUSES: RunStatus[] = ['running', 'blocked', 'completed', 'failed', 'cancelled', 'terminated', 'timed_out', 'continued'];

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function parse<T>(res: Response): Promise<T> {
  const body = (await res.json().catch(() => null)) as (T & { error?: { message: string } }) | null;
  if (!res.ok) throw new ApiError(res.status, body?.error?.message ?? `HTTP ${res.status}`);
  return body as T;
}

export async function get<T>(path: string, params: Record<string, string | number | undefined | null> = {}): Promise<T> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return parse<T>(await fetch(`/api/${path}${s ? `?${s}` : ''}`, { credentials: 'same-origin' }));
}

/** Actions carry the x-skein-dashboard header (the server refuses a POST without it: no cross-site forms). */
export async function post<T>(path: string, body: unknown): Promise<T> {
  return parse<T>(
    await fetch(`/api/${path}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-skein-dashboard': '1' },
      body: JSON.stringify(body),
    }),
  );
}

export const runPath = (id: string) => `runs/${encodeURIComponent(id)}`;
