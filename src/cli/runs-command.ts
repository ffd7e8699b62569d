import { Command } from 'commander';
import type { BulkResult, Client, TreeNode, TreePage } from '../client/client.js';
import { isOpen, MAX_PAGE_LIMIT, RUN_STATUSES, type RunCounts, type RunFilter, type RunRecord, type RunStatus } from '../journal/journal.js';
import { dbOptions, withClient, type DbOptions } from './connect.js';
import { EXIT_FAILURE, UsageError } from './errors.js';
import { json, print, shortTime, table } from './format.js';
import { jsonValue, nonEmpty, nonNegativeInt, positiveInt, statusList, timeBound } from './options.js';
import { interruptSignal, pause, redrawScreen } from './progress.js';
import type { CliContext } from './program.js';
import { countsText, describeText, errorText, historyText, runsTable, waitText } from './render.js';
import { reportOutcome, waitForRun } from './start-command.js';

/** The filter options shared by `runs list`, `runs count` and the bulk `runs cancel|terminate`. */
interface FilterOptions {
  status?: RunStatus[];
  workflow?: string;
  queue?: string;
  parent?: string;
  root?: string;
  workflowId?: string;
  prefix?: string;
  since?: number;
  until?: number;
  closedSince?: number;
  closedUntil?: number;
}

interface Common extends DbOptions {
  json?: boolean;
}

const STATUS_HELP = `run status, comma-separated or repeated (${RUN_STATUSES.join(', ')})`;

function filterOptions(cmd: Command): Command {
  return cmd
    .option('--status <status>', STATUS_HELP, statusList(RUN_STATUSES))
    .option('--workflow <name>', 'runs of this workflow', nonEmpty)
    .option('--queue <name>', 'runs on this queue', nonEmpty)
    .option('--parent <id>', 'children of this run (run id or workflow id)', nonEmpty)
    .option('--root <id>', 'runs in the tree of this root run (run id or workflow id)', nonEmpty)
    .option('--workflow-id <id>', 'every run of exactly this workflow id (continue-as-new chain, retries)', nonEmpty)
    .option('--prefix <text>', 'workflow ids starting with this', nonEmpty)
    .option('--since <time>', 'started at or after (ISO time, epoch ms, or ago: 30s, 15m, 2h, 7d)', (v) => timeBound(v))
    .option('--until <time>', 'started before (same forms)', (v) => timeBound(v))
    .option('--closed-since <time>', 'closed at or after (same forms)', (v) => timeBound(v))
    .option('--closed-until <time>', 'closed before (same forms)', (v) => timeBound(v));
}

function hasFilter(o: FilterOptions): boolean {
  return [o.status, o.workflow, o.queue, o.parent, o.root, o.workflowId, o.prefix, o.since, o.until, o.closedSince, o.closedUntil].some((v) => v !== undefined);
}

/** The API's RunFilter from the options (`--parent`/`--root` given as workflow ids resolved to run ids). */
async function toFilter(client: Client, o: FilterOptions): Promise<RunFilter> {
  return {
    ...(o.status ? { status: o.status } : {}),
    ...(o.workflow ? { workflow: o.workflow } : {}),
    ...(o.queue ? { queue: o.queue } : {}),
    ...(o.parent ? { parentRunId: (await findRun(client, o.parent)).runId } : {}),
    ...(o.root ? { rootRunId: (await findRun(client, o.root)).runId } : {}),
    ...(o.workflowId ? { workflowId: o.workflowId } : {}),
    ...(o.prefix ? { workflowIdPrefix: o.prefix } : {}),
    ...(o.since !== undefined ? { startedAfter: o.since } : {}),
    ...(o.until !== undefined ? { startedBefore: o.until } : {}),
    ...(o.closedSince !== undefined ? { closedAfter: o.closedSince } : {}),
    ...(o.closedUntil !== undefined ? { closedBefore: o.closedUntil } : {}),
  };
}

/** A run by run id or workflow id (the client's rule: see RunSelector); UnknownRunError when neither names one. */
function findRun(client: Client, id: string): Promise<RunRecord> {
  return client.getRun(id);
}

const ID_HELP = 'run id, or workflow id (its newest run)';

