import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

/**
 * The worker's optional HTTP endpoint (WorkerOptions.httpPort), for orchestrators and scrapers:
 *
 *   GET /healthz   200 and the worker's health as JSON when it can reach the database, 503 (same JSON) when not
 *   GET /metrics   Prometheus text exposition (prom-client, the worker's own registry)
 *
 * Anything else is 404; a method other than GET/HEAD is 405. It binds 127.0.0.1 unless told otherwise, and a port it
 * cannot bind (in use) is logged, not fatal: the worker runs without it.
 */
export interface HttpRoutes {
  health(): Promise<{ ok: boolean; body: unknown }>;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export class WorkerHttpServer {
  private server: Server | null = null;
  private bound: AddressInfo | null = null;

  constructor(
    private readonly routes: HttpRoutes,
    private readonly log: Logger,
  ) {}

  /** Where it listens once started (null before, or if it could not bind). */
  get address(): { host: string; port: number } | null {
    return this.bound && { host: this.bound.address, port: this.bound.port };
  }

  async start(host: string, port: number): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      const reply = async () => {
        if (path === '/healthz') {
          const h = await this.routes.health();
          const body = JSON.stringify(h.body);
          res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : body);
        } else if (path === '/metrics') {
          const m = await this.routes.metrics();
          res.writeHead(200, { 'content-type': m.contentType }).end(req.method === 'HEAD' ? undefined : m.body);
        } else {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz or /metrics\n');
        }
      };
      reply().catch((err: unknown) => {
        this.log.warn({ err, path }, 'http endpoint failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end();
      });
    });
    // keep-alive connections of a scraper must not hold a shutdown up
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve) => {
      const onError = (err: Error) => {
        this.log.error({ err, host, port }, 'worker http endpoint could not listen: running without /healthz and /metrics');
        resolve();
      };
      server.once('error', onError);
      server.listen(port, host, () => {
        server.removeListener('error', onError);
        server.on('error', (err) => this.log.warn({ err }, 'worker http endpoint error'));
        server.unref();
        this.server = server;
        this.bound = server.address() as AddressInfo;
        this.log.info({ host: this.bound.address, port: this.bound.port }, 'worker http endpoint: GET /healthz, GET /metrics');
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections?.();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
