import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Client } from '../client/client.js';
import { RUN_STATUSES, type Journal, type ListRunsQuery, type RunRecord, type RunStatus } from '../journal/journal.js';
import { ConfigError, InvalidArgumentError, RunClosedError, RunStateError, UnknownRunError } from '../runtime/errors.js';
import { loadAssets } from './assets.js';

export interface DashboardOptions {
  /** The journal to show (a Client is made on it), or `client`. */
  journal?: Journal;
  client?: Client;
  /** Default 7070; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1. Any address that is not loopback needs `token`. */
  host?: string;
  /**
   * Required when `host` is not a loopback address. When set, every API call needs it: `Authorization: Bearer <token>`
   * or the cookie a page sets when opened with `?token=<token>`.
   */
  token?: string;
}

export interface DashboardServer {
  /** The address to open (with `?token=` when a token is set). */
  url: string;
  host: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

const COOKIE = 'skein_dashboard_token';
/** The header every action (POST) must carry: a cross-site form cannot set it, and a cross-site fetch with it is preflighted (and refused). */
export const ACTION_HEADER = 'x-skein-dashboard';

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * The web dashboard (docs/dashboard.md): a JSON API over the Client and the pages that use it, served by node:http.
 * Binds 127.0.0.1 by default; binding anything else requires a token.
 */
export async function dashboard(options: DashboardOptions): Promise<DashboardServer> {
  const client = options.client ?? (options.journal ? new Client(options.journal) : undefined);
  if (!client) throw new InvalidArgumentError('journal', 'dashboard() needs a journal or a client');
  const host = options.host ?? '127.0.0.1';
  const token = options.token || undefined;
  const local = isLoopback(host);
  if (!local && !token) {
    throw new ConfigError('host', host, `the dashboard binds ${host}, which is not a loopback address: give it a token (--token) so that only who has it can see runs and act on them`);
  }
  // (load the bundle before listening: a missing bundle is an error at start, not on the first page)
  await loadAssets();
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => sendError(res, err));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    // DNS rebinding: a loopback dashboard answers only to loopback host names.
    if (local && !token && !isLoopback((req.headers.host ?? '').replace(/:\d+$/, ''))) return send(res, 403, { error: { name: 'Forbidden', message: 'unexpected Host header' } });
    if (url.pathname.startsWith('/api/')) {
      if (token && !authorized(req, token)) return send(res, 401, { error: { name: 'Unauthorized', message: 'this dashboard needs its token (Authorization: Bearer <token>, or open it with ?token=<token>)' } });
      if (req.method === 'POST') {
        if (req.headers[ACTION_HEADER] !== '1') return send(res, 403, { error: { name: 'Forbidden', message: `actions need the ${ACTION_HEADER} header` } });
        return action(req, res, url);
      }
      if (req.method !== 'GET') return send(res, 405, { error: { name: 'MethodNotAllowed', message: `${req.method} is not allowed` } });
      return api(res, url);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: { name: 'MethodNotAllowed', message: `${req.method} is not allowed` } });
    const assets = await loadAssets();
    if (url.pathname === '/assets/app.js') return sendText(res, 200, 'text/javascript; charset=utf-8', assets.js, etag(assets.js));
    if (url.pathname === '/assets/app.css') return sendText(res, 200, 'text/css; charset=utf-8', assets.css, etag(assets.css));
    if (url.pathname !== '/' && url.pathname !== '/index.html') return send(res, 404, { error: { name: 'NotFound', message: url.pathname } });
    const given = url.searchParams.get('token');
    if (token && given !== null) {
      if (!same(given, token)) return sendText(res, 401, 'text/plain; charset=utf-8', 'wrong token\n');
      // Keep the token in an HttpOnly cookie and out of the address bar (and of the history, and of screenshots).
      res.writeHead(303, { location: '/' + url.hash, 'set-cookie': `${COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/` });
      return void res.end();
    }
    if (token && !authorized(req, token)) {
      return sendText(res, 401, 'text/html; charset=utf-8', '<!doctype html><title>skein</title><p>This dashboard needs its token: open it with <code>?token=…</code>.</p>');
    }
    return sendText(res, 200, 'text/html; charset=utf-8', INDEX);
  }

  async function api(res: ServerResponse, url: URL): Promise<void> {
    const parts = url.pathname.slice('/api/'.length).split('/').map(decodeURIComponent);
    const q = url.searchParams;
    if (parts[0] === 'workers' && parts.length === 1) return send(res, 200, await client!.listWorkers());
    if (parts[0] === 'info' && parts.length === 1) return send(res, 200, { journal: client!.journal.target?.() ?? null, token: !!token, now: Date.now() });
    if (parts[0] !== 'runs') return send(res, 404, { error: { name: 'NotFound', message: url.pathname } });
    if (parts.length === 1) {
      const page = await client!.listRuns({ ...filterOf(q), ...pageOf(q) });
      return send(res, 200, { runs: page.runs.map(summary), nextCursor: page.nextCursor });
    }
    if (parts.length === 2 && parts[1] === 'counts') return send(res, 200, await client!.countRuns(filterOf(q)));
    const id = parts[1]!;
    if (parts.length === 2) return send(res, 200, await client!.describe(id));
    if (parts.length === 3 && parts[2] === 'tree') {
      const maxDepth = int(q, 'maxDepth');
      const page = await client!.tree(id, { ...pageOf(q), ...(maxDepth !== undefined ? { maxDepth } : {}) });
      return send(res, 200, { root: { ...page.root, run: summary(page.root.run) }, nodes: page.nodes.map((n) => ({ ...n, run: summary(n.run) })), nextCursor: page.nextCursor });
    }
    if (parts.length === 3 && parts[2] === 'history') {
      const history = await client!.history(id);
      const body = JSON.stringify(history, null, q.has('download') ? 2 : 0);
      const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };
      if (q.has('download')) headers['content-disposition'] = `attachment; filename="${history.workflowId.replace(/[^A-Za-z0-9._-]+/g, '_')}.${history.runId}.history.json"`;
      res.writeHead(200, headers);
      return void res.end(body);
    }
    return send(res, 404, { error: { name: 'NotFound', message: url.pathname } });
  }

  async function action(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const parts = url.pathname.slice('/api/'.length).split('/').map(decodeURIComponent);
    if (parts.length !== 3 || parts[0] !== 'runs') return send(res, 404, { error: { name: 'NotFound', message: url.pathname } });
    const id = parts[1]!;
    const body = await readJson(req);
    const reason = typeof body.reason === 'string' && body.reason ? body.reason : `${parts[2]} from the dashboard`;
    switch (parts[2]) {
      case 'cancel': {
        const graceMs = body.graceMs === undefined ? undefined : Number(body.graceMs);
        if (graceMs !== undefined && (!Number.isFinite(graceMs) || graceMs < 0)) throw new InvalidArgumentError('graceMs', 'a number of milliseconds >= 0');
        return send(res, 200, await client!.cancel(id, reason, graceMs !== undefined ? { graceMs } : {}));
      }
      case 'terminate':
        return send(res, 200, await client!.terminate(id, reason));
      case 'signal': {
        if (typeof body.name !== 'string' || !body.name) throw new InvalidArgumentError('name', 'a signal needs a name');
        return send(res, 200, await client!.signal(id, body.name, body.payload));
      }
      case 'resume':
        return send(res, 200, summary(await client!.resume(id, reason)));
      case 'retry': {
        const r = await client!.retry(id, reason);
        return send(res, 200, { ...r, run: summary(r.run) });
      }
    }
    return send(res, 404, { error: { name: 'NotFound', message: url.pathname } });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 7070, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${shown}:${port}/${token ? `?token=${encodeURIComponent(token)}` : ''}`,
    host,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function authorized(req: IncomingMessage, token: string): boolean {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ') && same(auth.slice(7), token)) return true;
  for (const c of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = c.trim().split('=');
    if (k === COOKIE && same(decodeURIComponent(v.join('=')), token)) return true;
  }
  return false;
}

function same(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y);
}

/** A run for lists and trees: no input, result or stack (a list of 1,000 runs stays small); the run page has them all. */
export function summary(r: RunRecord): Omit<RunRecord, 'input' | 'result'> {
  const { input: _i, result: _r, ...rest } = r;
  return { ...rest, error: r.error ? { ...r.error, stack: undefined } as RunRecord['error'] : null };
}

function filterOf(q: URLSearchParams): ListRunsQuery {
  const f: ListRunsQuery = {};
  const status = q.get('status');
  if (status) {
    const list = status.split(',').filter(Boolean);
    for (const s of list) if (!RUN_STATUSES.includes(s as RunStatus)) throw new InvalidArgumentError('status', `unknown status '${s}' (one of ${RUN_STATUSES.join(', ')})`);
    f.status = list as RunStatus[];
  }
  for (const k of ['workflow', 'queue', 'workflowIdPrefix', 'workflowId', 'parentRunId', 'rootRunId'] as const) {
    const v = q.get(k);
    if (v) f[k] = v;
  }
  for (const k of ['startedAfter', 'startedBefore', 'closedAfter', 'closedBefore'] as const) {
    const v = int(q, k);
    if (v !== undefined) f[k] = v;
  }
  return f;
}

function pageOf(q: URLSearchParams): { limit?: number; cursor?: string } {
  const limit = int(q, 'limit');
  const cursor = q.get('cursor');
  return { ...(limit !== undefined ? { limit } : {}), ...(cursor ? { cursor } : {}) };
}

function int(q: URLSearchParams, k: string): number | undefined {
  const v = q.get(k);
  if (v === null || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(k, `an integer, got '${v}'`);
  return n;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 1_048_576) throw new InvalidArgumentError('body', 'at most 1 MiB');
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError('body', `not JSON (${(err as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidArgumentError('body', 'a JSON object');
  return v as Record<string, unknown>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

function sendText(res: ServerResponse, status: number, type: string, body: string, tag?: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': tag ? 'no-cache' : 'no-store', ...(tag ? { etag: tag } : {}), 'x-content-type-options': 'nosniff' });
  res.end(body);
}

function etag(s: string): string {
  return `"${createHash('sha1').update(s).digest('base64url').slice(0, 16)}"`;
}

function sendError(res: ServerResponse, err: unknown): void {
  const e = err as Error;
  const status =
    err instanceof UnknownRunError ? 404 : err instanceof InvalidArgumentError ? 400 : err instanceof RunStateError || err instanceof RunClosedError ? 409 : 500;
  if (res.headersSent) return void res.end();
  send(res, status, { error: { name: e?.name ?? 'Error', message: e?.message ?? String(err) } });
}

const INDEX = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>skein dashboard</title>
<link rel="stylesheet" href="/assets/app.css">
</head>
<body>
<div id="app"></div>
<script type="module" src="/assets/app.js"></script>
</body>
</html>
`;
