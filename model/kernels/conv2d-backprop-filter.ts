// Conv2DBackpropFilter for the wasm backend, which ships without it (tfjs-backend-wasm 4.22).
// dW[kh, kw, ci, co] = Σ_{b,oy,ox} x[b, oy·sh + kh − pt, ox·sw + kw − pl, ci] · dy[b, oy, ox, co]
// computed as one GEMM per batch chunk: dWᵀ[co, K] = dyᵀ[co, rows] · cols[rows, K], K = kh·kw·ci,
// rows = b·oh·ow. cols (im2col) is built in JS with contiguous channel copies; the GEMM is the wasm
// backend's own BatchMatMul (XNNPACK). Orientation matters: BatchMatMul with transposeA takes a slow path
// (~10× slower here), so dy is transposed in JS instead and the result transposed back.
import { backend_util, type KernelConfig, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { allocate, free, heapView, runWasmKernel } from './wasm-util.ts';

/** Floats of im2col per chunk: bounds the extra heap a backward pass needs (default 64 MiB). */
let colsBudget = 16 * 1024 * 1024;

/** Sets the im2col chunk budget in floats (tests use a small one to exercise chunking); returns the old one. */
export function setIm2colBudget(floats: number): number {
  if (!(Number.isInteger(floats) && floats > 0)) throw new RangeError(`im2col budget must be a positive integer, got ${floats}`);
  const old = colsBudget;
  colsBudget = floats;
  return old;
}

function conv2DBackpropFilter(args: { inputs: { x: TensorInfo; dy: TensorInfo }; backend: BackendWasm; attrs: backend_util.Conv2DInfo | any }): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as {
    strides: [number, number] | number; pad: any; dataFormat: 'NHWC' | 'NCHW'; dimRoundingMode?: 'floor' | 'round' | 'ceil';
    filterShape: [number, number, number, number];
  };
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') throw new Error(`Conv2DBackpropFilter (wasm): float32 only, got ${x.dtype}/${dy.dtype}`);
  const fmt = backend_util.convertConv2DDataFormat(dataFormat);
  if (fmt !== 'channelsLast') throw new Error(`Conv2DBackpropFilter (wasm): dataFormat ${dataFormat} unsupported, use NHWC`);
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], filterShape, strides, 1, pad, dimRoundingMode, false, fmt,
  );
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: CI, outHeight: OH, outWidth: OW, outChannels: CO } = info;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW } = info;
  const pt = info.padInfo.top;
  const pl = info.padInfo.left;
  const K = FH * FW * CI;
  const rowsPerImage = OH * OW;
  const perChunk = Math.max(1, Math.min(B, Math.floor(colsBudget / Math.max(1, rowsPerImage * K))));
  const acc = new Float32Array(K * CO); // [K, CO] = [kh, kw, ci, co]

  for (let b0 = 0; b0 < B; b0 += perChunk) {
    const nb = Math.min(perChunk, B - b0);
    const rows = nb * rowsPerImage;
    const cols = allocate(backend, [rows, K]);
    const dyT = allocate(backend, [CO, rows]);
    const xv = heapView(backend, x) as Float32Array;
    const dyv = heapView(backend, dy) as Float32Array;
    const cv = heapView(backend, cols) as Float32Array;
    const dtv = heapView(backend, dyT) as Float32Array;
    // im2col: row r = (b, oy, ox), column (kh, kw, ci).
    let r = 0;
    for (let b = b0; b < b0 + nb; b++) {
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++, r++) {
          let at = r * K;
          for (let kh = 0; kh < FH; kh++) {
            const iy = oy * SH + kh - pt;
            if (iy < 0 || iy >= H) {
              cv.fill(0, at, at + FW * CI);
              at += FW * CI;
              continue;
            }
            const rowBase = (b * H + iy) * W;
            for (let kw = 0; kw < FW; kw++, at += CI) {
              const ix = ox * SW + kw - pl;
              if (ix < 0 || ix >= W) {
                cv.fill(0, at, at + CI);
              } else {
                const src = (rowBase + ix) * CI;
                if (CI >= 16) cv.set(xv.subarray(src, src + CI), at);
                else for (let c = 0; c < CI; c++) cv[at + c] = xv[src + c]!;
              }
            }
          }
        }
      }
    }
    // dyᵀ for this chunk: [CO, rows].
    const dyBase = b0 * rowsPerImage * CO;
    for (let i = 0; i < rows; i++) {
      const src = dyBase + i * CO;
      for (let o = 0; o < CO; o++) dtv[o * rows + i] = dyv[src + o]!;
    }
    const prod = runWasmKernel(backend, 'BatchMatMul', { a: dyT, b: cols }, { transposeA: false, transposeB: false }); // [1, CO, K]
    const pv = heapView(backend, prod) as Float32Array;
    for (let o = 0; o < CO; o++) {
      const src = o * K;
      for (let k = 0; k < K; k++) acc[k * CO + o]! += pv[src + k]!;
    }
    free(backend, cols, dyT, prod);
  }
  const out = allocate(backend, [...filterShape]);
  (heapView(backend, out) as Float32Array).set(acc);
  return out;
}

export const conv2DBackpropFilterWasmConfig: KernelConfig = {
  kernelName: 'Conv2DBackpropFilter',
  backendName: 'wasm',
  kernelFunc: conv2DBackpropFilter as unknown as KernelFunc,
};
