// Which parameters PowerSGD compresses, as what matrix, at what rank, and what a step costs on the wire.
// A pure function of the parameter shapes and the config, so the bytes of any model (paper-12b included)
// can be counted without allocating it, and the runtime's measured bytes can be checked against it.
//
// Rules (docs/model.md, torch powerSGD_hook):
//  - gains, biases, embeddings, unembeddings and anything with fewer than two non-trivial dimensions stay
//    uncompressed (fp32, one grouped all-reduce);
//  - a tensor is viewed as [prod(shape[:-1]), shape[-1]] (a conv kernel [kh, kw, in, out] as
//    [kh·kw·in, out]) and transposed so that M is n×m with m ≤ n;
//  - r = min(rank, m); compressed only if (n + m)·r·minCompressionRate < n·m;
//  - P [n, r] and Q [m, r] travel in the wire format; everything uncompressed in fp32.
import type { PowerSgdConfig } from '../config/index.ts';
import type { ParamSpec } from '../model/index.ts';
import { CollectiveArgumentError } from './errors.ts';

export interface ParamPlan {
  index: number;
  name: string;
  shape: number[];
  numel: number;
  compressed: boolean;
  /** Why it is (not) compressed: 'matrix', 'kind:<kind>', 'vector', 'min-compression-rate'. */
  reason: string;
  /** The stored view [rows, cols] = [prod(shape[:-1]), shape[-1]]. */
  rows: number;
  cols: number;
  /** M = viewᵀ (rows < cols), so that M is n×m with n ≥ m. */
  transposed: boolean;
  n: number;
  m: number;
  /** Approximation rank (0 when uncompressed). */
  r: number;
  /** Index into plan.scaleGroups (-1 when uncompressed). */
  scaleGroup: number;
}

export interface CompressionPlan {
  params: ParamPlan[];
  /** Names of the fp16 scale groups (one per resblock, or per tensor outside any block). */
  scaleGroups: string[];
  /** Elements of every gradient (fp32 when raw). */
  numel: number;
  uncompressedElems: number;
  pElems: number;
  qElems: number;
  wireBytesPerElem: 2 | 4;
  /** Bytes of one step's gradients in fp32: what a plain all-reduce carries. */
  bytesRaw: number;
  /** Gradient bytes a compressed step all-reduces: uncompressed·4 + (P + Q)·wire. */
  bytesSent: number;
  /** 1 − bytesSent / bytesRaw. */
  compressionRate: number;
}

type PlanConfig = Pick<PowerSgdConfig, 'rank' | 'minCompressionRate' | 'wire'>;

const UNCOMPRESSED_KINDS = new Set(['gain', 'bias', 'embedding', 'unembedding']);

/** The resblock a parameter belongs to, for its fp16 scale: the name up to its last `block<i>`,
 *  `layer<i>`, `blocks.<i>`, `layers.<i>`, `h.<i>` component; otherwise the parameter's own name. */
export function resblockOf(spec: ParamSpec): string {
  const parts = spec.name.split('.');
  let end = -1;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (/^(res)?(block|layer)s?_?\d+$/i.test(p)) end = i;
    else if (/^\d+$/.test(p) && i > 0 && /^((res)?blocks?|layers?|h)$/i.test(parts[i - 1]!)) end = i;
  }
  return end >= 0 ? parts.slice(0, end + 1).join('.') : spec.name;
}

export function planCompression(
  specs: ParamSpec[],
  cfg: PlanConfig,
  scaleGroupOf: (s: ParamSpec) => string = resblockOf,
): CompressionPlan {
  if (!Array.isArray(specs))
    throw new CollectiveArgumentError('specs', specs, 'must be an array of ParamSpec');
  if (!Number.isInteger(cfg.rank) || cfg.rank < 1)
    throw new CollectiveArgumentError('powersgd.rank', cfg.rank, 'must be an integer ≥ 1');
  const names = new Set<string>();
  const groupIndex = new Map<string, number>();
  const params: ParamPlan[] = specs.map((s, index) => {
    if (!s || typeof s.name !== 'string' || !Array.isArray(s.shape))
      throw new CollectiveArgumentError(`specs[${index}]`, s, 'must be a ParamSpec {name, shape, kind}');
    if (names.has(s.name)) throw new CollectiveArgumentError(`specs[${index}].name`, s.name, 'is not unique');
    names.add(s.name);
    if (!s.shape.every((d) => Number.isInteger(d) && d >= 1))
      throw new CollectiveArgumentError(
        `${s.name}.shape`,
        JSON.stringify(s.shape),
        'must be positive integers',
      );
    const numel = s.shape.reduce((a, b) => a * b, 1);
    const cols = s.shape.length ? s.shape[s.shape.length - 1]! : 1;
    const rows = numel / cols;
    const transposed = rows < cols;
    const [n, m] = transposed ? [cols, rows] : [rows, cols];
    const base = { index, name: s.name, shape: [...s.shape], numel, rows, cols, transposed, n, m };
    const r = Math.min(cfg.rank, m);
    let reason = 'matrix';
    if (UNCOMPRESSED_KINDS.has(s.kind)) reason = `kind:${s.kind}`;
    else if (m <= 1) reason = 'vector';
    else if (!((n + m) * r * cfg.minCompressionRate < n * m)) reason = 'min-compression-rate';
    if (reason !== 'matrix') return { ...base, compressed: false, reason, r: 0, scaleGroup: -1 };
    const g = scaleGroupOf(s);
    if (!groupIndex.has(g)) groupIndex.set(g, groupIndex.size);
    return { ...base, compressed: true, reason, r, scaleGroup: groupIndex.get(g)! };
  });
  const wireBytesPerElem = cfg.wire === 'fp16' ? 2 : 4;
  let numel = 0;
  let uncompressedElems = 0;
  let pElems = 0;
  let qElems = 0;
  for (const p of params) {
    numel += p.numel;
    if (!p.compressed) uncompressedElems += p.numel;
    else {
      pElems += p.n * p.r;
      qElems += p.m * p.r;
    }
  }
  const bytesRaw = numel * 4;
  const bytesSent = uncompressedElems * 4 + (pElems + qElems) * wireBytesPerElem;
  return {
    params,
    scaleGroups: [...groupIndex.keys()],
    numel,
    uncompressedElems,
    pElems,
    qElems,
    wireBytesPerElem,
    bytesRaw,
    bytesSent,
    compressionRate: bytesRaw ? 1 - bytesSent / bytesRaw : 0,
  };
}
