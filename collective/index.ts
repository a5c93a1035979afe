// The collective's one public surface: process groups over NATS, a deterministic all-reduce, PowerSGD with
// error feedback, and the errors they raise.
//
//   const group = await joinGroup({ nc, runId, groupId, rank, worldSize, timeoutMs });   // barrier
//   const psgd = new PowerSgd(trainer.paramSpecs(), spec.powersgd, { rank, worldSize, seed });
//   psgd.loadState(bytes);                                   // or undefined for a fresh start
//   const r = await psgd.reduce(group, grads, step);         // r.grads, r.skipped, r.stats
//   const bytes = psgd.saveState();
//   await group.close();
export { joinGroup, soloGroup, zeroCounters } from './group.ts';
export type { AllReduceOptions, DroppedChunk, Group, GroupCounters, JoinOptions } from './group.ts';
export type { Mode, Wire } from './all-reduce.ts';
export { PowerSgd } from './powersgd.ts';
export type {
  LoadStateOptions,
  PowerSgdCounters,
  PowerSgdOptions,
  ReduceResult,
  ReduceStats,
} from './powersgd.ts';
export { reshardPowerSgdState } from './powersgd-reshard.ts';
export type { PieceMap, ReshardTarget, SavedPowerSgdState } from './powersgd-reshard.ts';
export { planCompression, resblockOf } from './powersgd-plan.ts';
export type { CompressionPlan, ParamPlan } from './powersgd-plan.ts';
export { orthonormalize } from './householder.ts';
export { decodeFp16, encodeFp16, FP16_MAX } from './fp16.ts';
export {
  ChunkLostError,
  CollectiveArgumentError,
  CollectiveMismatchError,
  DuplicateRankError,
  GradientShapeError,
  GroupClosedError,
  PeerLostError,
  PowerSgdStateError,
} from './errors.ts';
