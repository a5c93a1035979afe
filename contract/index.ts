// The Temporal boundary in one place: what a client, a workflow and an activity agree on. Workflows import
// it as values (it is deterministic: definitions and types only); clients start workflows through it with
// no workflow or activity code loaded. Names here are recorded in run histories: they never change.
export * from './activities.ts';
export * from './elastic.ts';
export * from './placement.ts';
export * from './quality.ts';
export * from './signals.ts';
export * from './workflows.ts';