/** `skein runs …`: find, inspect and act on runs. */
export function registerRunsCommand(program: Command, ctx: CliContext): void {
  const runs = program
    .command('runs')
    .description('find, inspect and act on runs: list, count, describe, tree, history, result, signal, cancel, terminate, resume, retry');

  // ---- list ----
  filterOptions(dbOptions(runs.command('list').description('list runs, newest first (filters combine with AND)')))
    .option('--limit <n>', `runs per page (at most ${MAX_PAGE_LIMIT})`, positiveInt, 20)
    .option('--cursor <cursor>', 'continue after the page that printed this cursor', nonEmpty)
    .option('--watch', 'keep the list up to date (every --interval-ms) until Ctrl-C')
    .option('--interval-ms <ms>', 'with --watch: how often to look', positiveInt, 1000)
    .option('--json', 'print JSON: { runs, nextCursor } (with --watch: one JSON line per run that appears or changes)')
    .addHelpText(
      'after',
      `
Examples:
  skein runs list --status failed,blocked --since 1h
  skein runs list --workflow order --prefix order-2026- --limit 50 --json
  skein runs list --root batch-1 --watch`,
    )
    .action(async (opts: FilterOptions & Common & { limit: number; cursor?: string; watch?: boolean; intervalMs: number }) => {
      if (opts.limit > MAX_PAGE_LIMIT) throw new UsageError(`--limit ${opts.limit}: at most ${MAX_PAGE_LIMIT} runs per page`);
      await withClient(opts, async (client) => {
        const filter = await toFilter(client, opts);
        const query = { ...filter, limit: opts.limit, ...(opts.cursor ? { cursor: opts.cursor } : {}) };
        if (opts.watch) return watchRuns(client, filter, query, opts);
        const page = await client.listRuns(query);
        if (opts.json) return print(json(page));
        if (!page.runs.length) return print(opts.cursor ? 'no more runs' : 'no runs match');
        print(runsTable(page.runs));
        if (page.nextCursor) print(`\nmore: skein runs list ${pageArgs(process.argv.slice(2), page.nextCursor)}`);
      });
    });

  // ---- count ----
  filterOptions(dbOptions(runs.command('count').description('count runs by status (same filters as list)')))
    .option('--json', 'print JSON: { total, byStatus }')
    .action(async (opts: FilterOptions & Common) => {
      await withClient(opts, async (client) => {
        const counts = await client.countRuns(await toFilter(client, opts));
        if (opts.json) return print(json(counts));
        print(table(['status', 'runs'], [...RUN_STATUSES.filter((s) => counts.byStatus[s] > 0).map((s) => [s, String(counts.byStatus[s])]), ['total', String(counts.total)]]));
      });
    });

  // ---- describe ----
  dbOptions(runs.command('describe').description('a run: status, ids, times, what it waits on and since when, its error, lineage'))
    .argument('<id>', ID_HELP)
    .option('--json', 'print the API object (client.describe)')
    .action(async (id: string, opts: Common) => {
      await withClient(opts, async (client) => {
        const d = await client.describe(id);
        print(opts.json ? json(d) : describeText(d));
      });
    });

  // ---- tree ----
  dbOptions(runs.command('tree').description("a run and its descendants: status, workflow, what each waits on"))
    .argument('<id>', ID_HELP)
    .option('--max-depth <n>', 'levels below the run (1: its children)', positiveInt)
    .option('--limit <n>', `most descendants shown (at most ${MAX_PAGE_LIMIT})`, positiveInt, 200)
    .option('--json', 'print the API object (client.tree)')
    .action(async (id: string, opts: Common & { maxDepth?: number; limit: number }) => {
      if (opts.limit > MAX_PAGE_LIMIT) throw new UsageError(`--limit ${opts.limit}: at most ${MAX_PAGE_LIMIT}`);
      await withClient(opts, async (client) => {
        const tree = await client.tree(id, { ...(opts.maxDepth ? { maxDepth: opts.maxDepth } : {}), limit: opts.limit });
        if (opts.json) return print(json(tree));
        // counts of the whole tree when the run is a root (one indexed count), else of what is shown
        const counts = tree.root.run.parentRunId === null ? await client.countRuns({ rootRunId: tree.root.run.runId }) : null;
        print(treeText(tree, counts));
      });
    });

  // ---- history ----
  dbOptions(runs.command('history').description("a run's journal, event by event"))
    .argument('<id>', ID_HELP)
    .option('--json', "print the exported history (format 'skein-history/1': save it for `skein replay`)")
    .action(async (id: string, opts: Common) => {
      await withClient(opts, async (client) => {
        const h = await client.history(id);
        print(opts.json ? json(h) : `${h.workflowId} [${h.workflow}] run ${h.runId}, ${h.events.length} events\n${historyText(h.events)}`);
      });
    });

  // ---- result ----
  dbOptions(runs.command('result').description("a run's result (exit code 1 if it did not complete)"))
    .argument('<id>', ID_HELP)
    .option('--wait', 'wait for an open run to close (with progress on stderr)')
    .option('--timeout-ms <ms>', 'with --wait: give up after this long (exit code 1)', positiveInt)
    .option('--json', 'print { runId, workflowId, workflow, status, result | error }')
    .action(async (id: string, opts: Common & { wait?: boolean; timeoutMs?: number }) => {
      ctx.exitCode = await withClient(opts, async (client) => {
        let run = await findRun(client, id);
        if (opts.wait) run = await waitForRun(client, run.runId, { ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}), progress: !opts.json });
        if (isOpen(run.status) && run.status !== 'blocked' && !opts.wait && !opts.json) {
          process.stderr.write(`${run.workflowId} (run ${run.runId}) is ${run.status}: no result yet (--wait to wait for it)\n`);
          return EXIT_FAILURE;
        }
        return reportOutcome(run, { json: Boolean(opts.json), waitedMs: opts.timeoutMs });
      });
    });

  // ---- signal ----
  dbOptions(runs.command('signal').description('send a signal to an open run (delivered once, in send order)'))
    .argument('<id>', ID_HELP)
    .argument('<name>', 'the signal name')
    .argument('[payload]', 'the payload, as JSON', jsonValue)
    .option('--signal-id <id>', 'makes the send idempotent: the same id is delivered once', nonEmpty)
    .option('--json', 'print { runId, signalId }')
    .action(async (id: string, name: string, payload: unknown, opts: Common & { signalId?: string }) => {
      await withClient(opts, async (client) => {
        const run = await findRun(client, id);
        const { signalId } = await client.signal(run.runId, name, payload, opts.signalId ? { signalId: opts.signalId } : {});
        print(opts.json ? json({ runId: run.runId, workflowId: run.workflowId, name, signalId }) : `sent '${name}' to ${run.workflowId} (run ${run.runId}), signal id ${signalId}`);
      });
    });

  // ---- cancel, terminate (one run, or many by filter) ----
  for (const mode of ['cancel', 'terminate'] as const) {
    const cmd = dbOptions(
      runs
        .command(mode)
        .summary(mode === 'cancel' ? 'cancel a run and its open descendants, or every open run the filters match' : 'terminate a run at once (no code runs), or every open run the filters match')
        .description(
          mode === 'cancel'
            ? 'cancel a run (CancelledError at its current yield, --grace-ms to clean up) and its open descendants; or, without an id, every open run the filters match'
            : 'terminate a run at once, without running its code (descendants follow their parent-close policy); or, without an id, every open run the filters match',
        ),
    ).argument('[id]', `${ID_HELP}; leave out to act on every open run the filters match`);
    filterOptions(cmd).option('--reason <text>', 'why (journaled with the run, and its error message)', nonEmpty);
    if (mode === 'cancel') cmd.option('--grace-ms <ms>', 'how long the code may clean up (0: close at once)', nonNegativeInt, 10_000);
    cmd
      .option('--dry-run', 'with filters: list what would be affected, change nothing')
      .option('--limit <n>', 'with filters: most runs acted on (newest first; at most 10000)', positiveInt, 1000)
      .option('--yes', `with filters: ${mode} without a dry run first`)
      .option('--json', 'print JSON')
      .addHelpText(
        'after',
        `
Examples:
  skein runs ${mode} order-o-1 --reason 'customer asked'${mode === 'cancel' ? ' --grace-ms 30000' : ''}
  skein runs ${mode} --status running --workflow order --dry-run
  skein runs ${mode} --status running --workflow order --reason 'bad deploy' --yes`,
      )
      .action(async (id: string | undefined, opts: FilterOptions & Common & { reason?: string; graceMs?: number; dryRun?: boolean; yes?: boolean; limit: number }) => {
        const reason = opts.reason ?? `${mode === 'cancel' ? 'cancelled' : 'terminated'} from the command line`;
        if (id !== undefined) {
          if (hasFilter(opts) || opts.dryRun || opts.yes) throw new UsageError(`skein runs ${mode} <id> takes no filters, --dry-run or --yes: give an id, or filters`);
          await withClient(opts, async (client) => {
            const run = await findRun(client, id);
            const r = mode === 'cancel' ? await client.cancel(run.runId, reason, { graceMs: opts.graceMs ?? 10_000 }) : await client.terminate(run.runId, reason);
            if (opts.json) return print(json(r));
            print(`${run.workflowId} (run ${r.runId}): ${r.status}${r.status === 'cancelling' ? ` (its code has ${opts.graceMs} ms to clean up)` : ''}`);
            if (r.closed.length) print(`descendants closed: ${r.closed.length}`);
            if (r.truncated.length) print(`descendants left open below the depth bound: ${r.truncated.join(', ')}`);
          });
          return;
        }
        if (!hasFilter(opts)) throw new UsageError(`skein runs ${mode}: give a run id, or filters (--status, --workflow, …) to ${mode} many`);
        if (!opts.dryRun && !opts.yes) throw new UsageError(`skein runs ${mode} with filters: look first with --dry-run, then pass --yes to ${mode} them`);
        await withClient(opts, async (client) => {
          const filter = await toFilter(client, opts);
          const options = { dryRun: Boolean(opts.dryRun), limit: opts.limit };
          const r = mode === 'cancel' ? await client.cancelMany(filter, reason, { ...options, graceMs: opts.graceMs ?? 10_000 }) : await client.terminateMany(filter, reason, options);
          if (opts.json) return print(json(r));
          print(bulkText(mode, r));
        });
      });
  }

  // ---- resume, retry ----
  dbOptions(runs.command('resume').summary('resume a blocked run after deploying a fix').description('resume a blocked run after deploying a fix: it replays with the code the workers have now (and blocks again if still broken)'))
    .argument('<id>', ID_HELP)
    .option('--reason <text>', 'why (journaled as RunResumed)', nonEmpty)
    .option('--json', 'print the run')
    .action(async (id: string, opts: Common & { reason?: string }) => {
      await withClient(opts, async (client) => {
        const run = await findRun(client, id);
        const r = await client.resume(run.runId, opts.reason ?? 'resumed from the command line');
        print(opts.json ? json(r) : `resumed ${r.workflowId} (run ${r.runId}): due now, a worker replays it with its current code`);
      });
    });

  dbOptions(runs.command('retry').summary('retry a closed root run as a new run of the same workflow id').description('retry a failed, cancelled, terminated or timed-out root run as a new run of the same workflow id and input'))
    .argument('<id>', ID_HELP)
    .option('--reason <text>', "why (journaled in the new run's RunStarted)", nonEmpty)
    .option('--json', 'print { run, created }')
    .action(async (id: string, opts: Common & { reason?: string }) => {
      await withClient(opts, async (client) => {
        const run = await findRun(client, id);
        const r = await client.retry(run.runId, opts.reason ?? 'retried from the command line');
        if (opts.json) return print(json(r));
        print(
          r.created
            ? `retrying ${r.run.workflowId}: new run ${r.run.runId} (retry of ${r.previousRunId}, which was ${run.status})`
            : `${r.previousRunId} was retried already: run ${r.run.runId} (${r.run.status})`,
        );
      });
    });
}

