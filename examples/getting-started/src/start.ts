// src/start.ts: a client, in another process. It finds the same journal as the worker (DATABASE_URL, or the
// project's embedded server), starts a run, signals it and waits for its result.
import { Client, openJournal } from 'skein';
import { approve, onboarding, workflows } from './workflows.js';

const opened = await openJournal();
console.log(`journal: ${opened.describe()}`);
const client = new Client(opened.journal, { workflows });

const run = await client.start(onboarding, { email: 'ada@example.com' }, { workflowId: `onboarding-${Date.now()}` });
console.log(`started ${run.workflowId}`);
await client.signal(run.runId, approve, { by: 'grace' }); // typed: { by: string }
console.log('result:', JSON.stringify(await client.result(run, { timeoutMs: 30_000 })));
await opened.close();
