// The console's connections to the cluster: Temporal (runs), NATS JetStream (checkpoints, models) and the
// sampler (Generate, ListModels). Each connects on first use and again after a failure, so the console
// starts, and keeps serving what it can, while a service is down; a request that needs a missing service
// gets 503 naming it.
import { Client } from '@temporalio/client';
import type { NatsConnection } from 'nats';
import type { SamplerClient } from '../../proto/gen/dalle/v1/sampler.ts';
import { serviceEnv, type ServiceEnv } from '../../infra/services.ts';
import { connectNats } from '../../security/nats.ts';
import { natsSecurity, temporalSecurity } from '../../security/settings.ts';
import { connectTemporal } from '../../security/temporal.ts';
import { openStores, type CheckpointStore, type ModelStore } from '../../store/index.ts';
import { createSamplerClient } from '../sampler/index.ts';

/** A service the request needs is not reachable. */
export class ServiceUnavailableError extends Error {
  override name = 'ServiceUnavailableError';
  constructor(
    readonly service: 'temporal' | 'nats' | 'sampler',
    readonly address: string,
    readonly reason: string,
  ) {
    super(`${service} at ${address} is unreachable: ${reason}`);
  }
}

export interface Stores {
  checkpoints: CheckpointStore;
  models: ModelStore;
}

export interface ConsoleCluster {
  readonly env: ServiceEnv;
  readonly samplerAddress: string;
  temporal(): Promise<Client>;
  stores(): Promise<Stores>;
  /** One gRPC channel for every request (grpc-js reconnects on its own). */
  sampler(): SamplerClient;
  close(): Promise<void>;
}

/** A value made on first use; a failed attempt is forgotten so that the next use tries again. */
function lazy<T>(make: () => Promise<T>): {
  get(): Promise<T>;
  current(): Promise<T> | undefined;
  reset(): void;
} {
  let p: Promise<T> | undefined;
  return {
    get() {
      if (!p) {
        const made = make();
        p = made;
        made.catch(() => {
          if (p === made) p = undefined;
        });
      }
      return p;
    },
    current: () => p,
    reset: () => void (p = undefined),
  };
}

export function connectCluster(samplerAddress: string, env: ServiceEnv = serviceEnv()): ConsoleCluster {
  const temporal = lazy(async () => {
    // Address, namespace, TLS and API key from the same TEMPORAL_* variables as every other client.
    const sec = temporalSecurity({
      ...process.env,
      TEMPORAL_ADDRESS: env.temporalAddress,
      TEMPORAL_NAMESPACE: env.temporalNamespace,
    });
    const connection = await connectTemporal({ connectTimeout: 3000 }, sec).catch((e: Error) => {
      throw new ServiceUnavailableError('temporal', sec.address, e.message);
    });
    return { connection, client: new Client({ connection, namespace: sec.namespace }) };
  });
  const nats = lazy(async () => {
    // Credentials and TLS from the NATS_* variables, as for every other NATS client.
    const nc: NatsConnection = await connectNats(
      {
        name: 'dalle-console',
        timeout: 3000,
        maxReconnectAttempts: -1,
      },
      natsSecurity({ ...process.env, NATS_URL: env.natsUrl }),
    ).catch((e: Error) => {
      throw new ServiceUnavailableError('nats', env.natsUrl, e.message);
    });
    return { nc, stores: await openStores({ nc }) };
  });
  let sampler: SamplerClient | undefined;
  return {
    env,
    samplerAddress,
    temporal: async () => (await temporal.get()).client,
    stores: async () => (await nats.get()).stores,
    sampler: () => (sampler ??= createSamplerClient(samplerAddress)),
    async close() {
      sampler?.close();
      const t = temporal.current();
      const n = nats.current();
      await t?.then((x) => x.connection.close()).catch(() => undefined);
      await n?.then((x) => x.nc.close()).catch(() => undefined);
      temporal.reset();
      nats.reset();
    },
  };
}
