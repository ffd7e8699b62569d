import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { NonDeterminismError } from '../runtime/errors.js';
import type { ReplayResult } from '../testing/replay.js';
import { EXIT_FAILURE, EXIT_OK, UsageError } from './errors.js';
import { json, print } from './format.js';
import { loadWorkflowsModule } from './load-module.js';
import { positiveInt } from './options.js';
import type { CliContext } from './program.js';

/**
 * `skein replay <histories> --workflows <module>`: replays exported histories (`skein runs history <id> --json`, or
 * `client.history()`, format 'skein-history/1') against the code in the module, as a worker would after a deploy.
 * Exit code 1 when any no longer replays, naming the file, the seq and both commands.
 */
export function registerReplayCommand(program: Command, ctx: CliContext): void {
  program
    .command('replay')
    .description('check exported histories against the current code before a deploy (exit code 1 on a divergence)')
    .argument('<histories>', "a history file (.json, as `skein runs history <id> --json` prints it), or a folder of them")
    .requiredOption('--workflows <module>', 'the module of workflows to check (as given to `skein worker`)')
    .option('--max-child-depth <n>', 'as the workers run with (default 10)', positiveInt)
    .option('--json', 'print one result per history')
    .addHelpText(
      'after',
      `
Each history is replayed twice (Math.random() and Date.now() answered differently each time), so code that reads them
directly instead of random() and now() is caught even when the history happens to replay.

Examples:
  skein runs history order-o-1 --json > histories/order-o-1.json
  skein replay histories/ --workflows ./dist/workflows.js`,
    )
    .action(async (target: string, opts: { workflows: string; maxChildDepth?: number; json?: boolean }) => {
      const info = await stat(target).catch(() => null);
      if (!info) throw new UsageError(`no such file or folder: ${target}`);
      const mod = await loadWorkflowsModule(opts.workflows);
      // loaded here: only this command needs the replay tester (and it answers Math.random/Date.now its own way)
      const { checkHistories, checkHistory } = await import('../testing/replay.js');
      const options = opts.maxChildDepth ? { maxChildDepth: opts.maxChildDepth } : {};
      const results = info.isDirectory() ? await checkHistories(mod.workflows, target, options) : [await checkHistory(mod.workflows, target, options).catch((err: Error) => failure(target, err))];
      if (!results.length) throw new UsageError(`no *.json histories in ${target}`);
      const failed = results.filter((r) => !r.ok);
      if (opts.json) print(json(results.map(toJson)));
      else {
        for (const r of results) print(resultText(r));
        print(`\n${results.length} histor${results.length === 1 ? 'y' : 'ies'}: ${results.length - failed.length} ok${failed.length ? `, ${failed.length} failed` : ''}`);
      }
      ctx.exitCode = failed.length ? EXIT_FAILURE : EXIT_OK;
    });
}

function failure(source: string, error: Error): ReplayResult {
  return { ok: false, runId: '', workflowId: '', workflow: '', source, error };
}

function resultText(r: ReplayResult): string {
  const where = r.source ?? r.workflowId;
  if (r.ok) return `ok    ${where}  ${r.workflow} ${r.workflowId} (run ${r.runId}): ${r.events} events, ${r.status}`;
  const e = r.error;
  const who = r.runId ? `  ${r.workflow} ${r.workflowId} (run ${r.runId})` : '';
  if (e instanceof NonDeterminismError) {
    return [`FAIL  ${where}${who}: diverges at seq ${e.seq}`, `      journaled: ${e.journaled}`, `      code now:  ${e.issued}`].join('\n');
  }
  return `FAIL  ${where}${who}: ${e.name}: ${e.message.split('\n')[0]}`;
}

function toJson(r: ReplayResult): unknown {
  if (r.ok) return r;
  const e = r.error;
  return {
    ok: false,
    source: r.source,
    runId: r.runId,
    workflowId: r.workflowId,
    workflow: r.workflow,
    error: { name: e.name, message: e.message, ...(e instanceof NonDeterminismError ? { seq: e.seq, journaled: e.journaled, issued: e.issued } : {}) },
  };
}
