// The sampling service's public surface: the server, its client helpers, and the seam to the model code.
export * from './engine.ts';
export * from './errors.ts';
export {
  SamplerService,
  serverChannelOptions,
  SERVICE_NAME,
  DEFAULT_ADDRESS,
  type SamplerServiceOptions,
  type RequestOutcome,
  type RequestStart,
  type GenerateSummary,
} from './server.ts';
export {
  createSamplerClient,
  clientChannelOptions,
  generate,
  listModels,
  type GenerateResult,
  type GenerateCallOptions,
} from './client.ts';
export { Scheduler, type SchedulerOptions, type SchedulerObserver, type StepEvent } from './scheduler.ts';
export { ModelRegistry, type ModelLease } from './model-registry.ts';
export { validateRequest, imageSeed, MAX_IMAGES, type ValidRequest } from './request.ts';
export { encodePng, decodePng, gridPng } from './png.ts';
