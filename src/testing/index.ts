/**
 * skein/testing: test your own workflows without a database, a worker or real time.
 *
 *  - `createTestEnv`: run workflows on the in-memory journal with a virtual clock; skip time; mock activities.
 *  - `replayHistory` / `replayHistories`: replay exported (golden) histories against today's code.
 *  - `fuzzWorkflow`: fast-check–driven schedules, outcomes, crashes and close-time ties, with determinism checks
 *    and your own invariants; failures shrink to a readable schedule.
 *  - `Simulation`: the deterministic host the three are built on, for hand-written schedules.
 *
 * Only the fuzzer needs fast-check (an optional peer dependency), and loads it when it runs: without it, everything
 * else here works. The main `skein` entry point never loads it.
 */
export { createTestEnv, TestEnv, writeHistoryFile } from './env.js';
export type { TestEnvOptions, EnvStartOptions } from './env.js';
export {
  replayHistory,
  checkHistory,
  replayHistories,
  checkHistories,
  loadHistory,
  HistoryReplayError,
} from './replay.js';
export type { ReplayOptions, ReplayResult, ReplayOk, ReplayFailure } from './replay.js';
export { fuzzWorkflow, fuzzProperty, FuzzFailure, FuzzCaseError } from './fuzz.js';
export type { FuzzOptions, FuzzResult, FuzzContext, FuzzStats, FuzzCase, FuzzOutcome, ActivityFuzz, ActivityCall, FuzzError, Arbitrary, FuzzVerbosity, FuzzRunnerParameters, FuzzProperty } from './fuzz.js';
export { Simulation } from './simulator.js';
export type { SimulationOptions, SimAction, ActivityOutcome } from './simulator.js';
export type { ExportedHistory, RunRef, RunDescription } from '../client/client.js';
