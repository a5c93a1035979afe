// Published models from the store, and what the sampler serves of them (its ListModels), side by side.
import type { ModelInfo } from '../../proto/gen/dalle/v1/sampler.ts';
import type { ModelStore } from '../../store/index.ts';
import type { ModelsView, ModelView } from './api-types.ts';
import { listModels } from '../sampler/index.ts';
import type { ConsoleCluster } from './cluster.ts';

/** ListModels gets this long before the sampler counts as unreachable. */
const SAMPLER_DEADLINE_MS = 2000;

async function samplerModels(
  cluster: ConsoleCluster,
): Promise<{ models: ModelInfo[]; defaultModel: string } | Error> {
  const client = cluster.sampler();
  return Promise.race([
    listModels(client),
    new Promise<never>((_, reject) =>
      setTimeout(
        () => reject(new Error(`no answer within ${SAMPLER_DEADLINE_MS} ms`)),
        SAMPLER_DEADLINE_MS,
      ).unref(),
    ),
  ]).catch((e: Error) => e);
}

export async function modelsView(cluster: ConsoleCluster, store: ModelStore): Promise<ModelsView> {
  const served = await samplerModels(cluster);
  const names = await store.names();
  const models = await Promise.all(
    names.map(async (name): Promise<ModelView> => {
      const info = served instanceof Error ? undefined : served.models.find((m) => m.name === name);
      return {
        name,
        versions: (await store.versions(name)).map(({ meta, ...v }) => ({
          ...v,
          runId: typeof meta.runId === 'string' ? meta.runId : null,
          preset: typeof meta.preset === 'string' ? meta.preset : null,
        })),
        servingVersion: info?.servingVersion || null,
        loadedVersions: info?.loadedVersions ?? [],
        isDefault: !(served instanceof Error) && served.defaultModel === name,
      };
    }),
  );
  return {
    models,
    sampler: {
      address: cluster.samplerAddress,
      reachable: !(served instanceof Error),
      defaultModel: served instanceof Error ? null : served.defaultModel,
      error: served instanceof Error ? served.message : null,
    },
  };
}
