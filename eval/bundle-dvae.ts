// The dVAE the evaluation needs (decode for the random-token baseline, encode → decode for the
// reconstruction ceiling), from a published bundle or from a model/dvae.ts Dvae.
import type { RunSpec } from '../config/index.ts';
import type { Dvae } from '../model/index.ts';
import type { EvalDvae } from './shapes-eval.ts';

/** The dVAE of a published bundle as a model/dvae.ts Dvae (owned: the caller disposes it), with the run's spec. */
export async function dvaeOfBundle(bundle: Uint8Array): Promise<{ dvae: Dvae; spec: RunSpec }> {
  const { decodeState, Dvae, dvaeParamSpecs, expectArrays, initTfBackend } =
    await import('../model/index.ts');
  const { decodeBundle } = await import('../store/bundle.ts');
  await initTfBackend();
  const b = decodeBundle(bundle);
  const specs = dvaeParamSpecs(b.spec.dvae);
  const { arrays } = decodeState(b.dvae);
  expectArrays(
    arrays,
    specs.map((s) => [s.name, s.shape.reduce((x, y) => x * y, 1)] as const),
  );
  const dvae = Dvae.fromParams(
    b.spec.dvae,
    specs.map((s) => arrays.get(s.name)!),
  );
  return { dvae, spec: b.spec };
}

/** The dVAE of a published bundle, for reconstruction and the random-token baseline. */
export async function bundleDvae(bundle: Uint8Array): Promise<EvalDvae & { spec: RunSpec; dispose(): void }> {
  const { dvae, spec } = await dvaeOfBundle(bundle);
  return { ...dvaeAdapter(dvae), spec };
}

/** EvalDvae over a model/dvae.ts Dvae (owned: `dispose` releases it). */
export function dvaeAdapter(d: Dvae): EvalDvae & { dispose(): void } {
  return {
    resolution: d.cfg.resolution,
    grid: d.cfg.grid,
    codebookSize: d.cfg.codebookSize,
    decode: (tokens) => d.decode(tokens),
    reconstruct: (rgb) => d.decode(d.encode(rgb)),
    dispose: () => d.dispose(),
  };
}
