// conv2d + bias + optional ReLU as one op with one gradient (stride 1, 'same' padding: the dVAE's convs).
//
// tfjs's own fused conv computes the same values, but its gradient on the native backend costs a tfjs
// Step (six TensorFlow kernels, ~1 ms on a [32, 32, 32, 4] activation) plus a reduction over N·H·W for
// the bias, and its forward three kernels. Here: forward conv, bias and ReLU in one oneDNN kernel
// (see NativeOps.conv2dBias); backward ReluGrad,
// BiasAddGrad, Conv2DBackpropFilter and, only when the input needs a gradient (never the images),
// Conv2DBackpropInput. Other backends run the plain tfjs kernels, so their results do not change.
import * as tf from '@tensorflow/tfjs';
import { nativeOps } from './native.ts';
import { registerOp } from './register.ts';

export type ConvActivation = 'linear' | 'relu';

const KERNEL = 'DalleConv2D';
const convAttrs = { strides: 1, pad: 'same', dataFormat: 'NHWC', dimRoundingMode: undefined } as const;

registerOp({
  kernelName: KERNEL,
  forward: ({ x, filter, bias }, attrs) => {
    const relu = attrs.activation === 'relu';
    const n = nativeOps();
    if (n) return n.conv2dBias(x, filter, bias, relu);
    return tf.fused.conv2d({
      x: x as tf.Tensor4D,
      filter: filter as tf.Tensor4D,
      bias,
      strides: 1,
      pad: 'same',
      activation: relu ? 'relu' : 'linear',
    });
  },
  inputsToSave: ['x', 'filter'],
  outputsToSave: [true],
  gradient: (dyIn, [x, filter, y], attrs) => {
    const dy = dyIn as tf.Tensor;
    const n = nativeOps();
    // Needed by every input's gradient: computed once here, freed with the backward pass.
    const dz =
      attrs.activation !== 'relu' ? dy : n ? n.reluGrad(dy, y!) : dy.mul(y!.greater(0).cast('float32'));
    return {
      x: () =>
        n
          ? n.conv2dInputGrad(x!.shape, filter!, dz)
          : tf.engine().runKernel(tf.Conv2DBackpropInput, { dy: dz, filter: filter! }, {
              ...convAttrs,
              inputShape: x!.shape,
            } as unknown as tf.NamedAttrMap),
      filter: () =>
        n
          ? n.conv2dFilterGrad(x!, filter!.shape, dz)
          : tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: x!, dy: dz }, {
              ...convAttrs,
              filterShape: filter!.shape,
            } as unknown as tf.NamedAttrMap),
      bias: () => (n ? n.biasAddGrad(dz) : dz.sum([0, 1, 2])),
    };
  },
});

/** conv2d(x, filter, stride 1, 'same') + bias, then ReLU if asked. x [N, H, W, Cin], filter [k, k, Cin, Cout]. */
export function conv2dBias(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  bias: tf.Tensor,
  activation: ConvActivation = 'linear',
): tf.Tensor4D {
  return tf.engine().runKernel(KERNEL, { x, filter, bias }, { activation }) as tf.Tensor4D;
}
