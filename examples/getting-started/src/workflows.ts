// src/workflows.ts: what the worker runs. A worker module exports `workflows` and `activities`.
import { activity, defineActivity, defineSignal, sleep, waitForSignal, workflow } from 'skein';

/** An activity: any async function. Its result is journaled, so a replay never calls it again. */
export const sendEmail = defineActivity(
  'sendEmail',
  async (mail: { to: string; text: string }, ctx) => {
    ctx.log.info({ to: mail.to }, 'sending mail'); // pino, bound to the run (runId, activityId, attempt)
    // A real mailer gets the idempotency key and the abort signal:
    //   await mailer.send(mail, { idempotencyKey: ctx.activityId, signal: ctx.signal });
    return { id: `mail-${ctx.activityId}` };
  },
  { timeoutMs: 10_000, retry: { maximumAttempts: 5 } },
);

/** A signal: its name and its payload's type, shared by the workflow and the code that sends it. */
export const approve = defineSignal<{ by: string }>('approve');

/** A workflow: a generator. Each `yield*` is journaled; a crashed worker's successor replays up to where it was. */
export const onboarding = workflow('onboarding', function* (user: { email: string }) {
  yield* activity(sendEmail, { to: user.email, text: 'Welcome!' });
  const { by } = yield* waitForSignal(approve, { timeout: 7 * 24 * 60 * 60 * 1000 }); // a week, durably
  yield* sleep(1000);
  const mail = yield* activity(sendEmail, { to: user.email, text: `Your account was approved by ${by}` });
  return { approvedBy: by, mail: mail.id };
});

export const workflows = [onboarding];
export const activities = [sendEmail];
