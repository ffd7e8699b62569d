import { createPgJournal, type PgJournal } from './postgres/index.js';

export interface OpenedJournal {
  journal: PgJournal;
  /** The connection URL in use (embedded or given). */
  url: string;
  embedded: boolean;
  /** Closes the journal and, for the embedded server, stops it. */
  close(): Promise<void>;
}

export interface OpenJournalOptions {
  /** A PostgreSQL URL. Default: `DATABASE_URL`, else an embedded server under `dataDir`. */
  databaseUrl?: string;
  schema?: string;
  /** Where the embedded server keeps its data. Default `./.skein/pg`. */
  dataDir?: string;
  maxConnections?: number;
}

/**
 * The runtime's default journal: the Postgres journal on `DATABASE_URL`, or, with no database configured, on a real
 * PostgreSQL that needs no installation (the npm-shipped embedded server, data under `./.skein/`), reused by the next
 * start.
 */
export async function openJournal(options: OpenJournalOptions = {}): Promise<OpenedJournal> {
  const given = options.databaseUrl ?? process.env.DATABASE_URL;
  if (given) {
    const journal = await createPgJournal({ connectionString: given, ...pick(options) });
    return { journal, url: given, embedded: false, close: () => journal.close() };
  }
  const { startEmbeddedPostgres } = await import('./embedded.js');
  const server = await startEmbeddedPostgres({ dataDir: options.dataDir ?? './.skein/pg' });
  try {
    const journal = await createPgJournal({ connectionString: server.url, ...pick(options) });
    return {
      journal,
      url: server.url,
      embedded: true,
      close: async () => {
        await journal.close();
        await server.stop();
      },
    };
  } catch (err) {
    await server.stop();
    throw err;
  }
}

function pick(o: OpenJournalOptions): { schema?: string; maxConnections?: number } {
  const out: { schema?: string; maxConnections?: number } = {};
  if (o.schema) out.schema = o.schema;
  if (o.maxConnections) out.maxConnections = o.maxConnections;
  return out;
}
