// The cluster manifests (infra/compose, infra/k8s, infra/docker) parsed and checked against the code they
// deploy: ports, addresses, task queue, bucket names, commands and environment variable names come from
// the code's own exports where it has them, so a rename in the code fails here, not in a cluster.
// No Docker engine or Kubernetes here: every check is on the files and on the code's real behaviour.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { loadSpec, resolveSpec } from '../config/index.ts';
import { serviceEnv } from '../infra/services.ts';
import { checkHealth } from '../infra/docker/grpc-health.ts';
import { DEFAULT_ADDRESS, SamplerService } from '../services/sampler/server.ts';
import { TASK_QUEUE } from '../contract/index.ts';
import { BUCKETS, openStores } from '../store/index.ts';
import { exportConfigFromEnv } from '../telemetry/env.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const rel = (...p: string[]) => join(root, ...p);
const read = (...p: string[]) => readFileSync(rel(...p), 'utf8');

type Obj = Record<string, any>;

const portOf = (address: string) =>
  Number(
    address
      .replace(/^[a-z]+:\/\//, '')
      .split(':')
      .at(-1),
  );
const hostOf = (address: string) => address.replace(/^[a-z]+:\/\//, '').split(':')[0]!;

// The code's defaults (docs/operations.md, "Environment variables"), from the code.
const defaults = serviceEnv({});
const SAMPLER_PORT = portOf(DEFAULT_ADDRESS);
const TEMPORAL_PORT = portOf(defaults.temporalAddress);
const NATS_PORT = portOf(defaults.natsUrl);

/** Every YAML file under infra/compose and infra/k8s, parsed strictly (a syntax error or duplicate key fails). */
function yamlFiles(): { path: string; docs: Obj[] }[] {
  const out: { path: string; docs: Obj[] }[] = [];
  for (const dir of ['infra/compose', 'infra/k8s']) {
    for (const f of readdirSync(rel(dir)).sort()) {
      if (!/\.ya?ml$/.test(f)) continue;
      const docs = parseAllDocuments(read(dir, f), { merge: true, uniqueKeys: true });
      for (const d of docs)
        assert.deepEqual(d.errors, [], `${dir}/${f}: ${d.errors.map((e) => e.message).join('; ')}`);
      out.push({
        path: `${dir}/${f}`,
        docs: docs.map((d) => d.toJS({ maxAliasCount: 100 }) as Obj).filter(Boolean),
      });
    }
  }
  return out;
}

const compose = parseYaml(read('infra/compose/cluster.yaml'), { merge: true }) as Obj;
const k8s = yamlFiles().filter((f) => f.path.startsWith('infra/k8s/'));
const k8sKind = (kind: string, name: string): Obj => {
  const found = k8s.flatMap((f) => f.docs).find((d) => d.kind === kind && d.metadata?.name === name);
  assert.ok(found, `infra/k8s has no ${kind} ${name}`);
  return found;
};

/** Compose services that run the dalle image, with their dalle command line. */
function dalleServices(): [string, Obj][] {
  return Object.entries(compose.services as Obj).filter(([, s]) =>
    String(s.image).startsWith('dalle-cluster'),
  );
}
/** Containers of the k8s workloads that run the dalle image. */
function dalleContainers(): { workload: string; c: Obj }[] {
  return k8s
    .flatMap((f) => f.docs)
    .filter((d) => ['Deployment', 'Job'].includes(d.kind))
    .flatMap((d) =>
      (d.spec.template.spec.containers as Obj[])
        .filter((c) => c.image === 'dalle-cluster')
        .map((c) => ({ workload: `${d.kind}/${d.metadata.name}`, c })),
    );
}
const k8sEnv = (c: Obj): Obj => {
  const cm = k8sKind('ConfigMap', 'dalle-config').data as Obj;
  const env: Obj = {};
  for (const from of c.envFrom ?? []) if (from.configMapRef?.name === 'dalle-config') Object.assign(env, cm);
  for (const e of c.env ?? []) env[e.name] = e.value ?? '(from field)';
  return env;
};

/** Value of `--name X` or `--name=X` in an argument list. */
function flag(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}`) return args[i + 1];
    if (args[i]!.startsWith(`--${name}=`)) return args[i]!.slice(name.length + 3);
  }
  return undefined;
}

test('infra: every manifest parses (compose, collector, run config, Kubernetes)', () => {
  const files = yamlFiles();
  const names = files.map((f) => f.path);
  for (const want of [
    'infra/compose/cluster.yaml',
    'infra/compose/otel-collector.yaml',
    'infra/compose/run.yaml',
    'infra/k8s/kustomization.yaml',
  ]) {
    assert.ok(names.includes(want), `${want} missing`);
  }
  for (const f of files.filter(
    (x) => x.path.startsWith('infra/k8s/') && !x.path.endsWith('kustomization.yaml'),
  )) {
    for (const d of f.docs)
      assert.ok(
        d.apiVersion && d.kind && d.metadata?.name,
        `${f.path}: every document has apiVersion, kind, metadata.name`,
      );
  }
  // kubectl apply -k applies exactly the files listed: every manifest in the folder must be listed.
  const kust = files.find((f) => f.path === 'infra/k8s/kustomization.yaml')!.docs[0]!;
  assert.deepEqual(
    [...kust.resources].sort(),
    k8s
      .map((f) => relative('infra/k8s', f.path))
      .filter((p) => p !== 'kustomization.yaml')
      .sort(),
  );
});

test('infra: the image runs the compiled `node bin/dalle.js` from node:20 without dev dependencies, and every command it is given exists', () => {
  const df = read('infra/docker/Dockerfile');
  assert.match(df, /^ARG NODE_VERSION=20$/m);
  // Two stages: the build stage compiles with every dependency; the runtime stage installs production
  // dependencies only and takes dist/ from it.
  const [, build, runtime, ...more] = df.split(/^FROM /m);
  assert.equal(more.length, 0, 'two stages');
  assert.match(build!, /^node:\$\{NODE_VERSION\}-bookworm-slim AS build$/m);
  assert.match(build!, /^RUN npm ci\b/m);
  assert.match(build!, /^RUN npm run build$/m);
  assert.match(runtime!, /^node:\$\{NODE_VERSION\}-bookworm-slim$/m);
  assert.match(runtime!, /^RUN npm ci --omit=dev\b/m);
  assert.doesNotMatch(
    runtime!,
    /^RUN npm (ci|install)(?!.*--omit=dev)/m,
    'the runtime stage installs no dev dependencies',
  );
  assert.match(runtime!, /^COPY --from=build \/app\/dist \.\/dist$/m);
  assert.match(df, /^ENTRYPOINT \["node", "bin\/dalle\.js"\]$/m);
  for (const f of ['bin/dalle.js', 'package.json', 'package-lock.json', 'infra/native/install-tfjs-node.sh'])
    assert.ok(existsSync(rel(f)), f);
  assert.match(df, new RegExp(`DALLE_SAMPLER_ADDRESS=0\\.0\\.0\\.0:${SAMPLER_PORT}`));
  assert.match(df, new RegExp(`^EXPOSE ${SAMPLER_PORT}$`, 'm'));
  const ignore = read('infra/docker/Dockerfile.dockerignore').split('\n');
  for (const p of ['node_modules', '.git', '.dalle', '.dalle-test'])
    assert.ok(ignore.includes(p), `dockerignore lacks ${p}`);

  // The command table, from the CLI itself.
  const help = spawnSync(process.execPath, ['bin/dalle.js', '--help'], { cwd: root, encoding: 'utf8' });
  assert.equal(help.status, 0, help.stderr);
  const commands = new Set([...help.stdout.matchAll(/^ {2}([a-z]+) {2}/gm)].map((m) => m[1]!));
  for (const c of ['worker', 'sampler', 'train'])
    assert.ok(commands.has(c), `dalle --help lists no '${c}': ${[...commands].join(', ')}`);
  const used = [
    ...dalleServices()
      .filter(([, s]) => s.command)
      .map(([name, s]) => [`compose ${name}`, (s.command as string[])[0]!] as const),
    ...dalleContainers().map(({ workload, c }) => [`k8s ${workload}`, (c.args as string[])[0]!] as const),
  ];
  assert.ok(used.length >= 6);
  for (const [where, cmd] of used)
    assert.ok(commands.has(cmd), `${where} runs 'dalle ${cmd}', which is not a command`);
});

test('infra: every command line in the manifests is accepted by the CLI, options and all', async () => {
  // Each distinct command line runs for real, with the services pointed at a closed port: the CLI must get
  // past its own argument checks and fail only where it reaches for a service (or, for train, the config
  // file that only exists in the container). An unknown option or bad value would exit 2 with a usage line.
  const lines = new Map<string, string[]>();
  for (const [, s] of dalleServices()) if (s.command) lines.set(JSON.stringify(s.command), s.command);
  // Kubernetes expands $(VAR) in args from the container's env; a field-ref value becomes a stand-in.
  const expand = (args: string[]) =>
    args.map((a) => a.replace(/\$\(([A-Z_]+)\)/g, (_, n: string) => `k8s-${n.toLowerCase()}`));
  for (const { c } of dalleContainers()) lines.set(JSON.stringify(c.args), expand(c.args as string[]));
  assert.ok(lines.size >= 3);
  const home = join(root, '.dalle-test', `infra-cli-${process.pid}`);
  const env = {
    ...process.env,
    NATS_URL: 'nats://127.0.0.1:1',
    TEMPORAL_ADDRESS: '127.0.0.1:1',
    DALLE_SAMPLER_ADDRESS: '127.0.0.1:0',
    DALLE_HOME: home,
  };
  try {
    await Promise.all(
      [...lines.values()].map(
        (args) =>
          new Promise<void>((resolve, reject) => {
            const child = execFile(
              process.execPath,
              ['bin/dalle.js', ...args],
              { cwd: root, env, timeout: 90_000 },
              (err, _out, stderr) => {
                try {
                  const line = `dalle ${args.join(' ')}`;
                  assert.doesNotMatch(stderr, /Unknown option|usage: dalle|must be/, `${line}: ${stderr}`);
                  if (args[0] === 'train') {
                    assert.equal(err?.code, 2, line);
                    assert.match(
                      stderr,
                      new RegExp(`cannot read file: ENOENT.*${flag(args, 'config')}`),
                      line,
                    );
                  } else if (args[0] === 'sampler') {
                    assert.equal(
                      err?.killed,
                      true,
                      `${line} should wait for the closed NATS port: ${stderr}`,
                    );
                    assert.match(
                      stderr,
                      /sampler: connecting to NATS at nats:\/\/127\.0\.0\.1:1 \(waits/,
                      line,
                    );
                  } else {
                    assert.equal(err?.code, 1, `${line} should fail on the closed NATS port: ${stderr}`);
                    assert.match(stderr, /ECONNREFUSED|CONNECTION_REFUSED/, line);
                  }
                  resolve();
                } catch (e) {
                  reject(e);
                }
              },
            );
            // A sampler waits for NATS as long as it takes (it must outlive NATS restarts): once it says so it
            // is past its option parsing, and it is stopped (a fixed timeout was too short at load 38).
            if (args[0] === 'sampler') {
              let said = '';
              child.stderr!.on('data', (d: Buffer | string) => {
                said += String(d);
                if (/connecting to NATS/.test(said)) child.kill();
              });
            }
          }),
      ),
    );
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test('infra: ports and addresses match the code defaults (sampler 50051, Temporal 7233, NATS 4222, OTLP/HTTP 4318)', () => {
  assert.equal(SAMPLER_PORT, 50051);
  assert.equal(TEMPORAL_PORT, 7233);
  assert.equal(NATS_PORT, 4222);
  const svc = compose.services as Obj;
  // --- compose
  const natsNodes = Object.keys(svc).filter((n) => String(svc[n].image).startsWith('nats:'));
  for (const [name, s] of dalleServices()) {
    const env = s.environment as Obj;
    assert.equal(portOf(env.TEMPORAL_ADDRESS), TEMPORAL_PORT, `${name} TEMPORAL_ADDRESS`);
    assert.ok(
      (svc[hostOf(env.TEMPORAL_ADDRESS)].ports as string[]).some((p) => p.endsWith(`:${TEMPORAL_PORT}`)),
      `${name}: Temporal host`,
    );
    assert.equal(portOf(env.NATS_URL), NATS_PORT, `${name} NATS_URL`);
    assert.ok(
      natsNodes.includes(hostOf(env.NATS_URL)),
      `${name}: NATS_URL names a NATS node, got ${env.NATS_URL}`,
    );
    // What the telemetry code makes of the OTEL_* variables: OTLP/HTTP to the collector service.
    const exp = exportConfigFromEnv(env);
    assert.equal(exp.traces?.url, `http://otel-collector:4318/v1/traces`, name);
    assert.equal(exp.metrics?.url, `http://otel-collector:4318/v1/metrics`, name);
    assert.ok(svc['otel-collector'], 'collector service');
  }
  const sampler = svc.sampler;
  assert.deepEqual(sampler.command.slice(0, 1), ['sampler']);
  assert.equal(portOf(sampler.environment.DALLE_SAMPLER_ADDRESS), SAMPLER_PORT);
  assert.equal(
    hostOf(sampler.environment.DALLE_SAMPLER_ADDRESS),
    '0.0.0.0',
    'the sampler listens on every interface of its container',
  );
  assert.ok((sampler.ports as string[]).includes(`${SAMPLER_PORT}:${SAMPLER_PORT}`));
  assert.deepEqual(sampler.healthcheck.test.slice(-2), [
    'dist/infra/docker/grpc-health.js',
    `127.0.0.1:${SAMPLER_PORT}`,
  ]);
  assert.equal(portOf(svc.cli.environment.DALLE_SAMPLER_ADDRESS), SAMPLER_PORT);
  assert.equal(hostOf(svc.cli.environment.DALLE_SAMPLER_ADDRESS), 'sampler');

  // --- Kubernetes
  for (const { workload, c } of dalleContainers()) {
    const env = k8sEnv(c);
    assert.equal(portOf(env.TEMPORAL_ADDRESS), TEMPORAL_PORT, `${workload} TEMPORAL_ADDRESS`);
    assert.equal(portOf(env.NATS_URL), NATS_PORT, `${workload} NATS_URL`);
    assert.ok(exportConfigFromEnv(env).traces?.url.endsWith(':4318/v1/traces'), workload);
  }
  const dep = k8sKind('Deployment', 'dalle-sampler');
  const c = (dep.spec.template.spec.containers as Obj[]).find((x) => x.args[0] === 'sampler')!;
  assert.equal(portOf(k8sEnv(c).DALLE_SAMPLER_ADDRESS), SAMPLER_PORT);
  const grpcPort = (c.ports as Obj[]).find((p) => p.name === 'grpc')!;
  assert.equal(grpcPort.containerPort, SAMPLER_PORT);
  // gRPC health probe on the sampler port, whole-server status ('').
  assert.deepEqual(c.readinessProbe.grpc, { port: SAMPLER_PORT, service: '' });
  assert.equal(c.livenessProbe.tcpSocket.port, SAMPLER_PORT, 'liveness must not wait for a published model');
  const service = k8sKind('Service', 'dalle-sampler');
  const sp = (service.spec.ports as Obj[])[0]!;
  assert.equal(sp.port, SAMPLER_PORT);
  assert.ok(sp.targetPort === SAMPLER_PORT || sp.targetPort === grpcPort.name, `targetPort ${sp.targetPort}`);
  assert.deepEqual(service.spec.selector, dep.spec.template.metadata.labels);
  assert.deepEqual(dep.spec.selector.matchLabels, dep.spec.template.metadata.labels);
});

