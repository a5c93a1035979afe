// Workflow types registered on task queue `dalle-train` (DESIGN.md): trainDalle, trainStage.
export { trainDalle } from './train-dalle.ts';
export { trainStage } from './train-stage.ts';
