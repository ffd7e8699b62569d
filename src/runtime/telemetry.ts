import { EventEmitter } from 'node:events';

/** Telemetry events (SPEC section 10), with the ids a dashboard or tracer needs. */
export interface TelemetryEvents {
  'child.started': { parentRunId: string; childRunId: string; callId: string; workflow: string };
  'child.completed': { parentRunId: string; childRunId: string; callId: string };
  'child.failed': { parentRunId: string; childRunId: string; callId: string; error: string };
  'child.cancelled': { parentRunId: string; childRunId: string; callId: string };
  'cancel.truncated': { runId: string; truncated: string[]; maxChildDepth: number };
  'run.blocked': { runId: string; error: string };
}

export type TelemetryName = keyof TelemetryEvents;

/** A process-wide, typed event emitter for skein's telemetry. Listeners must not throw. */
class Telemetry extends EventEmitter {
  emitEvent<K extends TelemetryName>(name: K, data: TelemetryEvents[K]): void {
    if (this.listenerCount(name)) this.emit(name, data);
  }
  onEvent<K extends TelemetryName>(name: K, listener: (data: TelemetryEvents[K]) => void): () => void {
    this.on(name, listener);
    return () => this.off(name, listener);
  }
}

export const telemetry = new Telemetry();
