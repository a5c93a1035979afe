// Identity for the wasm backend that shares memory instead of copying it. tfjs clones every tensor it
// saves for the backward pass through this kernel; the stock wasm kernel copies each one (~7% of a dVAE
// step), while the cpu backend shares the buffer by reference count. Sharing is safe for the same
// reason the wasm Reshape kernel shares: no kernel writes into its inputs, and variables change by
// swapping buffers, not by writing into them.
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

function identity(args: { inputs: { x: TensorInfo }; backend: BackendWasm }): TensorInfo {
  const { x } = args.inputs;
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

export const identityWasmConfig: KernelConfig = {
  kernelName: 'Identity',
  backendName: 'wasm',
  kernelFunc: identity as unknown as KernelFunc,
};