test('infra: a 3-node NATS cluster with JetStream, buckets replicated under the store names', () => {
  const svc = compose.services as Obj;
  const nodes = Object.entries(svc).filter(([, s]) => String(s.image).startsWith('nats:'));
  assert.equal(nodes.length, 3);
  const routes = new Set<string>();
  for (const [name, s] of nodes) {
    assert.match(s.image, /^nats:2\.10\b/);
    const args = s.command as string[];
    assert.equal(flag(args, 'name'), name);
    assert.equal(Number(flag(args, 'port')), NATS_PORT);
    assert.ok(args.includes('--jetstream') || args.includes('-js'), `${name}: JetStream on`);
    assert.ok(flag(args, 'store_dir'), `${name}: a store dir`);
    assert.ok(
      (s.volumes as string[]).some((v) => v.endsWith(`:${flag(args, 'store_dir')}`)),
      `${name}: store dir on a volume`,
    );
    assert.equal(flag(args, 'cluster_name'), 'dalle');
    const clusterPort = portOf(flag(args, 'cluster')!);
    const r = flag(args, 'routes')!.split(',');
    // Every node routes to all three (the route to itself is ignored by the server).
    assert.deepEqual(r.map(hostOf).sort(), nodes.map(([n]) => n).sort(), `${name} routes`);
    for (const x of r) assert.equal(portOf(x), clusterPort);
    routes.add(r.join(','));
  }
  assert.equal(routes.size, 1, 'all nodes share one route list');
  // Buckets: created replicated before any dalle process opens them (it would make them R1).
  const init = svc['nats-init'];
  const script = (init.command as string[]).join('\n');
  const objects = [BUCKETS.checkpointObjects, BUCKETS.modelObjects];
  const kvs = [BUCKETS.runsKv, BUCKETS.modelsKv];
  assert.match(
    script,
    new RegExp(`for b in ${objects.join(' ')}; do[^]*nats object add "\\$\\$b" --replicas=3`),
  );
  assert.match(
    script,
    new RegExp(`for b in ${kvs.join(' ')}; do[^]*nats kv add "\\$\\$b" --replicas=3 --history=8`),
  );
  for (const [name, s] of dalleServices().filter(([n]) => n !== 'train' && n !== 'cli')) {
    assert.equal(
      s.depends_on?.['nats-init']?.condition,
      'service_completed_successfully',
      `${name} waits for the buckets`,
    );
  }
});

