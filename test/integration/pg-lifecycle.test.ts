import { PgJournal } from '../../src/journal/postgres/index.js';
import { describeLifecycle } from '../lifecycle-scenarios.js';
import { freshSchema, testDatabaseUrl } from '../support/postgres.js';

// The lifecycle scenarios of test/unit/lifecycle.test.ts, with a Worker and a Client on PostgreSQL: each test on a
// fresh schema, dropped afterwards.
describeLifecycle('PgJournal', async () => {
  const url = await testDatabaseUrl();
  const { schema, drop } = await freshSchema(url);
  const journal = new PgJournal({ connectionString: url, schema, maxConnections: 6 });
  await journal.migrate();
  return {
    journal,
    cleanup: async () => {
      await journal.close();
      await drop();
    },
  };
});
