import type { Clock } from '../journal.js';
import { PgJournal } from './pg-journal.js';

export { PgJournal, type PgJournalOptions } from './pg-journal.js';
export { MIGRATIONS, migrate, type Migration } from './migrations.js';
export { wakeChannel } from './sql.js';

/**
 * Opens the Postgres journal and brings its schema up to date (migrations run on start; safe when several processes
 * start at once).
 */
export async function createPgJournal(options: { connectionString: string; schema?: string; clock?: Clock; maxConnections?: number }): Promise<PgJournal> {
  const journal = new PgJournal(options);
  try {
    await journal.migrate();
  } catch (err) {
    await journal.close();
    throw err;
  }
  return journal;
}
