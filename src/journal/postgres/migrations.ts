import type { Pool } from 'pg';
import { Sql } from './sql.js';

/**
 * Versioned schema migrations. Each has a number, a name and its DDL (a function of the quoted schema name, since
 * every table lives in the journal's schema). They are applied in order, each recorded in `skein_migrations`, never
 * edited once released: a schema change is a new entry at the end.
 */
export interface Migration {
  version: number;
  name: string;
  sql: (schema: string) => string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'runs and events',
    sql: (s) => `
      CREATE TABLE ${s}.runs (
        run_id             text PRIMARY KEY,
        workflow_id        text NOT NULL,
        workflow           text NOT NULL,
        status             text NOT NULL
          CHECK (status IN ('running', 'blocked', 'completed', 'failed', 'cancelled', 'terminated', 'timed_out', 'continued')),
        -- json, not jsonb: the text is kept as written, so object key order survives replay (see sql.ts)
        input              json NOT NULL,
        parent_run_id      text,
        call_id            text,
        root_run_id        text NOT NULL,
        depth              integer NOT NULL,
        queue              text NOT NULL,
        lease_owner        text,
        lease_token        text,
        -- times are epoch milliseconds of the journal's clock
        lease_expires_at   bigint,
        next_wakeup_at     bigint,
        created_at         bigint NOT NULL,
        closed_at          bigint,
        result             json,
        error              json,
        continued_from     text,
        continued_to       text,
        last_seq           integer NOT NULL,
        -- the WaitSpec, one column per part, so a closing child's transaction can evaluate the wake rule in SQL
        wait_timer_at      bigint,
        wait_on_close      text[] NOT NULL DEFAULT '{}',
        wait_on_failure    text[] NOT NULL DEFAULT '{}',
        wait_on_all_closed text[] NOT NULL DEFAULT '{}',
        wait_busy          boolean NOT NULL DEFAULT false,
        CONSTRAINT runs_workflow_id_key UNIQUE (workflow_id)
      );

      -- claimDue: due open runs by queue, oldest wake-up first; closed and waiting runs are not in the index at all
      CREATE INDEX runs_due_idx ON ${s}.runs (queue, next_wakeup_at) WHERE status = 'running' AND next_wakeup_at IS NOT NULL;
      -- listChildren, childOutcomes, and the cancel cascade
      CREATE INDEX runs_parent_idx ON ${s}.runs (parent_run_id, created_at) WHERE parent_run_id IS NOT NULL;

      CREATE TABLE ${s}.events (
        run_id      text NOT NULL REFERENCES ${s}.runs (run_id),
        seq         integer NOT NULL,
        type        text NOT NULL,
        payload     json NOT NULL,
        recorded_at bigint NOT NULL,
        PRIMARY KEY (run_id, seq)
      );
    `,
  },
  {
    version: 2,
    name: 'run lifecycle: parent-close policy, cancel requests, signal inbox, continue-as-new chains',
    sql: (s) => `
      ALTER TABLE ${s}.runs
        ADD COLUMN parent_close_policy text NOT NULL DEFAULT 'cancel' CHECK (parent_close_policy IN ('cancel', 'terminate', 'abandon')),
        -- a graceful cancel under way (all three set together); cleared when the run closes
        ADD COLUMN cancel_reason       text,
        ADD COLUMN cancel_deadline     bigint,
        ADD COLUMN cancel_requested_at bigint,
        -- the run has journaled its CancelRequested: the request no longer makes it due
        ADD COLUMN cancel_journaled    boolean NOT NULL DEFAULT false;

      -- A continue-as-new chain shares its workflow id: only the first run of a chain (continued_from IS NULL) holds
      -- it uniquely, so starting or creating another instance with that id still conflicts. getRunByWorkflowId reads
      -- the newest run of the chain (continued_to IS NULL).
      ALTER TABLE ${s}.runs DROP CONSTRAINT runs_workflow_id_key;
      CREATE UNIQUE INDEX runs_workflow_id_first_key ON ${s}.runs (workflow_id) WHERE continued_from IS NULL;
      CREATE INDEX runs_workflow_id_idx ON ${s}.runs (workflow_id);

      -- Signals sent to a run. A row is kept after its delivery (delivered = true, the run journaled SignalReceived):
      -- the primary key is the record of every signal id ever accepted, so a re-send of a delivered id is a no-op.
      -- seq orders the inbox in send order (sent_at ties under one clock tick). Continue-as-new moves the undelivered
      -- rows to the next run.
      CREATE TABLE ${s}.inbox (
        run_id    text NOT NULL REFERENCES ${s}.runs (run_id),
        signal_id text NOT NULL,
        name      text NOT NULL,
        payload   json NOT NULL,
        sent_at   bigint NOT NULL,
        seq       bigserial NOT NULL,
        delivered boolean NOT NULL DEFAULT false,
        PRIMARY KEY (run_id, signal_id)
      );
      CREATE INDEX inbox_pending_idx ON ${s}.inbox (run_id, seq) WHERE NOT delivered;
    `,
  },
  {
    version: 3,
    name: 'count of still-open runs in wait_on_all_closed',
    sql: (s) => `
      -- How many runs of wait_on_all_closed are still open. Set when the wait is recorded, decremented by each of
      -- those children's closes (under the parent's row lock); the parent is woken when it reaches 0. It replaces a
      -- scan of the whole set on every close, which made a fan-out of N children O(N^2).
      ALTER TABLE ${s}.runs ADD COLUMN wait_all_open integer NOT NULL DEFAULT 0;
      UPDATE ${s}.runs r SET wait_all_open = (
        SELECT count(*) FROM ${s}.runs c WHERE c.run_id = ANY(r.wait_on_all_closed) AND c.status IN ('running', 'blocked'))
      WHERE cardinality(r.wait_on_all_closed) > 0;
    `,
  },
  {
    version: 4,
    name: 'HOT-friendly runs: due index without a status predicate, fillfactor 80',
    sql: (s) => `
      -- Only open runs have a next_wakeup_at (every close and block clears it), so the due index needs no predicate on
      -- status. With status out of every index, closing a waiting run (a cancel cascade flips hundreds at once)
      -- changes no indexed column and can be a heap-only-tuple update, which the free space left by fillfactor 80
      -- makes likely: no index entries to write.
      DROP INDEX ${s}.runs_due_idx;
      CREATE INDEX runs_due_idx ON ${s}.runs (queue, next_wakeup_at) WHERE next_wakeup_at IS NOT NULL;
      ALTER TABLE ${s}.runs SET (fillfactor = 80);
    `,
  },
  {
    version: 5,
    name: 'notify when a root run closes',
    sql: (s) => `
      -- Whoever waits for a root run's result (Client.result) is told when it closes, by whichever path closes it
      -- (its own commit, a group commit, a cancel): a trigger, so no write path can forget. Only root runs, so the
      -- cost is one notification per started workflow.
      CREATE FUNCTION ${s}.notify_root_closed() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '_closed', NEW.run_id);
        RETURN NULL;
      END
      $fn$;
      CREATE TRIGGER runs_root_closed AFTER UPDATE OF status ON ${s}.runs
        FOR EACH ROW
        WHEN (NEW.parent_run_id IS NULL AND OLD.status IN ('running', 'blocked') AND NEW.status NOT IN ('running', 'blocked'))
        EXECUTE FUNCTION ${s}.notify_root_closed();
    `,
  },
  {
    version: 6,
    name: 'what an open run waits on, as its engine said',
    sql: (s) => `
      -- The engine's open waits (kind, ids, barrier position, since when), written by each commit that suspends the
      -- run and cleared when it closes or blocks, so describe() shows what the one interpreter knows instead of
      -- re-reading the journal with a second one. At most 50 waits and their total count (see runtime/waits.ts).
      ALTER TABLE ${s}.runs ADD COLUMN waits json;
    `,
  },
  {
    version: 7,
    name: 'misconfigured fleets: claims by workflow, what a run is stuck on (stall)',
    sql: (s) => `
      -- What keeps an open run from going on (RunRecord.stall): an activity the worker that held it does not have.
      -- Written in the fenced commit that releases the run, cleared by the commit that journals that activity's result
      -- and by every close. json like the other payloads; only claimDue looks inside it, on rows it has found already.
      ALTER TABLE ${s}.runs ADD COLUMN stall json;

      -- A worker claims only runs of the workflows it registered (claimDue: workflow = ANY(...)). Runs that no worker
      -- can execute stay due (next_wakeup_at in the past) until one that can appears; with the due index on
      -- (queue, next_wakeup_at) every poll of every other worker read them all from the heap and threw them away
      -- (20,000 such runs: 20,000 rows removed by filter, 4 ms per poll, against 0.2 ms). With workflow in the key the
      -- index scan yields only the claimer's own workflows. It replaces the old index rather than adding one, so a
      -- write that moves next_wakeup_at still maintains one due index; a claim without a workflow list (tools, tests)
      -- still uses it, on queue and next_wakeup_at, and a backlog of due runs is a bitmap scan and sort either way.
      DROP INDEX ${s}.runs_due_idx;
      CREATE INDEX runs_due_idx ON ${s}.runs (queue, workflow, next_wakeup_at) WHERE next_wakeup_at IS NOT NULL;
    `,
  },
  {
    version: 8,
    name: 'operating: run listings, retries, workers',
    sql: (s) => `
      -- Retry (an operator's): a closed root run is retried as a new run of the same workflow id. retry_of on the new
      -- run, retried_to on the retried one (like continued_from/continued_to), so getRunByWorkflowId picks the newest
      -- run: the one neither continued nor retried. Only the first run of an instance holds its workflow id uniquely
      -- (idempotent start); a retry, like a continue-as-new run, shares it. Two retries of one run cannot both be
      -- created: the retry's run id is derived from the retried run's (the primary key refuses the second).
      ALTER TABLE ${s}.runs ADD COLUMN retry_of text, ADD COLUMN retried_to text;
      DROP INDEX ${s}.runs_workflow_id_first_key;
      CREATE UNIQUE INDEX runs_workflow_id_first_key ON ${s}.runs (workflow_id) WHERE continued_from IS NULL AND retry_of IS NULL;

      -- Listings (Sql.listRuns, countRuns): newest first, keyset pagination on (created_at, run_id). Each filter has an
      -- index whose key ends with (created_at, run_id), so a page is one index range scanned backwards from the cursor,
      -- whatever the table holds. run_id is compared bytewise (COLLATE "C"), as the memory journal compares it. Several
      -- statuses are one scan of runs_status_idx per status, merged (see Sql.listRuns).
      -- The cost, paid on every insert and close: a close changes status and closed_at, which are now indexed, so it
      -- is no longer a heap-only-tuple update (migration 4); a new run writes seven more index entries.
      -- no filter, startedAfter/startedBefore (created_at ranges)
      CREATE INDEX runs_created_idx ON ${s}.runs (created_at, run_id COLLATE "C");
      -- status (one or several)
      CREATE INDEX runs_status_idx ON ${s}.runs (status, created_at, run_id COLLATE "C");
      -- workflow
      CREATE INDEX runs_workflow_idx ON ${s}.runs (workflow, created_at, run_id COLLATE "C");
      -- queue
      CREATE INDEX runs_queue_idx ON ${s}.runs (queue, created_at, run_id COLLATE "C");
      -- workflowIdPrefix: a range [prefix, prefix with its last character incremented) on a bytewise-ordered key,
      -- whatever the database's collation
      CREATE INDEX runs_workflow_id_prefix_idx ON ${s}.runs (workflow_id COLLATE "C");
      -- closedAfter/closedBefore: closed runs only
      CREATE INDEX runs_closed_idx ON ${s}.runs (closed_at) WHERE closed_at IS NOT NULL;
      -- listDescendants of a root (breadth first: depth, created_at, run_id), a page at a time; also listRuns by
      -- rootRunId, which reads the tree's entries and sorts them newest first (one tree, not the table)
      CREATE INDEX runs_root_idx ON ${s}.runs (root_run_id, depth, created_at, run_id COLLATE "C");
      -- parentRunId: the parent index gains run_id, so a page of a 10,000-child fan-out whose children share one
      -- created_at (one commit created them) starts at the cursor instead of re-reading the ties. It still serves
      -- listChildren, childOutcomes and the cancel cascade, and listDescendants below a run that is not a root walks it
      -- a level at a time, index-only (the key holds parent, created_at and run_id).
      DROP INDEX ${s}.runs_parent_idx;
      CREATE INDEX runs_parent_idx ON ${s}.runs (parent_run_id, created_at, run_id COLLATE "C") WHERE parent_run_id IS NOT NULL;

      -- Workers (Journal.workerHeartbeat, listWorkers): one row per worker process, refreshed every heartbeat interval
      -- and marked stopped on graceful shutdown. Gone = stopped, or not seen for 3 intervals (computed when listed, by
      -- the journal's clock). Rows not seen for 7 days are deleted by the next heartbeat of any worker.
      CREATE TABLE ${s}.workers (
        worker_id     text PRIMARY KEY,
        host          text NOT NULL,
        pid           integer NOT NULL,
        queues        text[] NOT NULL,
        workflows     text[] NOT NULL,
        activities    text[] NOT NULL,
        concurrency   integer NOT NULL,
        active_runs   integer NOT NULL,
        interval_ms   integer NOT NULL,
        started_at    bigint NOT NULL,
        last_seen_at  bigint NOT NULL,
        stopped_at    bigint
      );
    `,
  },
  {
    version: 9,
    name: 'the write path of a run: fewer index entries, no notification inside its transactions',
    sql: (s) => `
      -- A root run's close is announced by the journal after the closing transaction commits (PgJournal.announce), not
      -- by migration 5's trigger: a NOTIFY inside a writing transaction holds the server's notification lock through
      -- the commit's WAL flush, so every root close serialised behind every other (W5, 5,000 signalled runs closing:
      -- ~700 closes/s whatever the pool). Every path that closes a root run announces it; a notification lost to a
      -- crash costs Client.result one poll interval.
      DROP TRIGGER runs_root_closed ON ${s}.runs;
      DROP FUNCTION ${s}.notify_root_closed();

      -- Most updates of a run move next_wakeup_at (a signal, a commit that waits, a close), which the due index holds,
      -- so they are not heap-only: each writes a new entry into every index of runs whose predicate the row meets.
      -- Migration 8 gave runs twelve indexes; a signalled run wrote twelve entries per update. Measured on the same
      -- machine, same run (docs/benchmarks.md): W5 signals and W3's cascade were ~1.3x faster without the listing
      -- indexes. The listings keep an index where a filter is selective and fall back to the newest-first scan of
      -- runs_created_idx where it is not:
      --  * status: only the statuses an operator looks for among many (failed, cancelled, terminated, timed_out,
      --    blocked, continued) are indexed. Running and completed runs, the ones written all the time, write no entry;
      --    listing them scans runs_created_idx newest first (running runs are the newest; completed ones the bulk).
      DROP INDEX ${s}.runs_status_idx;
      CREATE INDEX runs_status_idx ON ${s}.runs (status, created_at, run_id COLLATE "C") WHERE status NOT IN ('running', 'completed');
      --  * workflow, queue, closed time: filtered on the newest-first scan (a page reads until it has its rows). Add
      --    an index of your own if you list a rare workflow among millions of runs (docs/operating.md).
      DROP INDEX ${s}.runs_workflow_idx;
      DROP INDEX ${s}.runs_queue_idx;
      DROP INDEX ${s}.runs_closed_idx;
      --  * workflow id: one bytewise-ordered index serves lookups by id (compared COLLATE "C", equal exactly when
      --    equal in any deterministic collation) and prefix ranges; it replaces two.
      DROP INDEX ${s}.runs_workflow_id_prefix_idx;
      DROP INDEX ${s}.runs_workflow_id_idx;
      CREATE INDEX runs_workflow_id_idx ON ${s}.runs (workflow_id COLLATE "C");
      --  * a root's tree: only runs that are not their own root (descendants, and the later runs of a root that
      --    continued as new); a root run, most runs of an application of independent workflows, writes no entry. The
      --    root itself is found by its run id (Sql's FILTER: root_run_id = X AND root_run_id <> run_id, OR run_id = X).
      DROP INDEX ${s}.runs_root_idx;
      CREATE INDEX runs_root_idx ON ${s}.runs (root_run_id, depth, created_at, run_id COLLATE "C") WHERE root_run_id <> run_id;
    `,
  },
  {
    version: 10,
    name: "inbox: the sender's trace context (OpenTelemetry span links)",
    sql: (s) => `
      -- The W3C traceparent of the client span that sent a signal (docs/observability.md), written only while
      -- OpenTelemetry is on and copied into the SignalReceived the run journals. A column of its own rather than a
      -- wrapper around payload: a worker of the previous release ignores the column, where it would hand a wrapped
      -- payload to the workflow. Nullable without a default: adding it rewrites no row.
      ALTER TABLE ${s}.inbox ADD COLUMN traceparent text;
    `,
  },
  {
    version: 11,
    name: 'a barrier over all of a run\'s open children is a flag, not a list',
    sql: (s) => `
      -- A parent waiting on all() of N children stored the N run ids in wait_on_all_closed (and wait_on_failure), and
      -- every close of one of them tested membership with = ANY(...) and rewrote the parent's row, list included:
      -- O(N) per close, so a 100,000-child fan-out did O(N^2) work and rewrote megabytes per batch of closes. When the
      -- list covers every open child of the run (a fan-out, the usual case), the wait stores a flag instead and the
      -- children's closes test their parent link: membership is then "an open child of this run" (Sql.suspendRun
      -- checks the list covers them all, under the parent's lock; only the parent's own commits create its children).
      -- Constant defaults: adding the columns rewrites no row.
      ALTER TABLE ${s}.runs ADD COLUMN wait_all_children boolean NOT NULL DEFAULT false,
                            ADD COLUMN wait_fail_children boolean NOT NULL DEFAULT false;
    `,
  },
];

/**
 * Brings the schema up to date. Safe to call from several processes at once: everything happens in one transaction
 * that first takes a transaction-level advisory lock for this schema, so the second migrator waits, then finds the
 * versions already recorded and does nothing. A failed migration rolls back entirely.
 */
export async function migrate(pool: Pool, schema: string, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  const sql = new Sql(schema);
  const ordered = [...migrations].sort((a, b) => a.version - b.version);
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await sql.begin(client);
    try {
      await sql.lockMigrations(client);
      await sql.createSchemaAndMigrationTable(client);
      const applied = await sql.appliedMigrations(client);
      const ran: number[] = [];
      for (const m of ordered) {
        if (applied.has(m.version)) continue;
        await sql.applyMigration(client, m.version, m.name, m.sql(`"${schema}"`));
        ran.push(m.version);
      }
      await sql.commit(client);
      return ran;
    } catch (err) {
      await sql.rollback(client).catch((e: Error) => (broken = e));
      throw err;
    }
  } finally {
    client.release(broken);
  }
}
