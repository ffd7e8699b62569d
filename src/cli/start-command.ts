import type { Command } from 'commander';
import type { Client } from '../client/client.js';
import { isOpen, type RunRecord } from '../journal/journal.js';
import { dbOptions, withClient, type DbOptions } from './connect.js';
import { EXIT_FAILURE, EXIT_OK } from './errors.js';
import { duration, json, print } from './format.js';
import { nonEmpty, positiveInt, jsonValue } from './options.js';
import { interruptSignal, pause, StatusLine } from './progress.js';
import type { CliContext } from './program.js';
import { countsText, errorText } from './render.js';

interface StartCliOptions extends DbOptions {
  input: unknown;
  workflowId?: string;
  queue?: string;
  executionTimeoutMs?: number;
  wait?: boolean;
  timeoutMs?: number;
  json?: boolean;
}

/** `skein start <workflow>`: starts a root run (idempotent by workflow id); with --wait, waits for it with progress. */
export function registerStartCommand(program: Command, ctx: CliContext): void {
  dbOptions(
    program
      .command('start')
      .description('start a run of a workflow (the same --workflow-id again returns the existing run)')
      .argument('<workflow>', 'the workflow name (as registered by a worker)')
      .option('--input <json>', 'the input, as JSON', jsonValue, null)
      .option('--workflow-id <id>', 'the workflow id (default: <workflow>-<random>)', nonEmpty)
      .option('--queue <name>', 'the queue (default: default)', nonEmpty)
      .option('--execution-timeout-ms <ms>', 'close the run as timed_out if still open this long after it starts', positiveInt)
      .option('--wait', 'wait for the run to close, showing progress; exit code 1 if it does not complete')
      .option('--timeout-ms <ms>', 'with --wait: give up waiting after this long (exit code 1; the run goes on)', positiveInt)
      .option('--json', 'print JSON (the run reference; with --wait, its outcome)'),
  )
    .addHelpText(
      'after',
      `
Examples:
  skein start order --input '{"id":"o-1","amount":10}' --workflow-id order-o-1
  skein start batch --input '["a","b"]' --wait

With --wait: progress (the status of every run in the run's tree) on stderr, live on a terminal, one line per change
otherwise; then the result as JSON on stdout. Exit code 1 when the run fails, is cancelled, terminated, timed out or
blocked (its error on stderr), or when --timeout-ms passes first.`,
    )
    .action(async (workflow: string, opts: StartCliOptions) => {
      ctx.exitCode = await withClient(opts, async (client) => {
        const ref = await client.start(workflow, opts.input, {
          ...(opts.workflowId ? { workflowId: opts.workflowId } : {}),
          ...(opts.queue ? { queue: opts.queue } : {}),
          ...(opts.executionTimeoutMs ? { executionTimeoutMs: opts.executionTimeoutMs } : {}),
        });
        if (!opts.wait) {
          if (opts.json) print(json({ runId: ref.runId, workflowId: ref.workflowId, workflow: ref.workflow, created: ref.created }));
          else print(ref.created ? `started ${ref.workflowId} (run ${ref.runId}, workflow ${ref.workflow})` : `${ref.workflowId} exists already: run ${ref.runId} (workflow ${ref.workflow}); not started again`);
          return EXIT_OK;
        }
        if (!opts.json) print(ref.created ? `started ${ref.workflowId} (run ${ref.runId}, workflow ${ref.workflow})` : `${ref.workflowId} exists already: run ${ref.runId}; waiting for it`);
        const run = await waitForRun(client, ref.runId, { ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}), progress: !opts.json });
        return reportOutcome(run, { created: ref.created, json: Boolean(opts.json), waitedMs: opts.timeoutMs });
      });
    });
}

/**
 * Waits until the run closes (following continue-as-new to the newest run of the chain), or `timeoutMs` passes, or
 * Ctrl-C. Shows the counts by status of the run's tree, live, when `progress`. Returns the run as it last was.
 */
export async function waitForRun(client: Client, runId: string, options: { timeoutMs?: number; progress: boolean }): Promise<RunRecord> {
  const line = new StatusLine();
  const started = Date.now();
  const deadline = options.timeoutMs === undefined ? Infinity : started + options.timeoutMs;
  const interrupt = interruptSignal();
  let run = await client.getRun(runId);
  let lastCounts = 0;
  let counts = '';
  try {
    for (let i = 0; ; i++) {
      if (run.status === 'continued' && run.continuedTo) {
        run = await client.getRun(run.continuedTo);
        continue;
      }
      if (!isOpen(run.status) || run.status === 'blocked' || Date.now() >= deadline || interrupt.signal.aborted) break;
      if (options.progress && (i === 0 || Date.now() - lastCounts >= 500)) {
        lastCounts = Date.now();
        counts = countsText(await client.countRuns({ rootRunId: run.rootRunId }));
      }
      if (options.progress) line.update(`${run.workflowId} [${run.workflow}] ${run.status} · tree: ${counts} · ${duration(Date.now() - started)}`, counts);
      await pause(Math.min(200, Math.max(0, deadline - Date.now())), interrupt.signal);
      run = await client.getRun(run.runId);
    }
    if (options.progress && counts && !isOpen(run.status)) {
      counts = countsText(await client.countRuns({ rootRunId: run.rootRunId }));
      line.update(`${run.workflowId} [${run.workflow}] ${run.status} · tree: ${counts} · ${duration(Date.now() - started)}`, counts);
    }
  } finally {
    line.done();
    interrupt.dispose();
  }
  return run;
}

/** Prints a waited-for run's outcome (result on stdout; error on stderr) and returns the exit code. */
export function reportOutcome(run: RunRecord, o: { created?: boolean; json: boolean; waitedMs?: number | undefined }): number {
  const ok = run.status === 'completed';
  if (o.json) {
    print(
      json({
        runId: run.runId,
        workflowId: run.workflowId,
        workflow: run.workflow,
        ...(o.created !== undefined ? { created: o.created } : {}),
        status: run.status,
        ...(ok ? { result: run.result } : {}),
        ...(run.error && !ok ? { error: run.error } : {}),
      }),
    );
    return ok ? EXIT_OK : EXIT_FAILURE;
  }
  if (ok) {
    print(`completed (took ${duration((run.closedAt ?? Date.now()) - run.createdAt)})`);
    print(JSON.stringify(run.result, null, 2) ?? 'undefined');
    return EXIT_OK;
  }
  if (isOpen(run.status) && run.status !== 'blocked') {
    process.stderr.write(`${run.workflowId} (run ${run.runId}) is still ${run.status}${o.waitedMs ? ` after ${duration(o.waitedMs)}` : ''}; it goes on (skein runs describe ${run.runId})\n`);
    return EXIT_FAILURE;
  }
  const what = run.status === 'blocked' ? 'is blocked (a bug or a code change: fix, then `skein runs resume`)' : run.status;
  process.stderr.write(`${run.workflowId} (run ${run.runId}) ${what}${run.error ? `:\n${errorText(run.error)}` : ''}\n`);
  return EXIT_FAILURE;
}
