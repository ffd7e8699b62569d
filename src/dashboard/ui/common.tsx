import type { RunStatus } from './api.js';

export function Status({ status }: { status: RunStatus | 'alive' | 'gone' }) {
  return <span class={`status s-${status}`}>{status.replace('_', ' ')}</span>;
}

export function ErrorBox({ error }: { error: string | null }) {
  return error ? <div class="error-box" role="alert">{error}</div> : null;
}
