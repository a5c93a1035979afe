// A faster Conv2DBackpropInput for the wasm backend. The stock kernel is a scalar loop (~1.3 GFLOP/s
// here, 10× slower than its forward conv), and every conv layer's backward pass needs it. For stride 1
// the input gradient is itself a forward convolution, which XNNPACK runs fast:
//   dx = conv2d(dy, flip(W)ᵀ, pads (fh−1−pb, ..)),  flip(W)ᵀ[kh, kw, co, ci] = W[fh−1−kh, fw−1−kw, ci, co].
// Other strides (and pads beyond fh−1) go to the stock kernel, kept as the fallback.
import {
  backend_util,
  type KernelConfig,
  type KernelFunc,
  type KernelBackend,
  type TensorInfo,
} from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { allocate, free, heapView, runWasmKernel, type ConvAttrs } from './wasm-util.ts';

type InputAttrs = ConvAttrs & { inputShape: [number, number, number, number] };

/** The geometry when the fast path covers it (stride 1, NHWC, float32, pads within fh−1), else undefined. */
function fastGeometry(
  dy: TensorInfo,
  filter: TensorInfo,
  attrs: InputAttrs,
): backend_util.Conv2DInfo | undefined {
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs;
  const fmt = backend_util.convertConv2DDataFormat(dataFormat);
  const info = backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    fmt,
  );
  const { filterHeight: FH, filterWidth: FW } = info;
  const p = info.padInfo;
  const fast =
    fmt === 'channelsLast' &&
    dy.dtype === 'float32' &&
    filter.dtype === 'float32' &&
    info.strideHeight === 1 &&
    info.strideWidth === 1 &&
    p.top <= FH - 1 &&
    p.bottom <= FH - 1 &&
    p.left <= FW - 1 &&
    p.right <= FW - 1;
  return fast ? info : undefined;
}

/** flip(W)ᵀ[kh, kw, co, ci] = W[fh−1−kh, fw−1−kw, ci, co], in a new heap tensor. */
function flippedFilter(backend: BackendWasm, filter: TensorInfo, info: backend_util.Conv2DInfo): TensorInfo {
  const { filterHeight: FH, filterWidth: FW, inChannels: CI, outChannels: CO } = info;
  const flipped = allocate(backend, [FH, FW, CO, CI]);
  const wv = heapView(backend, filter) as Float32Array;
  const fv = heapView(backend, flipped) as Float32Array;
  for (let kh = 0; kh < FH; kh++) {
    for (let kw = 0; kw < FW; kw++) {
      const src = ((FH - 1 - kh) * FW + (FW - 1 - kw)) * CI * CO;
      const dst = (kh * FW + kw) * CO * CI;
      for (let c = 0; c < CI; c++) for (let o = 0; o < CO; o++) fv[dst + o * CI + c] = wv[src + c * CO + o]!;
    }
  }
  return flipped;
}

/** `stock` is the backend's own kernel, used for the cases the fast path does not cover. */
export function makeConv2DBackpropInputWasmConfig(stock: KernelConfig | undefined): KernelConfig {
  // Unregistering the stock kernel skips its setupFunc at backend init: run it ourselves once.
  let stockReady = false;
  const fallback = (args: { backend: KernelBackend }): TensorInfo => {
    if (!stock) throw new Error('Conv2DBackpropInput (wasm): only stride 1 NHWC float32 is supported');
    if (!stockReady) {
      stock.setupFunc?.(args.backend);
      stockReady = true;
    }
    return stock.kernelFunc(args as never) as TensorInfo;
  };
  const kernelFunc = (args: {
    inputs: { dy: TensorInfo; filter: TensorInfo };
    backend: BackendWasm;
    attrs: any;
  }): TensorInfo => {
    const { inputs, backend, attrs } = args;
    const { dy, filter } = inputs;
    const { inputShape } = attrs as InputAttrs;
    const info = fastGeometry(dy, filter, attrs as InputAttrs);
    if (!info) return fallback(args);
    const { filterHeight: FH, filterWidth: FW } = info;
    const p = info.padInfo;
    const flipped = flippedFilter(backend, filter, info);
    const dx = runWasmKernel(
      backend,
      'Conv2D',
      { x: dy, filter: flipped },
      {
        strides: 1,
        dilations: 1,
        dataFormat: 'NHWC',
        pad: [
          [0, 0],
          [FH - 1 - p.top, FH - 1 - p.bottom],
          [FW - 1 - p.left, FW - 1 - p.right],
          [0, 0],
        ],
      },
    );
    free(backend, flipped);
    if (dx.shape.join() !== inputShape.join()) {
      throw new Error(`Conv2DBackpropInput (wasm): produced ${dx.shape}, expected ${inputShape}`);
    }
    return dx;
  };
  return {
    kernelName: 'Conv2DBackpropInput',
    backendName: 'wasm',
    kernelFunc: kernelFunc as unknown as KernelFunc,
  };
}
