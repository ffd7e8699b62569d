import type { Command } from 'commander';
import { dbOptions, withClient, type DbOptions } from './connect.js';
import { duration, json, print, shortTime, table } from './format.js';
import type { CliContext } from './program.js';

/** `skein workers`: the workers that heartbeat into the journal, alive first. */
export function registerWorkersCommand(program: Command, _ctx: CliContext): void {
  dbOptions(program.command('workers').description('the workers of this journal: alive or gone, what they serve, how busy, last seen'))
    .option('--json', 'print the API objects (client.listWorkers)')
    .action(async (opts: DbOptions & { json?: boolean }) => {
      await withClient(opts, async (client) => {
        const workers = await client.listWorkers();
        if (opts.json) return print(json(workers));
        if (!workers.length) return print('no workers have heartbeated into this journal in the last 7 days');
        const now = Date.now();
        print(
          table(
            ['status', 'worker id', 'host', 'pid', 'queues', 'workflows', 'activities', 'runs', 'started', 'last seen'],
            workers.map((w) => [
              w.status,
              w.workerId,
              w.host,
              String(w.pid),
              w.queues.join(','),
              list(w.workflows),
              list(w.activities),
              `${w.activeRuns}/${w.concurrency}`,
              shortTime(w.startedAt),
              w.stoppedAt !== null ? `stopped ${duration(Math.max(0, now - w.stoppedAt))} ago` : `${duration(Math.max(0, now - w.lastSeenAt))} ago`,
            ]),
          ),
        );
      });
    });
}

/** Up to 3 names, then `+N`. */
function list(names: string[]): string {
  return names.length <= 3 ? names.join(',') || '-' : `${names.slice(0, 3).join(',')} +${names.length - 3}`;
}
