// `node dist/infra/docker/grpc-health.js [host:port] [service]`: asks a gRPC server's standard
// health service (grpc.health.v1.Health/Check) and exits 0 only when it answers SERVING. The compose file's
// sampler healthcheck runs it inside the image (Kubernetes has gRPC probes built in and does not need it,
// unless the sampler serves TLS: its probes cannot do TLS, so a secured deployment execs this instead).
// TLS and client certificate come from the same DALLE_SAMPLER_* variables as every sampler client.
// Exit codes: 0 SERVING, 1 any other status or no answer within the timeout, 2 bad arguments.
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { samplerClientCredentials } from '../../security/grpc.ts';

/** Below the compose healthcheck's 8 s timeout; 3 s was exceeded by a healthy sampler at load 38. */
export const HEALTH_TIMEOUT_MS = 6_000;

export interface HealthAnswer {
  status: string;
  /** Set when the server did not answer (connection refused, deadline, unknown service). */
  error?: string;
}

/** One Health/Check call to `address` for `service` ('' = the whole server). Never throws. */
export function checkHealth(
  address: string,
  service = '',
  timeoutMs = HEALTH_TIMEOUT_MS,
): Promise<HealthAnswer> {
  // grpc-health-check ships the service definition with its (de)serializers; enums decode as names.
  const Health = grpc.makeGenericClientConstructor(healthService, 'Health');
  const { credentials, options } = samplerClientCredentials(); // health needs no token
  const client = new Health(address, credentials, options) as unknown as grpc.Client & {
    check(
      req: { service: string },
      opts: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res?: { status: string }) => void,
    ): void;
  };
  return new Promise((resolve) => {
    client.check({ service }, { deadline: Date.now() + timeoutMs }, (err, res) => {
      client.close();
      resolve(
        err
          ? { status: 'UNKNOWN', error: `${grpc.status[err.code] ?? err.code}: ${err.details}` }
          : { status: res?.status ?? 'UNKNOWN' },
      );
    });
  });
}

async function main(argv: string[]): Promise<number> {
  const [
    address = process.env.DALLE_SAMPLER_ADDRESS?.replace(/^0\.0\.0\.0:/, '127.0.0.1:') || '127.0.0.1:50051',
    service = '',
  ] = argv;
  if (!/^[^\s:]+:\d{1,5}$/.test(address)) {
    process.stderr.write(`grpc-health: '${address}' is not host:port\n`);
    return 2;
  }
  const a = await checkHealth(address, service);
  process.stdout.write(`${address} ${service || '(server)'}: ${a.status}${a.error ? ` (${a.error})` : ''}\n`);
  return a.status === 'SERVING' ? 0 : 1;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  process.exitCode = await main(process.argv.slice(2));
}
