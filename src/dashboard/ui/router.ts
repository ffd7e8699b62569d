import { useEffect, useState } from 'preact/hooks';

/** Hash routes: `#/runs?status=failed`, `#/run/<id>`, `#/workers`. */
export interface Route {
  page: 'runs' | 'run' | 'workers';
  id?: string;
  params: URLSearchParams;
}

export function parseRoute(hash: string): Route {
  const [path = '', query = ''] = hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query);
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === 'run' && parts[1]) return { page: 'run', id: decodeURIComponent(parts.slice(1).join('/')), params };
  if (parts[0] === 'workers') return { page: 'workers', params };
  return { page: 'runs', params };
}

export const runHref = (id: string) => `#/run/${encodeURIComponent(id)}`;

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** Calls `fn` now and every `ms` while `live`; returns a function that calls it again at once. */
export function usePoll(fn: () => Promise<void> | void, ms: number, live: boolean, deps: unknown[]): () => void {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        await fn();
      } finally {
        if (!stopped && live) timer = setTimeout(run, ms);
      }
    };
    void run();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, live, tick]);
  return () => setTick((t) => t + 1);
}
