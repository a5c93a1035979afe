// Mutual-TLS front for a service that cannot terminate TLS itself: the Temporal CLI's dev server has no
// TLS options, so a secured local stack runs it on a loopback port and puts this in front of it. Every
// client must present a certificate signed by our CA; the bytes are then piped, unchanged, to the
// service (gRPC over HTTP/2: ALPN `h2` is negotiated here, the service speaks cleartext HTTP/2 behind it).
// A production Temporal terminates mutual TLS itself (see docs/operations.md).
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { createServer, type Server } from 'node:tls';

export interface TlsProxyOptions {
  listen: { host: string; port: number };
  target: { host: string; port: number };
  certFile: string;
  keyFile: string;
  /** Clients must present a certificate signed by this CA. */
  clientCaFile: string;
  log?: (msg: string) => void;
}

export function startTlsProxy(o: TlsProxyOptions): Promise<Server> {
  const log = o.log ?? (() => undefined);
  const server = createServer(
    {
      cert: readFileSync(o.certFile),
      key: readFileSync(o.keyFile),
      ca: readFileSync(o.clientCaFile),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    },
    (client) => {
      const upstream = netConnect(o.target.port, o.target.host);
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
      client.pipe(upstream).pipe(client);
    },
  );
  // A refused handshake (no or foreign certificate) is the point of this proxy: log it, keep serving.
  server.on('tlsClientError', (e) => log(`refused a client: ${e.message}`));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listen.port, o.listen.host, () => resolve(server));
  });
}
