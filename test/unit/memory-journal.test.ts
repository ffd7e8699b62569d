import { MemoryJournal } from '../../src/journal/memory.js';
import { describeJournalContract } from '../journal-contract.js';

// The in-memory journal is the reference implementation: it must pass the whole contract on its own.
describeJournalContract('MemoryJournal', async (clock) => {
  const journal = new MemoryJournal(clock);
  await journal.migrate();
  return { journal, cleanup: () => journal.close() };
});
