/**
 * OpenTelemetry traces for skein, and the meter the workers' metrics use (src/worker/metrics.ts; see
 * docs/observability.md). Off by default, and then free: nothing here imports
 * `@opentelemetry/api` (an optional peer dependency) until `enableOpenTelemetry()` is called, which loads it with a
 * dynamic import; until then every hook below is one `null` check.
 *
 * Rules the spans follow:
 *  - an activation's span is ended (so exported) only after its commit succeeded, and describes what that commit
 *    wrote: a replay writes nothing it already journaled, so it emits nothing for it; an activation whose commit
 *    fails (a lost lease, a crash) emits nothing (its span is never ended);
 *  - activity attempts are emitted with the commit that journals the activity's outcome, never before;
 *  - the trace context travels through the journal: `RunStarted.trace` (a W3C traceparent and the root run id) is
 *    written by `client.start` (a span of its own, child of the caller's active span) and, for a child, by the
 *    parent's activation (its span's context), so every activation of a run, on any worker, in any process, after
 *    any crash, is a child span of what started the run;
 *  - what is caused from another trace is linked, not parented: a signal carries its sender's traceparent into the
 *    SignalReceived that journals it (a link on that activation's span), an operator's retry links its own span
 *    (the new run's parent) to the retried run's context.
 */
import type { Attributes, Context, Link, Meter, Span, SpanContext, Tracer } from '@opentelemetry/api';
import type { ActivationOutput, ActivityTask, RunEngine } from '../runtime/engine.js';
import type { EventPayloads, NewEvent, RunTrace } from '../runtime/events.js';
import type { NewRun } from '../runtime/runs.js';

type Api = typeof import('@opentelemetry/api');

export type { RunTrace };

/** Anything with `getTracer` (an OTel TracerProvider); typed loosely so skein's types never need the OTel packages. */
export interface TracerProviderLike {
  getTracer(name: string, version?: string): unknown;
}

/** Anything with `getMeter` (an OTel MeterProvider); typed loosely for the same reason. */
export interface MeterProviderLike {
  getMeter(name: string, version?: string): unknown;
}

export interface OpenTelemetryOptions {
  /** The provider to take the tracer from. Default: the global one (`trace.getTracerProvider()`). */
  tracerProvider?: TracerProviderLike;
  /**
   * The provider to take the meter of the workers' metrics from (src/worker/metrics.ts). Default: the global one
   * (`metrics.getMeterProvider()`, a no-op meter until an SDK registers one).
   */
  meterProvider?: MeterProviderLike;
  /** The `@opentelemetry/api` module, when the caller has it at hand (no dynamic import then). */
  api?: unknown;
}

const TRACER_NAME = 'skein';

let state: { api: Api; tracer: Tracer; meter: OtelMeter } | null = null;
/** Counts enableOpenTelemetry() calls, so a worker's metrics know when the meter they bound to was replaced. */
let generation = 0;

/** The meter workers record their metrics with while OpenTelemetry is on (see otelMeter). */
export interface OtelMeter {
  meter: Meter;
  /** Changes with every enableOpenTelemetry(): instruments made from an earlier meter must be made again. */
  generation: number;
}

/**
 * Turns skein's spans and metrics on for this process (workers and clients alike): loads `@opentelemetry/api` and
 * takes a tracer from `tracerProvider` and a meter from `meterProvider`, or from the global providers (register your
 * SDK's providers first). Resolves false, and changes nothing, when `@opentelemetry/api` is not installed.
 */
export async function enableOpenTelemetry(options: OpenTelemetryOptions = {}): Promise<boolean> {
  let api = options.api as Api | undefined;
  if (!api) {
    try {
      const name = '@opentelemetry/api';
      api = (await import(/* @vite-ignore */ name)) as Api;
    } catch {
      return false;
    }
  }
  const provider = (options.tracerProvider as { getTracer(n: string): Tracer } | undefined) ?? api.trace.getTracerProvider();
  const meters = (options.meterProvider as { getMeter(n: string): Meter } | undefined) ?? api.metrics.getMeterProvider();
  state = { api, tracer: provider.getTracer(TRACER_NAME), meter: { meter: meters.getMeter(TRACER_NAME), generation: ++generation } };
  return true;
}

