import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { dashboard } from '../dashboard/server.js';
import { redactUrl } from '../journal/connection.js';
import { dbOptions, withClient, type DbOptions } from './connect.js';
import type { CliContext } from './program.js';

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port number (0-65535)');
  return n;
}

/**
 * `skein dashboard`: the web dashboard (docs/dashboard.md) on the journal a worker uses, until Ctrl-C. Binds
 * 127.0.0.1 unless told; any other address needs --token (or SKEIN_DASHBOARD_TOKEN).
 */
export function registerDashboardCommand(program: Command, _ctx: CliContext): void {
  dbOptions(program.command('dashboard').description('serve the web dashboard: runs, trees, what each run waits on, workers, actions'))
    .option('--port <n>', 'port to listen on', port, 7070)
    .option('--host <address>', 'address to bind (anything but loopback needs --token)', '127.0.0.1')
    .option('--token <token>', 'required to use the dashboard (Authorization: Bearer, or open it once with ?token=); default SKEIN_DASHBOARD_TOKEN')
    .action(async (opts: DbOptions & { port: number; host: string; token?: string }) => {
      await withClient(opts, async (client, opened) => {
        const token = opts.token ?? process.env.SKEIN_DASHBOARD_TOKEN;
        const server = await dashboard({ client, port: opts.port, host: opts.host, ...(token ? { token } : {}) });
        process.stdout.write(`skein dashboard on ${server.url}\njournal: ${opened.embedded ? 'embedded ' : ''}${redactUrl(opened.url)}${opts.schema ? ` schema ${opts.schema}` : ''}\n`);
        await new Promise<void>((resolve) => {
          const stop = () => resolve();
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
        await server.close();
      });
    });
}