/** The arguments of this command line with `--cursor` set to `cursor` (for the "more" hint). */
function pageArgs(argv: string[], cursor: string): string {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === 'runs' || a === 'list') continue;
    if (a === '--cursor') {
      i++;
      continue;
    }
    if (a.startsWith('--cursor=')) continue;
    out.push(/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`);
  }
  return [...out, '--cursor', cursor].join(' ');
}

/** `runs list --watch`: a redrawn screen on a terminal; elsewhere, one line per run that appears or changes. */
async function watchRuns(client: Client, filter: RunFilter, query: RunFilter & { limit: number }, opts: Common & { intervalMs: number }): Promise<void> {
  const tty = Boolean(process.stdout.isTTY) && !opts.json;
  const seen = new Map<string, string>();
  const interrupt = interruptSignal();
  try {
    for (let first = true; !interrupt.signal.aborted; first = false) {
      const [page, counts] = await Promise.all([client.listRuns(query), client.countRuns(filter)]);
      if (tty) {
        redrawScreen(`${shortTime(Date.now())}  ${counts.total} runs: ${countsText(counts)}  (every ${opts.intervalMs} ms; Ctrl-C to stop)\n\n${page.runs.length ? runsTable(page.runs) : 'no runs match'}`);
      } else {
        if (first && !opts.json) print(`${shortTime(Date.now())}  ${counts.total} runs: ${countsText(counts)}`);
        for (const r of [...page.runs].reverse()) {
          const key = `${r.status}|${r.lastSeq}`;
          if (seen.get(r.runId) === key) continue;
          const before = seen.get(r.runId);
          seen.set(r.runId, key);
          if (before?.split('|')[0] === r.status && !opts.json) continue; // only new events: not worth a line
          if (opts.json) print(JSON.stringify(r));
          else print(`${shortTime(Date.now())}  ${r.status.padEnd(10)} ${r.workflowId} [${r.workflow}] ${r.runId}${r.error && r.status !== 'completed' ? `  ${errorText(r.error, false)}` : ''}`);
        }
      }
      await pause(opts.intervalMs, interrupt.signal);
    }
  } finally {
    interrupt.dispose();
  }
}

/** What a bulk cancel or terminate did (or, dry, would do). */
function bulkText(mode: 'cancel' | 'terminate', r: BulkResult): string {
  const plural = (n: number) => `${n} run${n === 1 ? '' : 's'}`;
  if (!r.matched) return `no open runs match: nothing to ${mode}`;
  const more = r.more ? ` (more match: raise --limit or run again)` : '';
  if (r.dryRun) return `would ${mode} ${plural(r.matched)}${more} (dry run: nothing changed):\n${runsTable(r.runs)}`;
  const verb = mode === 'cancel' ? 'cancelled' : 'terminated';
  const done = new Set(r.done);
  const lines = [`${verb} ${plural(r.done.length)}${r.skipped.length ? `, skipped ${r.skipped.length} (closed meanwhile, e.g. by an ancestor's cascade)` : ''}${more}:`];
  const acted = r.runs.filter((x) => done.has(x.runId));
  if (acted.length) lines.push(table(['workflow id', 'workflow', 'started', 'run id'], acted.map((x) => [x.workflowId, x.workflow, shortTime(x.createdAt), x.runId])));
  for (const s of r.skipped) lines.push(`skipped ${s.runId}: ${s.reason}`);
  return lines.join('\n');
}

/** A tree as the CLI prints it: one line per run, indented under its parent, with what it waits on or its error. */
function treeText(tree: TreePage, counts: RunCounts | null): string {
  const byParent = new Map<string | null, TreeNode[]>();
  for (const n of tree.nodes) byParent.set(n.run.parentRunId, [...(byParent.get(n.run.parentRunId) ?? []), n]);
  const now = Date.now();
  const lines: string[] = [];
  const line = (n: TreeNode, prefix: string, last: boolean, top: boolean) => {
    const r = n.run;
    let note = '';
    if (r.error && r.status !== 'completed') note = errorText(r.error, false);
    else if (n.waitingFor === 'worker') note = `waits for a worker with workflow '${r.workflow}' on queue '${r.queue}'`;
    else if (r.stall) note = `stalled: activity '${r.stall.activity}' is on no worker that took it`;
    else if (n.openWaits.length) note = `waits on ${waitText(n.openWaits[0]!, now)}${n.openWaitCount > 1 ? ` (+${n.openWaitCount - 1} more)` : ''}`;
    lines.push(`${top ? '' : `${prefix}${last ? '└─ ' : '├─ '}`}${r.workflowId} [${r.workflow}] ${r.status}  ${r.runId}${note ? `  ${note}` : ''}`);
    const kids = byParent.get(r.runId) ?? [];
    kids.forEach((k, i) => line(k, top ? '' : `${prefix}${last ? '   ' : '│  '}`, i === kids.length - 1, false));
  };
  line(tree.root, '', true, true);
  if (tree.nextCursor) lines.push(`… more descendants than --limit ${tree.nodes.length} (raise --limit, or lower --max-depth)`);
  lines.push('', `tree: ${countsText(counts ?? countsOf([tree.root, ...tree.nodes]))}`);
  return lines.join('\n');
}

function countsOf(nodes: TreeNode[]): RunCounts {
  const byStatus = Object.fromEntries(RUN_STATUSES.map((s) => [s, 0])) as Record<RunStatus, number>;
  for (const n of nodes) byStatus[n.run.status]++;
  return { total: nodes.length, byStatus };
}
