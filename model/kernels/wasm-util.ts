// Small helpers for kernels that run inside the wasm backend: allocate on its heap, view its memory,
// call its own kernels (XNNPACK matmul and conv) and free intermediates. Views into the heap are only
// valid until the next allocation (the heap may grow), so take them after the last makeOutput.
import {
  getKernel,
  type DataType,
  type NamedAttrMap,
  type NamedTensorInfoMap,
  type TensorInfo,
} from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/** A float32/int32 view of a tensor's bytes on the wasm heap. */
export function heapView(backend: BackendWasm, t: TensorInfo): Float32Array | Int32Array {
  return backend.typedArrayFromHeap(t) as Float32Array | Int32Array;
}

/** Allocates an uninitialized tensor on the wasm heap. */
export function allocate(backend: BackendWasm, shape: number[], dtype: DataType = 'float32'): TensorInfo {
  return backend.makeOutput(shape, dtype);
}

/** Runs one of the wasm backend's registered kernels directly (no autodiff recording, no engine scope). */
export function runWasmKernel(
  backend: BackendWasm,
  kernelName: string,
  inputs: NamedTensorInfoMap,
  attrs: NamedAttrMap,
): TensorInfo {
  const k = getKernel(kernelName, 'wasm');
  if (!k) throw new Error(`wasm backend has no ${kernelName} kernel`);
  const out = k.kernelFunc({ inputs, backend, attrs });
  if (Array.isArray(out)) throw new Error(`${kernelName} returned several outputs`);
  return out;
}

export function free(backend: BackendWasm, ...ts: TensorInfo[]): void {
  for (const t of ts) backend.disposeData(t.dataId);
}

/** The attributes every Conv2D backprop kernel receives (the rest is the shape of what it computes). */
export interface ConvAttrs {
  strides: [number, number] | number;
  pad: any;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}
