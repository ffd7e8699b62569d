/**
 * Checks shared by the OpenTelemetry tests: the spans of a run tree form one connected trace, each journaled step is
 * described by exactly one activation span, children hang under the parent activation that scheduled them.
 */
import { expect } from 'vitest';
import type { SpanRecord } from '../integration/fixtures/otel-workflows.js';

export interface RunJournal {
  runId: string;
  parentRunId: string | null;
  lastSeq: number;
}

/**
 * `mayBeLost(runId, seq)`: a journaled step whose activation span may be missing, because the process that committed
 * it was SIGKILLed between the commit and the end of the span (the span can only end after the commit succeeds).
 */
export function checkTrace(spans: SpanRecord[], runs: RunJournal[], rootRunId: string, mayBeLost: (runId: string, seq: number) => boolean = () => false): void {
  // One trace.
  expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);
  // Connected: every span but the start span has its parent among the spans.
  const ids = new Set(spans.map((s) => s.spanId));
  expect(ids.size).toBe(spans.length);
  const starts = spans.filter((s) => s.name === 'skein.start');
  expect(starts).toHaveLength(1);
  expect(starts[0]!.attributes['skein.run_id']).toBe(rootRunId);
  const orphans = spans.filter((s) => s.name !== 'skein.start' && !(s.parentSpanId && ids.has(s.parentSpanId)));
  expect(orphans.map((s) => `${s.name} ${JSON.stringify(s.attributes)}`)).toEqual([]);

  const activations = spans.filter((s) => s.name.startsWith('skein.activation '));
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  for (const run of runs) {
    const mine = activations.filter((s) => s.attributes['skein.run_id'] === run.runId);
    // Each journaled seq (after RunStarted, or from it for a child run inline) is covered by exactly one span.
    const covered = new Map<number, number>();
    for (const s of mine) {
      for (let q = s.attributes['skein.seq.first'] as number; q <= (s.attributes['skein.seq.last'] as number); q++) covered.set(q, (covered.get(q) ?? 0) + 1);
      expect(s.attributes['skein.root_run_id']).toBe(rootRunId);
      if (run.parentRunId) expect(s.attributes['skein.parent_run_id']).toBe(run.parentRunId);
    }
    const inline = mine.some((s) => s.attributes['skein.inline'] === true);
    const expected = Array.from({ length: run.lastSeq - (inline ? 0 : 1) }, (_, i) => i + (inline ? 1 : 2)).filter(
      (q) => covered.has(q) || !mayBeLost(run.runId, q),
    );
    expect({ run: run.runId, seqs: [...covered.keys()].sort((a, b) => a - b) }).toEqual({ run: run.runId, seqs: expected });
    expect({ run: run.runId, dup: [...covered].filter(([, n]) => n > 1) }).toEqual({ run: run.runId, dup: [] });
    // A child's activations hang under the parent activation that scheduled it.
    if (run.parentRunId) {
      for (const s of mine) {
        const parent = byId.get(s.parentSpanId!)!;
        expect(parent.attributes['skein.run_id']).toBe(run.parentRunId);
        if (!inline) expect(parent.events.some((e) => e.name === 'skein.child.scheduled' && e.attributes['skein.child_run_id'] === run.runId)).toBe(true);
      }
    } else {
      for (const s of mine) expect(byId.get(s.parentSpanId!)!.name).toBe('skein.start');
    }
  }
  // Activity attempts: otelFlaky ran twice per execution (first attempt failed), under an activation of its run.
  const flaky = spans.filter((s) => s.name === 'skein.activity otelFlaky');
  expect(flaky.length).toBeGreaterThanOrEqual(2);
  expect(flaky.filter((s) => s.attributes['skein.activity.attempt'] === 1).every((s) => s.status === 2)).toBe(true);
  expect(flaky.some((s) => s.attributes['skein.activity.attempt'] === 2 && s.status !== 2)).toBe(true);
  // An activity journaled once is emitted once per attempt: no two spans for the same (run, path, attempt).
  const acts = spans.filter((s) => s.name.startsWith('skein.activity '));
  const keys = acts.map((s) => `${s.attributes['skein.run_id']} ${s.attributes['skein.activity.path']} ${s.attributes['skein.activity.attempt']}`);
  expect(new Set(keys).size).toBe(keys.length);
}
