// Conv2DBackpropFilter for the wasm backend, which ships without it (tfjs-backend-wasm 4.22).
// dW[kh, kw, ci, co] = Σ_{b,oy,ox} x[b, oy·sh + kh − pt, ox·sw + kw − pl, ci] · dy[b, oy, ox, co]
// computed as one GEMM per batch chunk: dW[K, co] = colsᵀ[K, rows] · dy[rows, co], K = kh·kw·ci,
// rows = b·oh·ow. colsᵀ (transposed im2col) is built in JS; the GEMM is the wasm backend's own
// BatchMatMul (XNNPACK). Orientation matters: XNNPACK packs the right-hand operand on every call and
// takes a slow path for transposeA, so the big operand goes left, untransposed, and dy (small) right.
import { backend_util, type KernelConfig, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { allocate, free, heapView, runWasmKernel, type ConvAttrs } from './wasm-util.ts';

/** Floats of im2col per chunk: bounds the extra heap a backward pass needs (default 64 MiB). */
let colsBudget = 16 * 1024 * 1024;

/** Sets the im2col chunk budget in floats (tests use a small one to exercise chunking); returns the old one. */
export function setIm2colBudget(floats: number): number {
  if (!(Number.isInteger(floats) && floats > 0))
    throw new RangeError(`im2col budget must be a positive integer, got ${floats}`);
  const old = colsBudget;
  colsBudget = floats;
  return old;
}

type FilterAttrs = ConvAttrs & { filterShape: [number, number, number, number] };

/** The convolution's geometry, after checking what this kernel supports (float32, NHWC). */
function filterGeometry(x: TensorInfo, dy: TensorInfo, attrs: FilterAttrs): backend_util.Conv2DInfo {
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
  if (x.dtype !== 'float32' || dy.dtype !== 'float32')
    throw new Error(`Conv2DBackpropFilter (wasm): float32 only, got ${x.dtype}/${dy.dtype}`);
  const fmt = backend_util.convertConv2DDataFormat(dataFormat);
  if (fmt !== 'channelsLast')
    throw new Error(`Conv2DBackpropFilter (wasm): dataFormat ${dataFormat} unsupported, use NHWC`);
  return backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    fmt,
  );
}

/** colsᵀ for images b0 … b0+nb−1: row k = (kh, kw, c) holds x shifted by (kh − pt, kw − pl), channel c, over
 *  (b, oy, ox). Contiguous writes, reads strided by CI; the in-bounds ox range is hoisted out of the inner loop. */
function im2colTransposed(
  cv: Float32Array,
  xv: Float32Array,
  info: backend_util.Conv2DInfo,
  b0: number,
  nb: number,
): void {
  const { inHeight: H, inWidth: W, inChannels: CI, outHeight: OH, outWidth: OW } = info;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW } = info;
  const pt = info.padInfo.top;
  const pl = info.padInfo.left;
  const rows = nb * OH * OW;
  for (let kh = 0; kh < FH; kh++) {
    for (let kw = 0; kw < FW; kw++) {
      // ox with 0 ≤ ox·SW + kw − pl < W
      const oxLo = Math.min(OW, Math.max(0, Math.ceil((pl - kw) / SW)));
      const oxHi = Math.max(oxLo, Math.min(OW, Math.ceil((W + pl - kw) / SW)));
      for (let c = 0; c < CI; c++) {
        let at = ((kh * FW + kw) * CI + c) * rows;
        for (let b = b0; b < b0 + nb; b++) {
          for (let oy = 0; oy < OH; oy++, at += OW) {
            const iy = oy * SH + kh - pt;
            if (iy < 0 || iy >= H) {
              cv.fill(0, at, at + OW);
              continue;
            }
            for (let ox = 0; ox < oxLo; ox++) cv[at + ox] = 0;
            let src = ((b * H + iy) * W + oxLo * SW + kw - pl) * CI + c;
            const step = SW * CI;
            for (let ox = oxLo; ox < oxHi; ox++, src += step) cv[at + ox] = xv[src]!;
            for (let ox = oxHi; ox < OW; ox++) cv[at + ox] = 0;
          }
        }
      }
    }
  }
}

function conv2DBackpropFilter(args: {
  inputs: { x: TensorInfo; dy: TensorInfo };
  backend: BackendWasm;
  attrs: backend_util.Conv2DInfo | any;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  const info = filterGeometry(x, dy, attrs as FilterAttrs);
  const { batchSize: B, inChannels: CI, outHeight: OH, outWidth: OW, outChannels: CO } = info;
  const K = info.filterHeight * info.filterWidth * CI;
  const rowsPerImage = OH * OW;
  const perChunk = Math.max(1, Math.min(B, Math.floor(colsBudget / Math.max(1, rowsPerImage * K))));
  const acc = new Float32Array(K * CO); // [K, CO] = [kh, kw, ci, co], summed over chunks in order

  for (let b0 = 0; b0 < B; b0 += perChunk) {
    const nb = Math.min(perChunk, B - b0);
    const rows = nb * rowsPerImage;
    const colsT = allocate(backend, [K, rows]);
    // dy's rows for this chunk: the tensor itself (a reshaped view) when there is one chunk, else a copy.
    const dyRows =
      nb === B
        ? runWasmKernel(backend, 'Reshape', { x: dy }, { shape: [rows, CO] })
        : allocate(backend, [rows, CO]);
    if (nb !== B) {
      const dyv = heapView(backend, dy) as Float32Array;
      (heapView(backend, dyRows) as Float32Array).set(
        dyv.subarray(b0 * rowsPerImage * CO, (b0 + nb) * rowsPerImage * CO),
      );
    }
    im2colTransposed(
      heapView(backend, colsT) as Float32Array,
      heapView(backend, x) as Float32Array,
      info,
      b0,
      nb,
    );
    const prod = runWasmKernel(
      backend,
      'BatchMatMul',
      { a: colsT, b: dyRows },
      { transposeA: false, transposeB: false },
    ); // [1, K, CO]
    const pv = heapView(backend, prod) as Float32Array;
    if (nb === B) acc.set(pv);
    else for (let i = 0; i < acc.length; i++) acc[i]! += pv[i]!;
    free(backend, colsT, dyRows, prod);
  }
  const out = allocate(backend, [...(attrs as FilterAttrs).filterShape]);
  (heapView(backend, out) as Float32Array).set(acc);
  return out;
}

export const conv2DBackpropFilterWasmConfig: KernelConfig = {
  kernelName: 'Conv2DBackpropFilter',
  backendName: 'wasm',
  kernelFunc: conv2DBackpropFilter as unknown as KernelFunc,
};
