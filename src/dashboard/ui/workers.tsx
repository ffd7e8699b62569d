import { useState } from 'preact/hooks';
import { get, type WorkerInfo } from './api.js';
import { ErrorBox, Status } from './common.js';
import { ago, time } from './format.js';
import { usePoll } from './router.js';

export function WorkersPage() {
  const [workers, setWorkers] = useState<WorkerInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  usePoll(
    async () => {
      try {
        setWorkers(await get<WorkerInfo[]>('workers'));
        setError(null);
      } catch (err) {
        setError((err as Error).message);
      }
    },
    3000,
    true,
    [],
  );
  const alive = workers?.filter((w) => w.status === 'alive').length ?? 0;
  return (
    <section>
      <h1>Workers</h1>
      <p>
        {workers ? `${alive} alive, ${workers.length - alive} gone` : 'loading…'} (workers that heartbeated into this journal in the last 7 days)
      </p>
      <ErrorBox error={error} />
      <table class="workers">
        <thead>
          <tr>
            <th>status</th>
            <th>worker id</th>
            <th>host / pid</th>
            <th>queues</th>
            <th>workflows</th>
            <th>activities</th>
            <th>load</th>
            <th>started</th>
            <th>last seen</th>
          </tr>
        </thead>
        <tbody>
          {workers?.map((w) => (
            <tr key={w.workerId} data-worker-id={w.workerId}>
              <td>
                <Status status={w.status} />
              </td>
              <td class="mono">{w.workerId}</td>
              <td>
                {w.host} / {w.pid}
              </td>
              <td>{w.queues.join(', ')}</td>
              <td class="names">{w.workflows.join(', ') || '—'}</td>
              <td class="names">{w.activities.join(', ') || '—'}</td>
              <td>
                <div class="load" title={`${w.activeRuns} of ${w.concurrency} runs`}>
                  <div style={{ width: `${Math.min(100, (100 * w.activeRuns) / Math.max(1, w.concurrency))}%` }} />
                </div>
                {w.activeRuns}/{w.concurrency}
              </td>
              <td>{time(w.startedAt)}</td>
              <td>{w.stoppedAt !== null ? `stopped ${ago(w.stoppedAt)}` : ago(w.lastSeenAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
