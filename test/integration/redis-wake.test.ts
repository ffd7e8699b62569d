import { afterEach, describe, expect, it } from 'vitest';
import { RedisWakeBus } from '../../src/journal/wake-bus.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

async function redisReachable(): Promise<boolean> {
  const { Redis } = await import('ioredis');
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  r.on('error', () => {});
  try {
    await r.connect();
    await r.ping();
    return true;
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

const reachable = await redisReachable();
if (!reachable) console.warn(`\n*** Redis not reachable at ${url}: the Redis wake-bus tests are SKIPPED (no Redis server on this machine) ***\n`);

describe.skipIf(!reachable)('Redis wake bus', () => {
  const buses: RedisWakeBus[] = [];
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close()));
  });

  it('carries run ids from one worker to every subscriber', async () => {
    const channel = `skein:test:${process.pid}:${Date.now()}`;
    const a = new RedisWakeBus({ url, channel });
    const b = new RedisWakeBus({ url, channel });
    buses.push(a, b);
    const got: string[][] = [];
    const arrived = new Promise<void>((resolve) =>
      b.subscribe((ids) => {
        got.push(ids);
        resolve();
      }),
    );
    await b.ready();
    await a.publish(['r_1', 'r_2']);
    await arrived;
    expect(got).toEqual([['r_1', 'r_2']]);
  });

  it('does not deliver to other channels (deployments stay apart)', async () => {
    const a = new RedisWakeBus({ url, channel: `skein:test:a:${Date.now()}` });
    const b = new RedisWakeBus({ url, channel: `skein:test:b:${Date.now()}` });
    buses.push(a, b);
    const got: string[][] = [];
    b.subscribe((ids) => got.push(ids));
    await b.ready();
    await a.publish(['r_x']);
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual([]);
  });
});
