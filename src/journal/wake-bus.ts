import { Redis, type RedisOptions } from 'ioredis';
import type { WakeListener } from './journal.js';

/**
 * A wake bus carries "this run became due" between workers faster than a poll. It is only ever a hint: a lost
 * message costs latency (the poll finds the run), never correctness, because the journal decides who may run what.
 */
export interface WakeBus {
  publish(runIds: string[]): Promise<void>;
  subscribe(listener: WakeListener): () => void;
  close(): Promise<void>;
}

export interface RedisWakeBusOptions {
  url?: string;
  /** Channel name; workers of one deployment share it. Default 'skein:wake'. */
  channel?: string;
  redis?: RedisOptions;
}

/**
 * Redis pub/sub wake bus (ioredis). One connection publishes, one subscribes (a subscribed Redis connection cannot
 * publish). ioredis reconnects with backoff and re-subscribes on its own after a drop.
 */
export class RedisWakeBus implements WakeBus {
  private readonly pub: Redis;
  private sub: Redis | null = null;
  private readonly channel: string;
  private readonly listeners = new Set<WakeListener>();
  private readonly url: string;
  private readonly options: RedisOptions;

  constructor(options: RedisWakeBusOptions = {}) {
    this.url = options.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    this.channel = options.channel ?? 'skein:wake';
    this.options = { maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: false, ...options.redis };
    this.pub = new Redis(this.url, this.options);
    this.pub.on('error', () => {}); // reconnects on its own; a wake-up lost meanwhile is found by the poll
  }

  async publish(runIds: string[]): Promise<void> {
    if (!runIds.length) return;
    try {
      await this.pub.publish(this.channel, runIds.join(','));
    } catch {
      // A hint only: the journal already made the run due.
    }
  }

  subscribe(listener: WakeListener): () => void {
    this.listeners.add(listener);
    if (!this.sub) {
      this.sub = new Redis(this.url, this.options);
      this.sub.on('error', () => {});
      this.sub.on('message', (_channel: string, message: string) => {
        const ids = message.split(',').filter(Boolean);
        for (const l of this.listeners) l(ids);
      });
      void this.sub.subscribe(this.channel).catch(() => {});
    }
    return () => this.listeners.delete(listener);
  }

  /** Resolves once the subscription is live (tests use it to avoid racing the first publish). */
  async ready(): Promise<void> {
    if (!this.sub) return;
    if (this.sub.status !== 'ready') await new Promise<void>((r) => this.sub!.once('ready', () => r()));
    await this.sub.subscribe(this.channel);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    await Promise.allSettled([this.pub.quit(), this.sub?.quit()]);
  }
}
