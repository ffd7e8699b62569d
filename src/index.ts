/**
 * skein: durable workflows as TypeScript generators.
 *
 * Authoring API, errors, the journal contract and its implementations, the worker and the client.
 */
export {
  workflow,
  child,
  startChild,
  children,
  all,
  allSettled,
  activity,
  defineActivity,
  sleep,
  now,
  random,
  uuid,
  sideEffect,
  waitForSignal,
  defineSignal,
  continueAsNew,
  patched,
  deprecatePatch,
  Command,
} from './runtime/commands.js';
export type {
  WorkflowDef,
  WorkflowOptions,
  ActivityDef,
  ActivityOptions,
  RetryPolicy,
  ChildOptions,
  ChildHandle,
  ParentClosePolicy,
  Settled,
  Shape,
  ResultOf,
  SettledOf,
  InputOf,
  OutputOf,
  SignalDef,
  PayloadOf,
} from './runtime/commands.js';
export type { ActivityContext } from './runtime/activities.js';
export * from './runtime/errors.js';
export type { EventType, EventPayloads, JournalEvent, NewEvent } from './runtime/events.js';
export { RunEngine, DEFAULT_MAX_CHILD_DEPTH } from './runtime/engine.js';
export type { EngineOptions } from './runtime/engine.js';
export { Registry } from './runtime/registry.js';
export { telemetry } from './runtime/telemetry.js';
export type { TelemetryEvents, TelemetryName, ChildTelemetry } from './runtime/telemetry.js';
export { enableOpenTelemetry, disableOpenTelemetry, openTelemetryEnabled } from './telemetry/otel.js';
export type { OpenTelemetryOptions, TracerProviderLike, MeterProviderLike, RunTrace } from './telemetry/otel.js';
export { MAX_PAYLOAD_CHARS } from './runtime/json.js';
export type { Journal, RunRecord, RunStatus, Lease, WaitSpec, Clock, CancelResult, Inbox } from './journal/journal.js';
export { retryRunId } from './journal/journal.js';
export type { RunFilter, ListRunsQuery, DescendantsQuery, RunPage, RunCounts, RunIdentity, WorkerHeartbeat, WorkerInfo, JournalTarget } from './journal/journal.js';
export { MemoryJournal, ManualClock, systemClock } from './journal/memory.js';
export { Worker } from './worker/worker.js';
export type { WorkerOptions, WorkerHealth, WorkerHealthReport } from './worker/worker.js';
export type { WorkerMetrics } from './worker/metrics.js';
export { Client, isRunId } from './client/client.js';
export type { RunRef, StartOptions, RunDescription, ExportedHistory, OpenWait, WaitKind, WaitingFor, ClientOptions } from './client/client.js';
export type { RunSelector, TreeNode, TreePage, RetryResult, BulkOptions, BulkResult } from './client/client.js';
export type { StoredWaits } from './runtime/waits.js';
export { PgJournal, createPgJournal } from './journal/postgres/index.js';
export type { PgJournalOptions } from './journal/postgres/index.js';
export { openJournal, skeinHome, defaultDataDir } from './journal/open.js';
/** skein logs with pino: pass `logger: pino({ level: 'warn' })` (or a pino transport) to Worker, or set SKEIN_LOG_LEVEL. */
export { default as pino } from 'pino';
export type { Logger, LoggerOptions, DestinationStream } from 'pino';
export type { OpenedJournal, OpenJournalOptions } from './journal/open.js';
export { RedisWakeBus } from './journal/wake-bus.js';
export type { WakeBus, RedisWakeBusOptions } from './journal/wake-bus.js';
export { dashboard } from './dashboard/server.js';
export type { DashboardOptions, DashboardServer } from './dashboard/server.js';
