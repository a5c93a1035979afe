// Workflow types registered on task queue `dalle-train`: their names and signatures are the contract's.
import type { DalleWorkflows } from '../contract/index.ts';
import { trainDalle } from './train-dalle.ts';
import { trainStage } from './train-stage.ts';

export { trainDalle, trainStage };

/** Fails to compile unless the exports above are the contract's workflows under its names (a type
 *  parameter's default must satisfy its constraint). */
export type ImplementsContract<
  T extends DalleWorkflows = { trainDalle: typeof trainDalle; trainStage: typeof trainStage },
> = T;
