/**
 * Runs the commands docs/operating.md shows ("Command line") against workers of examples/operating/workflows.ts and
 * prints each with its real output, as the page shows them:
 *
 *   DATABASE_URL=postgres://… npx tsx examples/operating/transcript.ts > /tmp/transcript.md
 *
 * Everything happens in a fresh schema (SKEIN_SCHEMA, dropped at the end); the CLI runs from the sources
 * (`node --import tsx src/cli/main.ts`, what `skein` is once built). Output is not a terminal here, so live progress
 * shows as plain lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Sql } from '../../src/journal/postgres/sql.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MODULE = 'examples/operating/workflows.ts';
const schema = `skein_docs_${randomBytes(4).toString('hex')}`;
const url = process.env.DATABASE_URL;
if (!url) throw new Error('set DATABASE_URL (the transcript makes and drops a schema of its own there)');
let histories = '';

const env = (extra: Record<string, string> = {}) => ({ ...process.env, SKEIN_SCHEMA: schema, ...extra });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a reader sees: the temp folder as `histories`. */
const shown = (s: string) => (histories ? s.replaceAll(histories, 'histories') : s);

interface Ran {
  code: number | null;
  out: string;
  stdout: string;
}

function cli(args: string[], extraEnv: Record<string, string> = {}): { child: ChildProcess; done: Promise<Ran>; output: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: root, env: env(extraEnv), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    stdout += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<Ran>((r) => child.once('exit', (code) => r({ code, out, stdout })));
  return { child, done, output: () => out };
}

/** Runs `skein …args` and prints it as a shell session; returns what it printed. */
async function show(args: string[], o: { env?: Record<string, string>; trim?: (s: string) => string; redirect?: string } = {}): Promise<Ran> {
  const r = await cli(args, o.env).done;
  if (o.redirect) await writeFile(o.redirect, r.stdout);
  const prefix = Object.entries(o.env ?? {})
    .map(([k, v]) => `${k}=${v} `)
    .join('');
  const quoted = args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ');
  let text = `$ ${prefix}skein ${shown(quoted)}${o.redirect ? ` > ${shown(o.redirect)}` : ''}\n`;
  if (!o.redirect) text += shown(o.trim ? o.trim(r.out) : r.out);
  if (r.code !== 0) text += `$ echo $?\n${r.code}\n`;
  process.stdout.write(text);
  return r;
}

function section(title: string): void {
  process.stdout.write(`\n\`\`\`\`\n<!-- ${title} -->\n`);
}
function end(): void {
  process.stdout.write('````\n');
}

async function worker(id: string, extraEnv: Record<string, string> = {}) {
  const w = cli(['worker', '--workflows', MODULE, '--worker-id', id], { SKEIN_LOG_LEVEL: 'info', ...extraEnv });
  for (let i = 0; i < 300 && !w.output().includes('worker started'); i++) await sleep(100);
  if (!w.output().includes('worker started')) throw new Error(`worker ${id} did not start:\n${w.output()}`);
  return w;
}

const firstLines = (n: number) => (s: string) => s.split('\n').slice(0, n).join('\n') + (s.split('\n').length > n ? '\n…\n' : '');

async function main(): Promise<void> {
  histories = await mkdtemp(path.join(tmpdir(), 'skein-histories-'));
  const a = await worker('worker-a');
  section('worker');
  process.stdout.write(`$ skein worker --workflows ${MODULE} --worker-id worker-a\n${firstLines(2)(a.output())}`);
  end();

  section('start');
  await show(['start', 'batch', '--input', '["a","bb","ccc"]', '--workflow-id', 'batch-1', '--wait']);
  await show(['start', 'approval', '--input', '"PO-7"', '--workflow-id', 'approval-7']);
  await show(['start', 'order', '--input', '{"id":"big","amount":5000}', '--workflow-id', 'order-big', '--wait']);
  end();

  section('list');
  await show(['runs', 'list']);
  await show(['runs', 'list', '--status', 'failed,blocked', '--since', '1h', '--json'], { trim: firstLines(12) });
  await show(['runs', 'list', '--workflow', 'order', '--limit', '2']);
  await show(['runs', 'count']);
  end();

  section('describe');
  await show(['runs', 'describe', 'approval-7']);
  end();

  section('tree');
  await show(['runs', 'tree', 'batch-1']);
  end();

  section('history');
  await show(['runs', 'history', 'batch-1/bb']);
  end();

  section('signal');
  await show(['runs', 'signal', 'approval-7', 'approve', '"ada"']);
  await show(['runs', 'result', 'approval-7', '--wait']);
  end();

  section('cancel');
  for (const id of ['approval-8', 'approval-9', 'approval-10']) await cli(['start', 'approval', '--input', `"${id}"`, '--workflow-id', id]).done;
  await sleep(500);
  await show(['runs', 'cancel', 'approval-8', '--reason', 'PO withdrawn']);
  await show(['runs', 'terminate', 'approval-9', '--reason', 'duplicate']);
  await show(['runs', 'cancel', '--workflow', 'approval', '--status', 'running', '--dry-run']);
  await show(['runs', 'cancel', '--workflow', 'approval', '--status', 'running', '--reason', 'quarter closed', '--grace-ms', '0', '--yes']);
  end();

  section('retry');
  await show(['runs', 'retry', 'approval-9', '--reason', 'not a duplicate after all']);
  await show(['runs', 'list', '--workflow-id', 'approval-9']);
  end();

  section('blocked');
  await show(['start', 'invoice', '--input', '{"id":"inv-1","amount":100,"country":"fr"}', '--workflow-id', 'inv-1', '--wait']);
  await show(['runs', 'describe', 'inv-1']);
  end();

  a.child.kill('SIGTERM');
  await a.done;
  const b = await worker('worker-b', { INVOICE_FIX: '1' });
  section('resume');
  await show(['runs', 'resume', 'inv-1', '--reason', 'deployed the fix']);
  await show(['runs', 'result', 'inv-1', '--wait']);
  end();

  section('workers');
  await show(['workers']);
  end();

  section('replay');
  await show(['runs', 'history', 'batch-1/a', '--json'], { redirect: path.join(histories, 'order-a.json') });
  await show(['runs', 'history', 'batch-1/bb', '--json'], { redirect: path.join(histories, 'order-bb.json') });
  await show(['replay', histories, '--workflows', MODULE]);
  await show(['replay', histories, '--workflows', MODULE], { env: { ORDER_V2: '1' } });
  end();

  section('watch');
  const watch = cli(['runs', 'list', '--workflow', 'order', '--since', '1m', '--watch']);
  await sleep(1500);
  await cli(['start', 'batch', '--input', '["d","ee"]', '--workflow-id', 'batch-2', '--wait']).done;
  await sleep(1500);
  watch.child.kill('SIGINT');
  await watch.done;
  process.stdout.write(`$ skein runs list --workflow order --since 1m --watch\n${watch.output()}^C\n`);
  end();

  section('errors');
  await show(['runs', 'list', '--status', 'done']);
  await show(['runs', 'describe', 'no-such-order']);
  await show(['runs', 'resume', 'approval-7']);
  end();

  b.child.kill('SIGTERM');
  await b.done;
}

try {
  await main();
} finally {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await new Sql(schema).dropSchema(c);
  await c.end();
  if (histories) await rm(histories, { recursive: true, force: true });
}