test('infra: workers poll the task queue with GPUs reserved, and the run configs are valid with worldSize = workers', () => {
  const svc = compose.services as Obj;
  const workers = dalleServices().filter(([, s]) => s.command?.[0] === 'worker');
  assert.ok(workers.length >= 2, 'N ≥ 2 workers');
  const devices = new Set<string>();
  let slots = 0;
  for (const [name, s] of workers) {
    assert.equal(flag(s.command, 'task-queue'), TASK_QUEUE, `${name} task queue`);
    slots += Number(flag(s.command, 'slots') ?? 1);
    const d = s.deploy.resources.reservations.devices as Obj[];
    assert.equal(d.length, 1);
    assert.equal(d[0]!.driver, 'nvidia');
    assert.deepEqual(d[0]!.capabilities, ['gpu']);
    for (const id of d[0]!.device_ids) devices.add(id);
    assert.equal(s.environment.DALLE_BACKEND, 'tensorflow', `${name}: native TensorFlow or nothing`);
  }
  assert.equal(devices.size, workers.length, 'one distinct GPU per worker');
  const run = loadSpec(rel('infra/compose/run.yaml'));
  assert.equal(run.train.worldSize, slots, 'compose run.yaml worldSize = worker slots');
  assert.equal(run.dataset.kind, 'shapes');
  assert.deepEqual(svc.train.command, ['train', '--config', '/etc/dalle/run.yaml', '--detach']);
  assert.ok((svc.train.volumes as string[]).includes('./run.yaml:/etc/dalle/run.yaml:ro'));

  const dep = k8sKind('Deployment', 'dalle-worker');
  const w = (dep.spec.template.spec.containers as Obj[])[0]!;
  assert.equal(flag(w.args, 'task-queue'), TASK_QUEUE);
  assert.ok(Number(w.resources.limits['nvidia.com/gpu']) >= 1, 'worker requests nvidia.com/gpu');
  const cm = k8sKind('ConfigMap', 'dalle-config');
  const k8sRun = resolveSpec(parseYaml(cm.data['run.yaml']), 'ConfigMap dalle-config run.yaml');
  assert.equal(
    k8sRun.train.worldSize,
    dep.spec.replicas * Number(flag(w.args, 'slots') ?? 1),
    'k8s run.yaml worldSize = replicas × slots',
  );
  const job = k8sKind('Job', 'dalle-train');
  const jc = job.spec.template.spec.containers[0];
  assert.equal(flag(jc.args, 'config'), '/etc/dalle/run.yaml');
  const mount = (jc.volumeMounts as Obj[]).find((m) => '/etc/dalle/run.yaml'.startsWith(m.mountPath))!;
  const vol = (job.spec.template.spec.volumes as Obj[]).find((v) => v.name === mount.name)!;
  assert.equal(vol.configMap.name, 'dalle-config');
  assert.deepEqual(vol.configMap.items, [{ key: 'run.yaml', path: 'run.yaml' }]);
});

