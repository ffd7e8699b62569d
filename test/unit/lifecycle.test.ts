import { MemoryJournal } from '../../src/journal/memory.js';
import { describeLifecycle } from '../lifecycle-scenarios.js';

// The lifecycle scenarios (test/lifecycle-scenarios.ts) on the in-memory journal; pg-lifecycle.test.ts runs the same
// scenarios on PostgreSQL.
describeLifecycle('MemoryJournal', async () => {
  const journal = new MemoryJournal();
  return { journal, cleanup: () => journal.close() };
});
