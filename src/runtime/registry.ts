import type { ActivityContext } from './activities.js';
import type { ActivityDef, WorkflowDef } from './commands.js';
import { UnknownActivityError, UnknownWorkflowError } from './errors.js';

export type ActivityFn = (input: any, ctx: ActivityContext) => unknown;
/** Activities as a list of definitions or as a name -> function map. */
export type ActivitiesInput = readonly ActivityDef[] | Record<string, ActivityFn | ActivityDef>;
export type WorkflowsInput = readonly WorkflowDef[] | Record<string, WorkflowDef>;

/** The workflows and activities one worker (or test environment) can run, by name. */
export class Registry {
  private readonly workflows = new Map<string, WorkflowDef>();
  private readonly activities = new Map<string, ActivityDef>();

  constructor(workflows: WorkflowsInput = [], activities: ActivitiesInput = []) {
    for (const wf of Array.isArray(workflows) ? workflows : Object.values(workflows)) this.addWorkflow(wf as WorkflowDef);
    if (Array.isArray(activities)) {
      for (const a of activities as ActivityDef[]) this.addActivity(a);
    } else {
      for (const [name, a] of Object.entries(activities as Record<string, ActivityFn | ActivityDef>)) {
        this.addActivity(typeof a === 'function' ? { name, fn: a, options: {} } : { ...a, name });
      }
    }
  }

  addWorkflow(wf: WorkflowDef): void {
    const prev = this.workflows.get(wf.name);
    if (prev && prev !== wf) throw new TypeError(`two different workflows are registered as '${wf.name}'`);
    this.workflows.set(wf.name, wf);
  }

  /** Replaces a workflow's code under its name (a test environment's deploy of a new version). */
  replaceWorkflow(wf: WorkflowDef): void {
    this.workflows.set(wf.name, wf);
  }

  addActivity(a: ActivityDef): void {
    this.activities.set(a.name, a);
  }

  workflow(name: string): WorkflowDef {
    const wf = this.workflows.get(name);
    if (!wf) throw new UnknownWorkflowError(name);
    return wf;
  }

  hasWorkflow(name: string): boolean {
    return this.workflows.has(name);
  }

  /** The names of the workflows registered here (a worker claims only runs of these). */
  workflowNames(): string[] {
    return [...this.workflows.keys()];
  }

  hasActivity(name: string): boolean {
    return this.activities.has(name);
  }

  activityNames(): string[] {
    return [...this.activities.keys()];
  }

  activity(name: string): ActivityDef {
    const a = this.activities.get(name);
    if (!a) throw new UnknownActivityError(name);
    return a;
  }

  /** Replaces an activity's implementation (test environments mock activities per test). */
  replaceActivity(name: string, fn: ActivityFn): void {
    const prev = this.activities.get(name);
    this.activities.set(name, { name, fn, options: prev?.options ?? {} });
  }
}