test('infra: every environment variable the manifests set is one the code reads', () => {
  // Non-test sources, read once: a variable is known if some source file names it.
  const sources: string[] = [];
  const walk = (dir: string) => {
    for (const f of readdirSync(rel(dir))) {
      const p = join(dir, f);
      if (statSync(rel(p)).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.test.ts')) sources.push(read(p));
    }
  };
  for (const d of ['infra', 'services', 'telemetry', 'model', 'store', 'collective', 'activities']) walk(d);
  const code = sources.join('\n');
  const names = new Set<string>();
  for (const [, s] of dalleServices()) for (const k of Object.keys(s.environment ?? {})) names.add(k);
  for (const { c } of dalleContainers())
    for (const k of Object.keys(k8sEnv(c)).filter((k) => k !== 'run.yaml')) names.add(k);
  names.delete('POD_NAME'); // Kubernetes-side helper for $(POD_NAME) in OTEL_RESOURCE_ATTRIBUTES
  names.delete('NODE_NAME'); // Kubernetes-side helper for --host-id $(NODE_NAME)
  names.delete('POD_NAMESPACE'); // Kubernetes-side helper for $(POD_NAMESPACE) in OTEL_RESOURCE_ATTRIBUTES
  assert.ok(names.size >= 8, [...names].join(' '));
  for (const n of names)
    assert.ok(code.includes(n), `${n} is set by a manifest but read nowhere in the code`);
});

test('infra: the collector takes OTLP/HTTP on 4318 and sends traces to Jaeger', () => {
  const col = parseYaml(read('infra/compose/otel-collector.yaml')) as Obj;
  assert.equal(portOf(col.receivers.otlp.protocols.http.endpoint), 4318);
  const svc = compose.services as Obj;
  const mount = (svc['otel-collector'].volumes as string[]).find((v) =>
    v.startsWith('./otel-collector.yaml:'),
  );
  assert.ok(mount, 'the collector mounts otel-collector.yaml');
  assert.equal(mount.split(':')[1], flag(svc['otel-collector'].command, 'config'));
  const jaeger = col.exporters['otlp/jaeger'];
  assert.ok(
    svc[hostOf(jaeger.endpoint)]?.image.startsWith('jaegertracing/'),
    'traces go to the jaeger service',
  );
  assert.equal(portOf(jaeger.endpoint), 4317);
  for (const [name, p] of Object.entries(col.service.pipelines as Obj)) {
    for (const r of p.receivers) assert.ok(col.receivers[r], `${name}: receiver ${r}`);
    for (const x of p.processors ?? []) assert.ok(col.processors[x], `${name}: processor ${x}`);
    for (const e of p.exporters) assert.ok(col.exporters[e], `${name}: exporter ${e}`);
  }
  assert.deepEqual(col.service.pipelines.traces.exporters, ['otlp/jaeger']);
  assert.ok(
    (svc.jaeger.command as string[]).includes(
      `--set=receivers.otlp.protocols.grpc.endpoint=0.0.0.0:${portOf(jaeger.endpoint)}`,
    ),
  );
  // One set of telemetry images and configs with the viewing-only stack beside it (docker-compose.yaml).
  const viewing = parseYaml(read('infra/compose/docker-compose.yaml')) as Obj;
  for (const name of ['otel-collector', 'jaeger', 'prometheus']) {
    assert.equal(svc[name].image, viewing.services[name].image, `${name} image`);
    assert.deepEqual(svc[name].volumes, viewing.services[name].volumes, `${name} mounts`);
  }
});

test('infra: the compose healthcheck probe reads the sampler’s real gRPC health (NOT_SERVING until a model loads)', async () => {
  const dir = join(root, '.dalle-test', `infra-health-${process.pid}`);
  const server = new SamplerService({ store: (await openStores({ dir })).models, log: () => undefined });
  try {
    const port = await server.listen('127.0.0.1:0');
    const addr = `127.0.0.1:${port}`;
    assert.deepEqual(await checkHealth(addr), { status: 'NOT_SERVING' }, 'no model published yet');
    // Asynchronously: the server answers from this process's event loop, which spawnSync would block.
    const probe = () =>
      new Promise<{ status: number; stdout: string; stderr: string }>((resolve) =>
        execFile(
          process.execPath,
          ['dist/infra/docker/grpc-health.js', addr], // the compiled probe, as the image runs it
          { cwd: root },
          (err, stdout, stderr) => resolve({ status: err ? Number(err.code) : 0, stdout, stderr }),
        ),
      );
    let r = await probe();
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /NOT_SERVING/);
    // What the server does once its default model is loaded (model-registry's onServing).
    server.health.setStatus('', 'SERVING');
    r = await probe();
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /: SERVING/);
    const gone = await checkHealth('127.0.0.1:1', '', 1_000);
    assert.equal(gone.status, 'UNKNOWN');
    assert.match(gone.error!, /UNAVAILABLE/);
  } finally {
    await server.shutdown(1_000);
    rmSync(dir, { recursive: true, force: true });
  }
});
