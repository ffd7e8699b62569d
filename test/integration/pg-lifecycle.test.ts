import { describeLifecycle } from '../lifecycle-scenarios.js';
import { freshPgJournal } from '../support/postgres.js';

// The lifecycle scenarios of test/unit/lifecycle.test.ts, with a Worker and a Client on PostgreSQL: each test on a
// fresh schema, dropped afterwards.
describeLifecycle('PgJournal', () => freshPgJournal({ maxConnections: 6 }));