/** The meter of skein's metrics, or null (OpenTelemetry off): a worker checks it before each recording. */
export function otelMeter(): OtelMeter | null {
  return state && state.meter;
}

/** Turns skein's spans and metrics off again (spans already started are still ended normally). */
export function disableOpenTelemetry(): void {
  state = null;
}

export function openTelemetryEnabled(): boolean {
  return state !== null;
}

// ---- W3C traceparent ------------------------------------------------------------------------------------------------

function traceparentOf(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function spanContextOf(traceparent: string | undefined): SpanContext | null {
  const m = traceparent ? TRACEPARENT.exec(traceparent) : null;
  return m ? { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16), isRemote: true } : null;
}

function contextOf(api: Api, traceparent: string | undefined): Context {
  const sc = spanContextOf(traceparent);
  return sc ? api.trace.setSpanContext(api.ROOT_CONTEXT, sc) : api.ROOT_CONTEXT;
}

// ---- client: start, signal, cancel ------------------------------------------------------------------------------------

/** A client-side span (start, signal, cancel): `end` with what to add, or `fail`. Null when tracing is off. */
export interface ClientSpan {
  /** The trace context to write into the RunStarted of a run this span starts. */
  trace(rootRunId: string): RunTrace;
  /** This span's W3C traceparent (a signal carries it to the activation that journals it: a span link). */
  traceparent(): string;
  end(attributes?: Attributes): void;
  fail(error: unknown): void;
}

/** A span to link a client span to: a traceparent read from the journal (nothing when absent or malformed). */
export interface SpanLinkTo {
  traceparent: string | undefined;
  attributes: Attributes;
}

/** A span of a client call, child of the caller's active span. Null (and free) when tracing is off. */
export function clientSpan(
  name: 'skein.start' | 'skein.signal' | 'skein.cancel' | 'skein.terminate' | 'skein.retry',
  attributes: Attributes,
  linkTo: readonly SpanLinkTo[] = [],
): ClientSpan | null {
  if (!state) return null;
  const { api, tracer } = state;
  const links: Link[] = linkTo.flatMap((l) => {
    const context = spanContextOf(l.traceparent);
    return context ? [{ context, attributes: l.attributes }] : [];
  });
  const span = tracer.startSpan(name, { kind: api.SpanKind.PRODUCER, attributes, links }, api.context.active());
  return {
    trace: (rootRunId) => ({ traceparent: traceparentOf(span.spanContext()), rootRunId }),
    traceparent: () => traceparentOf(span.spanContext()),
    end: (more) => {
      if (more) span.setAttributes(more);
      span.end();
    },
    fail: (error) => {
      failSpan(api, span, error);
      span.end();
    },
  };
}

