import { createHash } from 'node:crypto';
import { PayloadError } from './errors.js';

/**
 * Largest JSON payload (input, result, activity value, signal payload, side-effect value) a journal accepts, in
 * UTF-16 code units of its JSON text: 2,097,152 (2 MiB). docs/semantics.md states the same number.
 */
export const MAX_PAYLOAD_CHARS = 2_097_152;

/**
 * Turns a value into the JSON the journal will hold, rejecting what cannot survive the trip. Live execution hands the
 * workflow the round-tripped value, so live and replayed runs see exactly the same data (a Date becomes a string in
 * both).
 */
export function toJson(value: unknown, what: string): { json: string; value: unknown } {
  // Primitives (most inputs and results) need no replacer and no round trip: their JSON value is themselves.
  switch (typeof value) {
    case 'number':
      if (!Number.isFinite(value)) throw new PayloadError(what, `not JSON-serializable (non-finite number ${value})`);
      return { json: JSON.stringify(value), value: value === 0 ? 0 : value }; // -0 becomes 0, as JSON makes it
    case 'boolean':
      return { json: value ? 'true' : 'false', value };
    case 'string': {
      const json = JSON.stringify(value);
      if (json.length > MAX_PAYLOAD_CHARS) throw new PayloadError(what, `its JSON is ${json.length} characters, over the ${MAX_PAYLOAD_CHARS} limit`);
      return { json, value };
    }
    case 'undefined':
      return { json: 'null', value: null };
    case 'object':
      if (value === null) return { json: 'null', value: null };
  }
  const json = toJsonText(value, what);
  return { json, value: JSON.parse(json) };
}

/** The JSON text of a value, validated like toJson, without building the round-tripped value. */
export function toJsonText(value: unknown, what: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value, rejectUnsafe);
  } catch (err) {
    throw new PayloadError(what, `not JSON-serializable (${(err as Error).message})`);
  }
  if (json === undefined) {
    if (value === undefined) return 'null';
    throw new PayloadError(what, `a ${typeof value} is not JSON-serializable`);
  }
  if (json.length > MAX_PAYLOAD_CHARS) {
    throw new PayloadError(what, `its JSON is ${json.length} characters, over the ${MAX_PAYLOAD_CHARS} limit`);
  }
  return json;
}

function rejectUnsafe(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') throw new Error('BigInt value');
  if (typeof v === 'function') throw new Error('function value');
  if (typeof v === 'symbol') throw new Error('symbol value');
  if (typeof v === 'number' && !Number.isFinite(v)) throw new Error(`non-finite number ${v}`);
  return v;
}

/** Validates and round-trips a payload; returns the journaled value. */
export function journalValue<T>(value: T, what: string): T {
  return toJson(value, what).value as T;
}

/**
 * A cheap, stable 53-bit hash of a payload's JSON text, as hex. Used to match a replayed command's input against the
 * journaled one: it must be fast (it runs once per command on every replay), not cryptographic.
 */
export function hashText(str: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < str.length; i++) {
    const ch = str.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  // Two 32-bit halves: Number#toString(16) on a 53-bit value is an order of magnitude slower than on 32-bit ones.
  return ((2097151 & h2) >>> 0).toString(16) + (h1 >>> 0).toString(16).padStart(8, '0');
}

/** A collision-resistant id derived from its parts (child run ids, call ids): the same parts give the same id. */
export function deriveId(prefix: string, ...parts: string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p.length + ':' + p + ';');
  return prefix + h.digest('base64url').slice(0, 22);
}
