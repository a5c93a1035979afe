// MaxPoolGrad for the wasm backend with the cpu backend's (and TensorFlow's) tie rule: each window's
// gradient goes to the FIRST maximum in row-major window order. The stock wasm kernel breaks ties
// differently, and ties are everywhere in our data (flat white backgrounds, ReLU zeros), so without
// this the encoder's gradient below every pooling layer differs from cpu (relative error ~1).
import { backend_util, type KernelConfig, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { allocate, heapView } from './wasm-util.ts';

function maxPoolGrad(args: {
  inputs: { dy: TensorInfo; input: TensorInfo; output: TensorInfo };
  backend: BackendWasm;
  attrs: any;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, input } = inputs;
  const { filterSize, strides, pad, dimRoundingMode } = attrs as {
    filterSize: [number, number] | number;
    strides: [number, number] | number;
    pad: any;
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  if (input.dtype !== 'float32' || dy.dtype !== 'float32')
    throw new Error(`MaxPoolGrad (wasm): float32 only, got ${input.dtype}/${dy.dtype}`);
  const info = backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    filterSize,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW } = info;
  const pt = info.padInfo.top;
  const pl = info.padInfo.left;
  const dx = allocate(backend, [...input.shape]);
  const xv = heapView(backend, input) as Float32Array;
  const gv = heapView(backend, dy) as Float32Array;
  const dv = heapView(backend, dx) as Float32Array;
  dv.fill(0);
  const best = new Float32Array(C);
  const at = new Int32Array(C);
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        best.fill(-Infinity);
        at.fill(-1);
        for (let wy = 0; wy < FH; wy++) {
          const iy = oy * SH - pt + wy;
          if (iy < 0 || iy >= H) continue;
          for (let wx = 0; wx < FW; wx++) {
            const ix = ox * SW - pl + wx;
            if (ix < 0 || ix >= W) continue;
            const base = ((b * H + iy) * W + ix) * C;
            for (let c = 0; c < C; c++) {
              const v = xv[base + c]!;
              if (v > best[c]!) {
                best[c] = v;
                at[c] = base + c;
              }
            }
          }
        }
        const g = ((b * OH + oy) * OW + ox) * C;
        for (let c = 0; c < C; c++) if (at[c]! >= 0) dv[at[c]!]! += gv[g + c]!;
      }
    }
  }
  return dx;
}

export const maxPoolGradWasmConfig: KernelConfig = {
  kernelName: 'MaxPoolGrad',
  backendName: 'wasm',
  kernelFunc: maxPoolGrad as unknown as KernelFunc,
};
