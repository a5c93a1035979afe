// UnsortedSegmentSum for the wasm backend (missing in tfjs-backend-wasm 4.22); gather's gradient needs
// it, so embedding tables train on wasm. TF semantics: segmentIds' shape is a prefix of x's shape;
// out[s, ...] = Σ_{i: ids[i] = s} x[i, ...]; ids outside [0, numSegments) are dropped. Summation runs
// in index order, so the result is deterministic.
import { util, type KernelConfig, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { allocate, heapView } from './wasm-util.ts';

function unsortedSegmentSum(args: {
  inputs: { x: TensorInfo; segmentIds: TensorInfo };
  backend: BackendWasm;
  attrs: { numSegments: number };
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, segmentIds } = inputs;
  const { numSegments } = attrs;
  const idRank = segmentIds.shape.length;
  if (segmentIds.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(
      `UnsortedSegmentSum (wasm): segmentIds shape [${segmentIds.shape}] is not a prefix of x shape [${x.shape}]`,
    );
  }
  if (x.dtype !== 'float32' && x.dtype !== 'int32')
    throw new Error(`UnsortedSegmentSum (wasm): dtype ${x.dtype} unsupported`);
  const inner = util.sizeFromShape(x.shape.slice(idRank));
  const n = util.sizeFromShape(segmentIds.shape);
  const out = allocate(backend, [numSegments, ...x.shape.slice(idRank)], x.dtype);
  const ov = heapView(backend, out);
  const xv = heapView(backend, x);
  // Segment ids may arrive as float32 (tfjs casts lazily in some paths): read them as numbers.
  const iv = backend.typedArrayFromHeap(segmentIds);
  ov.fill(0);
  for (let i = 0; i < n; i++) {
    const s = iv[i]!;
    if (s < 0 || s >= numSegments) continue;
    const dst = s * inner;
    const src = i * inner;
    for (let j = 0; j < inner; j++) ov[dst + j]! += xv[src + j]!;
  }
  return out;
}

export const unsortedSegmentSumWasmConfig: KernelConfig = {
  kernelName: 'UnsortedSegmentSum',
  backendName: 'wasm',
  kernelFunc: unsortedSegmentSum as unknown as KernelFunc,
};