function failSpan(api: Api, span: Span, error: unknown): void {
  span.setStatus({ code: api.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
  if (error instanceof Error) span.recordException(error);
}

// ---- activations ------------------------------------------------------------------------------------------------------

/** What a run's RunStarted says about its trace and identity (from the engine's history, seq 1). */
function startedOf(engine: RunEngine): EventPayloads['RunStarted'] {
  const first = engine.events[0];
  return first?.type === 'RunStarted' ? first.payload : { workflow: '', workflowId: engine.run.workflowId, input: null, depth: engine.run.depth };
}

function runAttributes(runId: string, s: EventPayloads['RunStarted']): Attributes {
  const root = s.trace?.rootRunId ?? (s.parentRunId ? undefined : runId);
  return {
    'skein.run_id': runId,
    'skein.workflow': s.workflow,
    'skein.workflow_id': s.workflowId,
    ...(root ? { 'skein.root_run_id': root } : {}),
    ...(s.parentRunId ? { 'skein.parent_run_id': s.parentRunId } : {}),
  };
}

/**
 * The span of one activation, started when the activation starts (so the children it creates can carry its context
 * in their RunStarted) and ended only if its commit succeeds (`committed`, `blocked`).
 */
export interface ActivationSpan {
  /** Writes this activation's trace context into the runs it creates (children, the run that continues it). */
  stamp(output: Pick<ActivationOutput, 'children' | 'close'>): void;
  /** The commit of `events` (after seq `afterSeq`) succeeded: ends the span, and emits the inline children's. */
  committed(events: readonly NewEvent[], afterSeq: number, output: ActivationOutput): void;
  /** The activation blocked the run (its RunBlocked was committed). */
  blocked(error: unknown, afterSeq: number): void;
}

/** The activation span in progress for each engine (so the runs an activation creates mid-way can be stamped). */
const current = new WeakMap<RunEngine, (r: NewRun) => void>();

/** Stamps runs `engine`'s current activation creates with its trace context (nothing when tracing is off). */
export function stampRuns(engine: RunEngine, runs: readonly NewRun[]): void {
  if (!state) return;
  const stamp = current.get(engine);
  if (stamp) runs.forEach(stamp);
}

/** Starts the span of an activation of `engine`'s run. Null (and free) when tracing is off. */
export function activationSpan(engine: RunEngine): ActivationSpan | null {
  if (!state) return null;
  const { api, tracer } = state;
  const runId = engine.run.runId;
  const started = startedOf(engine);
  const attributes = runAttributes(runId, started);
  const startedAt = Date.now();
  const span = tracer.startSpan(`skein.activation ${started.workflow}`, { kind: api.SpanKind.INTERNAL, attributes, startTime: startedAt }, contextOf(api, started.trace?.traceparent));
  const trace: RunTrace = { traceparent: traceparentOf(span.spanContext()), rootRunId: (attributes['skein.root_run_id'] as string | undefined) ?? runId };
  const stampRun = (r: NewRun) => {
    if (!r.trace) r.trace = trace;
  };
  current.set(engine, stampRun);
  return {
    stamp(output) {
      output.children.forEach(stampRun);
      if (output.close?.status === 'continued') stampRun(output.close.next);
    },
    committed(events, afterSeq, output) {
      if (!events.length) return; // an activation that journaled nothing has nothing to show (and is never unique)
      const end = Date.now();
      span.setAttributes({
        'skein.seq.first': afterSeq + 1,
        'skein.seq.last': afterSeq + events.length,
        'skein.events': events.length,
        'skein.status': output.close ? output.close.status : 'open',
        'skein.first_activation': afterSeq <= 1,
      });
      describeEvents(span, events);
      if (output.close && output.close.status !== 'completed' && output.close.status !== 'continued') {
        span.setStatus({ code: api.SpanStatusCode.ERROR, message: `run ${output.close.status}` });
      }
      const ctx = api.trace.setSpan(api.ROOT_CONTEXT, span);
      emitActivities(runId, events, attributes, ctx);
      // Children that ran to their close inside this activation were committed here: their one activation is here too.
      for (const c of output.children) {
        if (!c.completed) continue;
        const childAttrs: Attributes = {
          'skein.run_id': c.runId,
          'skein.workflow': c.workflow,
          'skein.workflow_id': c.workflowId,
          'skein.root_run_id': trace.rootRunId,
          'skein.parent_run_id': runId,
          'skein.seq.first': 1,
          'skein.seq.last': 1 + c.completed.events.length,
          'skein.events': 1 + c.completed.events.length,
          'skein.status': c.completed.status,
          'skein.first_activation': true,
          'skein.inline': true,
        };
        const cs = tracer.startSpan(`skein.activation ${c.workflow}`, { kind: api.SpanKind.INTERNAL, attributes: childAttrs, startTime: startedAt }, ctx);
        if (c.completed.status !== 'completed') cs.setStatus({ code: api.SpanStatusCode.ERROR, message: `run ${c.completed.status}` });
        emitActivities(c.runId, c.completed.events, { ...childAttrs }, api.trace.setSpan(api.ROOT_CONTEXT, cs));
        cs.end(end);
      }
      span.end(end);
    },
    blocked(error, afterSeq) {
      span.setAttributes({ 'skein.seq.first': afterSeq + 1, 'skein.seq.last': afterSeq + 1, 'skein.events': 1, 'skein.status': 'blocked' });
      failSpan(api, span, error);
      span.end();
    },
  };
}

/** Span events for what an activation journaled: children, signals, cancel requests, activity outcomes. */
function describeEvents(span: Span, events: readonly NewEvent[]): void {
  for (const e of events) {
    switch (e.type) {
      case 'ChildScheduled':
        span.addEvent('skein.child.scheduled', {
          'skein.child_run_id': e.payload.childRunId,
          'skein.child_workflow': e.payload.workflow,
          'skein.child_workflow_id': e.payload.childWorkflowId,
          'skein.attempt': e.payload.attempt ?? 1,
        });
        break;
      case 'ChildCompleted':
      case 'ChildFailed':
      case 'ChildCancelled':
      case 'ChildTerminated':
      case 'ChildTimedOut':
        span.addEvent('skein.child.closed', { 'skein.child_run_id': e.payload.childRunId, 'skein.outcome': e.type });
        break;
      case 'SignalReceived': {
        span.addEvent('skein.signal.received', { 'skein.signal.name': e.payload.name, 'skein.signal_id': e.payload.signalId });
        // A link to the sender's `skein.signal` span (it carried its traceparent with the signal): often another trace.
        const sender = spanContextOf(e.payload.traceparent);
        if (sender) span.addLink({ context: sender, attributes: { 'skein.link': 'signal', 'skein.signal.name': e.payload.name, 'skein.signal_id': e.payload.signalId } });
        break;
      }
      case 'CancelRequested':
        span.addEvent('skein.cancel.requested', { 'skein.cancel.reason': e.payload.reason });
        break;
      case 'ChildSignalled':
        span.addEvent('skein.child.signalled', { 'skein.child_run_id': e.payload.childRunId, 'skein.signal.name': e.payload.name });
        break;
      default:
        break;
    }
  }
}

// ---- activity attempts ------------------------------------------------------------------------------------------------

interface AttemptLog {
  name: string;
  start: number;
  /** End times of the failed attempts, and the delay before the next. */
  retries: { at: number; delayMs: number; error: unknown }[];
  end?: number;
}

/** Activities run in this process, by `<runId> <path>`, until the commit that journals their outcome emits them. */
const attempts = new Map<string, AttemptLog>();

/** What an activity execution reports while it runs. Null (and free) when tracing is off. */
export interface ActivityRecorder {
  retry(r: { attempt: number; error: unknown; delayMs: number }): void;
  done(): void;
}

export function recordActivity(runId: string, task: ActivityTask): ActivityRecorder | null {
  if (!state) return null;
  const log: AttemptLog = { name: task.name, start: Date.now(), retries: [] };
  attempts.set(`${runId} ${task.path}`, log);
  return {
    retry: (r) => log.retries.push({ at: Date.now(), delayMs: r.delayMs, error: r.error }),
    done: () => {
      log.end = Date.now();
    },
  };
}

/** One span per attempt of each activity whose outcome `events` journal (and that ran in this process). */
function emitActivities(runId: string, events: readonly NewEvent[], runAttrs: Attributes, parent: Context): void {
  if (!state) return;
  const { api, tracer } = state;
  for (const e of events) {
    if (e.type !== 'ActivityCompleted' && e.type !== 'ActivityFailed') continue;
    const key = `${runId} ${e.payload.path}`;
    const log = attempts.get(key);
    if (!log) continue;
    attempts.delete(key);
    const end = log.end ?? Date.now();
    let start = log.start;
    const total = Math.max(e.payload.attempts, log.retries.length + 1);
    for (let i = 0; i < total; i++) {
      const r = log.retries[i];
      const last = i === total - 1;
      const attrs: Attributes = { ...runAttrs, 'skein.activity': log.name, 'skein.activity.path': e.payload.path, 'skein.activity.attempt': i + 1 };
      const s = tracer.startSpan(`skein.activity ${log.name}`, { kind: api.SpanKind.INTERNAL, attributes: attrs, startTime: start }, parent);
      if (!last && r) {
        failSpan(api, s, r.error);
        s.end(r.at);
        start = r.at + r.delayMs;
      } else {
        if (e.type === 'ActivityFailed') s.setStatus({ code: api.SpanStatusCode.ERROR, message: e.payload.error.message });
        s.end(Math.max(end, start));
      }
    }
  }
}

/** Forgets the activity records of a run this process no longer holds (they would never be emitted). */
export function forgetActivities(runId: string): void {
  if (!state || !attempts.size) return;
  for (const k of attempts.keys()) if (k.startsWith(`${runId} `)) attempts.delete(k);
}
