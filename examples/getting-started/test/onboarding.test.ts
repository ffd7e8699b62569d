// test/onboarding.test.ts: the workflow under test, with no database and no real time.
import { createTestEnv } from 'skein/testing';
import { describe, expect, it } from 'vitest';
import { activities, approve, onboarding, sendEmail, workflows } from '../src/workflows.js';

describe('onboarding', () => {
  it('mails a welcome, waits for approval, then mails again', async () => {
    const env = createTestEnv({ workflows, activities });
    const sent: string[] = [];
    env.mockActivity(sendEmail.name, async (mail: { text: string }) => {
      sent.push(mail.text);
      return { id: `mail-${sent.length}` };
    });
    const run = await env.start(onboarding, { email: 'ada@example.com' });
    await env.runUntilIdle(); // the welcome mail goes out; the run now waits for the signal
    expect(sent).toEqual(['Welcome!']);

    await env.signal(run.runId, approve, { by: 'grace' });
    expect(await env.result(run)).toEqual({ approvedBy: 'grace', mail: 'mail-2' }); // the 1 s sleep takes no time
    expect(sent).toEqual(['Welcome!', 'Your account was approved by grace']);
  });
});
