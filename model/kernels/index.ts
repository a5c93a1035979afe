// Kernels we add to (or replace in) the wasm backend so the dVAE and the transformer train on it.
// Each one is checked against the cpu backend in kernels.test.ts (relative error < 1e-4).
import { getKernel, registerKernel, unregisterKernel } from '@tensorflow/tfjs';
import { makeConv2DBackpropInputWasmConfig } from './conv2d-backprop-input.ts';
import { conv2DBackpropFilterWasmConfig } from './conv2d-backprop-filter.ts';
import { identityWasmConfig } from './identity.ts';
import { maxPoolGradWasmConfig } from './max-pool-grad.ts';
import { unsortedSegmentSumWasmConfig } from './unsorted-segment-sum.ts';

/** Names of the kernels this module provides for the wasm backend. */
export const wasmKernelNames = [
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'Identity',
  'MaxPoolGrad',
  'UnsortedSegmentSum',
] as const;

let registered = false;

/** Registers our wasm kernels once (idempotent). Call before the first backward pass on wasm. */
export function registerWasmKernels(): void {
  if (registered) return;
  for (const cfg of [conv2DBackpropFilterWasmConfig, unsortedSegmentSumWasmConfig]) {
    // A future tfjs-backend-wasm may ship its own: keep theirs.
    if (!getKernel(cfg.kernelName, 'wasm')) registerKernel(cfg);
  }
  const stock = getKernel('Conv2DBackpropInput', 'wasm');
  if (stock) unregisterKernel('Conv2DBackpropInput', 'wasm');
  registerKernel(makeConv2DBackpropInputWasmConfig(stock));
  // Replaced, not added: the stock one breaks ties differently from cpu (see max-pool-grad.ts).
  if (getKernel('MaxPoolGrad', 'wasm')) unregisterKernel('MaxPoolGrad', 'wasm');
  registerKernel(maxPoolGradWasmConfig);
  // Replaced: shares the buffer instead of copying it (see identity.ts).
  if (getKernel('Identity', 'wasm')) unregisterKernel('Identity', 'wasm');
  registerKernel(identityWasmConfig);
  registered = true;
}
