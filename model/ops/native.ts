// Direct calls into native TensorFlow (tfjs-node's 'tensorflow' backend), for the fused ops in this folder.
//
// Why: every tfjs op costs an engine dispatch (tape, scopes, kernel lookup) on top of TensorFlow's own
// eager dispatch, and several tfjs-node kernels are compositions (its Step, the ReLU gradient, is six
// TensorFlow ops; FusedConv2D is three). A fused op here is ONE tfjs kernel with ONE tape node whose
// forward and backward issue the few TensorFlow kernels that do the work (ReluGrad, BiasAddGrad,
// Conv2DBackprop*, …) directly. Only used inside kernel and gradient functions, where nothing is taped.
// Every function has a plain tfjs twin in the op that uses it; `ops.test.ts` checks they agree.
import * as tf from '@tensorflow/tfjs';

const debug = (msg: string): void => {
  if (process.env.DALLE_LOG_LEVEL === 'debug') process.stderr.write(`[debug] native ops: ${msg}\n`);
};

interface TfeAttr {
  name: string;
  type: number;
  value: unknown;
}

/** The part of tfjs-node's NodeJSKernelBackend (and its binding's constants) used here. */
interface NodeBackend {
  binding: {
    TF_ATTR_STRING: number;
    TF_ATTR_INT: number;
    TF_ATTR_FLOAT: number;
    TF_ATTR_BOOL: number;
    TF_ATTR_TYPE: number;
    TF_FLOAT: number;
    TF_INT32: number;
    TF_INT64: number;
  };
  /** tfjs-node-gpu on a machine where TensorFlow found a GPU. */
  isUsingGpuDevice?: boolean;
  executeSingleOutput(name: string, attrs: TfeAttr[], inputs: tf.TensorInfo[]): tf.Tensor;
  /** Stores values in the backend alone (no engine tensor); `disposeData` releases them. */
  write(values: Int32Array, shape: number[], dtype: 'int32' | 'int64'): tf.DataId;
  disposeData(dataId: tf.DataId, force: boolean): void;
  executeMultipleOutputs(name: string, attrs: TfeAttr[], inputs: tf.TensorInfo[], n: number): tf.Tensor[];
}

/** Distinct int32 constants kept at once (see NativeOps.int). */
const MAX_INTS = 4096;

/** TensorFlow ops by name, with the attributes our models use. */
export class NativeOps {
  private readonly b: NodeBackend['binding'];
  private readonly f32: TfeAttr;
  private readonly nhwc: TfeAttr;
  /** oneDNN's fused kernels are usable: the binding passes list attributes, the library has them, and
   *  TensorFlow runs on the CPU (on a GPU, soft placement would run these CPU kernels between copies). */
  private fusedKernels: boolean;
  /** The oneDNN kernels of passes without a gradient (layer norm, matmul + GELU) are usable. */
  private inferenceKernels = true;

  constructor(private readonly backend: NodeBackend) {
    this.b = backend.binding;
    this.fusedKernels = !backend.isUsingGpuDevice;
    this.f32 = { name: 'T', type: this.b.TF_ATTR_TYPE, value: this.b.TF_FLOAT };
    this.nhwc = { name: 'data_format', type: this.b.TF_ATTR_STRING, value: 'NHWC' };
  }

  private run(name: string, inputs: tf.TensorInfo[], attrs: TfeAttr[] = [this.f32]): tf.Tensor {
    if (!listener) return this.backend.executeSingleOutput(name, attrs, inputs);
    const t0 = performance.now();
    const out = this.backend.executeSingleOutput(name, attrs, inputs);
    listener(
      name,
      performance.now() - t0,
      inputs.map((i) => i.shape),
    );
    return out;
  }

  /** int32 inputs (shapes, sizes, axes) by value: written to the backend once and kept, so TensorFlow
   *  gets the same handle every call instead of a tensor built, uploaded and disposed per kernel (10–30 µs
   *  each, and a step issues a hundred). They live in the backend's storage only (the engine does not
   *  count them as tensors). Past MAX_INTS distinct values the cache starts over; the values it held are
   *  released one start-over later, so none is released between two `int` calls feeding one kernel. */
  private ints = new Map<string, tf.TensorInfo>();
  private retiredInts: tf.TensorInfo[] = [];
  private int(values: number[], scalar = false): tf.TensorInfo {
    const key = scalar ? `s${values[0]}` : values.join(',');
    let t = this.ints.get(key);
    if (!t) {
      if (this.ints.size >= MAX_INTS) {
        for (const old of this.retiredInts) this.backend.disposeData(old.dataId, true);
        this.retiredInts = [...this.ints.values()];
        this.ints = new Map();
      }
      const shape = scalar ? [] : [values.length];
      t = { dataId: this.backend.write(Int32Array.from(values), shape, 'int32'), shape, dtype: 'int32' };
      this.ints.set(key, t);
    }
    return t;
  }

  private convAttrs(stride: number, pad: 'SAME' | 'VALID'): TfeAttr[] {
    const int = this.b.TF_ATTR_INT;
    return [
      this.f32,
      { name: 'strides', type: int, value: [1, stride, stride, 1] },
      { name: 'padding', type: this.b.TF_ATTR_STRING, value: pad },
      this.nhwc,
      { name: 'dilations', type: int, value: [1, 1, 1, 1] },
      { name: 'use_cudnn_on_gpu', type: this.b.TF_ATTR_BOOL, value: true },
    ];
  }

  conv2d(x: tf.Tensor, w: tf.Tensor, stride = 1, pad: 'SAME' | 'VALID' = 'SAME'): tf.Tensor {
    return this.run('Conv2D', [x, w], this.convAttrs(stride, pad));
  }

  /** conv2d(x, w) + b (then ReLU) in one oneDNN kernel: TensorFlow's eager mode maps Conv2D to oneDNN
   *  but not its fused form (_FusedConv2D runs Eigen's, 5× slower on these shapes), so the oneDNN
   *  kernel is named directly. Falls back for good to Conv2D → BiasAdd (→ Relu), the same values, when
   *  the library lacks it or the binding cannot pass list attributes (infra/native/patches). */
  conv2dBias(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, relu: boolean): tf.Tensor {
    if (this.fusedKernels) {
      const attrs = [
        ...this.convAttrs(1, 'SAME'),
        { name: 'num_args', type: this.b.TF_ATTR_INT, value: 1 },
        { name: 'TArgs', type: this.b.TF_ATTR_TYPE, value: [this.b.TF_FLOAT] },
        { name: 'fused_ops', type: this.b.TF_ATTR_STRING, value: relu ? ['BiasAdd', 'Relu'] : ['BiasAdd'] },
        { name: '_kernel', type: this.b.TF_ATTR_STRING, value: 'MklNameChangeOp' },
      ];
      try {
        return this.run('_MklNativeFusedConv2D', [x, w, b], attrs);
      } catch (e) {
        this.fusedKernels = false;
        debug(
          `oneDNN fused conv unavailable, using Conv2D + BiasAdd: ${String((e as Error)?.message).split('\n')[0]}`,
        );
      }
    }
    const conv = this.conv2d(x, w);
    const out = this.biasAdd(conv, b);
    conv.dispose();
    if (!relu) return out;
    const y = this.relu(out);
    out.dispose();
    return y;
  }

  /** ∂L/∂w of conv2d(x, w) given dy. */
  conv2dFilterGrad(
    x: tf.Tensor,
    wShape: number[],
    dy: tf.Tensor,
    stride = 1,
    pad: 'SAME' | 'VALID' = 'SAME',
  ) {
    return this.run('Conv2DBackpropFilter', [x, this.int(wShape), dy], this.convAttrs(stride, pad));
  }

  /** ∂L/∂x of conv2d(x, w) given dy. */
  conv2dInputGrad(xShape: number[], w: tf.Tensor, dy: tf.Tensor, stride = 1, pad: 'SAME' | 'VALID' = 'SAME') {
    return this.run('Conv2DBackpropInput', [this.int(xShape), w, dy], this.convAttrs(stride, pad));
  }

  /** x + b over the last axis. */
  biasAdd(x: tf.Tensor, b: tf.Tensor): tf.Tensor {
    return this.run('BiasAdd', [x, b], [this.f32, this.nhwc]);
  }

  /** Σ of dy over every axis but the last (the gradient of biasAdd's bias). */
  biasAddGrad(dy: tf.Tensor): tf.Tensor {
    return this.run('BiasAddGrad', [dy], [this.f32, this.nhwc]);
  }

  relu(x: tf.Tensor): tf.Tensor {
    return this.run('Relu', [x]);
  }

  /** dy where the ReLU's input (or output) y is > 0, else 0. */
  reluGrad(dy: tf.Tensor, y: tf.Tensor): tf.Tensor {
    return this.run('ReluGrad', [dy, y]);
  }

  /** Nearest-neighbour resize of NHWC images to [h, w] (×2 repeats every pixel 2×2). */
  resizeNearest(x: tf.Tensor, h: number, w: number): tf.Tensor {
    const attrs = [
      this.f32,
      { name: 'align_corners', type: this.b.TF_ATTR_BOOL, value: false },
      { name: 'half_pixel_centers', type: this.b.TF_ATTR_BOOL, value: false },
    ];
    return this.run('ResizeNearestNeighbor', [x, this.int([h, w])], attrs);
  }

  /** Gradient of resizeNearest: dy summed back onto the [h, w] source pixels. */
  resizeNearestGrad(dy: tf.Tensor, h: number, w: number): tf.Tensor {
    const attrs = [
      this.f32,
      { name: 'align_corners', type: this.b.TF_ATTR_BOOL, value: false },
      { name: 'half_pixel_centers', type: this.b.TF_ATTR_BOOL, value: false },
    ];
    return this.run('ResizeNearestNeighborGrad', [dy, this.int([h, w])], attrs);
  }

  /** x along axis 0 into pieces of the given sizes. */
  splitV(x: tf.Tensor, sizes: number[]): tf.Tensor[] {
    const attrs = [
      { name: 'num_split', type: this.b.TF_ATTR_INT, value: sizes.length },
      this.f32,
      { name: 'Tlen', type: this.b.TF_ATTR_TYPE, value: this.b.TF_INT32 },
    ];
    const inputs = [x, this.int(sizes), this.int([0], true)];
    return this.backend.executeMultipleOutputs('SplitV', attrs, inputs, sizes.length);
  }

  /** Float32 tensors joined along axis 0. */
  concat(xs: tf.Tensor[]): tf.Tensor {
    const attrs = [
      { name: 'N', type: this.b.TF_ATTR_INT, value: xs.length },
      { name: 'Tidx', type: this.b.TF_ATTR_TYPE, value: this.b.TF_INT32 },
      this.f32,
    ];
    return this.run('ConcatV2', [...xs, this.int([0], true)], attrs);
  }

  reshape(x: tf.Tensor, shape: number[]): tf.Tensor {
    const attrs = [this.f32, { name: 'Tshape', type: this.b.TF_ATTR_TYPE, value: this.b.TF_INT32 }];
    return this.run('Reshape', [x, this.int(shape)], attrs);
  }

  sigmoid(x: tf.Tensor): tf.Tensor {
    return this.run('Sigmoid', [x]);
  }

  /** dy·y·(1 − y) for y = σ(x): the gradient of the sigmoid from its output. */
  sigmoidGrad(y: tf.Tensor, dy: tf.Tensor): tf.Tensor {
    return this.run('SigmoidGrad', [y, dy]);
  }

  /** TensorFlow's StatelessRandomUniformFullInt words (as int32) for each int64 seed pair, one row per
   *  pair: [seeds.length, n]. A seed is its two int64s as four 32-bit words, low word first; what the
   *  kernel computes from them is `statelessWords` in random/philox.ts. */
  statelessWords(seeds: readonly (readonly number[])[], n: number): tf.Tensor {
    const int32 = { name: 'T', type: this.b.TF_ATTR_TYPE, value: this.b.TF_INT32 };
    const attrs = [
      { name: 'dtype', type: this.b.TF_ATTR_TYPE, value: this.b.TF_INT32 },
      int32,
      { name: 'Tseed', type: this.b.TF_ATTR_TYPE, value: this.b.TF_INT64 },
    ];
    const rows = seeds.map((words) => {
      const seed: tf.TensorInfo = {
        dataId: this.backend.write(Int32Array.from(words), [2], 'int64'),
        shape: [2],
        dtype: 'int32', // (tfjs has no int64; the backend keeps the type it was written with)
      };
      try {
        return this.run('StatelessRandomUniformFullInt', [this.int([n]), seed], attrs);
      } finally {
        this.backend.disposeData(seed.dataId, true);
      }
    });
    const packed = this.run('Pack', rows, [
      { name: 'N', type: this.b.TF_ATTR_INT, value: rows.length },
      int32,
      { name: 'axis', type: this.b.TF_ATTR_INT, value: 0 },
    ]);
    tf.dispose(rows);
    return packed;
  }

  /** (x >> bits) | 1 on int32 (arithmetic shift): an odd integer, the rounding offset built in. */
  shiftRightOdd(x: tf.Tensor, bits: number): tf.Tensor {
    const int32 = [{ name: 'T', type: this.b.TF_ATTR_TYPE, value: this.b.TF_INT32 }];
    const shifted = this.run('RightShift', [x, this.int([bits], true)], int32);
    try {
      return this.run('BitwiseOr', [shifted, this.int([1], true)], int32);
    } finally {
      shifted.dispose();
    }
  }

  square(x: tf.Tensor): tf.Tensor {
    return this.run('Square', [x]);
  }

  /** a·s for a number s. */
  scale(a: tf.Tensor, s: number): tf.Tensor {
    return this.withScalar(s, (t) => this.run('Mul', [a, t]));
  }

  /** a + s for a number s. */
  shift(a: tf.Tensor, s: number): tf.Tensor {
    return this.withScalar(s, (t) => this.run('AddV2', [a, t]));
  }

  private withScalar<T>(value: number, f: (t: tf.Tensor) => T): T {
    const t = tf.scalar(value, 'float32');
    try {
      return f(t);
    } finally {
      t.dispose();
    }
  }

  /** a·b of 2-D tensors, either transposed first. */
  matMul(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
    const attrs = [
      this.f32,
      { name: 'transpose_a', type: this.b.TF_ATTR_BOOL, value: transposeA },
      { name: 'transpose_b', type: this.b.TF_ATTR_BOOL, value: transposeB },
    ];
    return this.run('MatMul', [a, b], attrs);
  }

  /** Attributes of a fused x·w + b (then `fusedOps` after BiasAdd), neither operand transposed. */
  private fusedMatMulAttrs(fusedOps: string[]): TfeAttr[] {
    return [
      this.f32,
      { name: 'transpose_a', type: this.b.TF_ATTR_BOOL, value: false },
      { name: 'transpose_b', type: this.b.TF_ATTR_BOOL, value: false },
      { name: 'num_args', type: this.b.TF_ATTR_INT, value: 1 },
      { name: 'fused_ops', type: this.b.TF_ATTR_STRING, value: ['BiasAdd', ...fusedOps] },
    ];
  }

  /** x·w + b for 2-D x: one kernel (_FusedMatMul) where the binding passes list attributes. */
  matMulBias(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor {
    if (this.fusedKernels) {
      try {
        return this.run('_FusedMatMul', [x, w, b], this.fusedMatMulAttrs([]));
      } catch (e) {
        this.fusedKernels = false;
        debug(
          `fused matmul unavailable, using MatMul + BiasAdd: ${String((e as Error)?.message).split('\n')[0]}`,
        );
      }
    }
    const y = this.matMul(x, w);
    const out = this.biasAdd(y, b);
    y.dispose();
    return out;
  }

  /** gelu(x·w + b) (tanh form) for 2-D x in one oneDNN kernel, for passes that record no gradient (its
   *  backward would need x·w + b); undefined where the kernel is unavailable (the caller composes it). */
  matMulBiasGelu(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor | undefined {
    if (!this.fusedKernels || !this.inferenceKernels) return undefined;
    const attrs = [
      ...this.fusedMatMulAttrs(['GeluApproximate']),
      { name: 'is_filter_const', type: this.b.TF_ATTR_BOOL, value: false },
      { name: '_kernel', type: this.b.TF_ATTR_STRING, value: 'MklNameChangeOp' },
    ];
    return this.tryInference('_MklNativeFusedMatMul', [x, w, b], attrs);
  }

  /** Layer norm of the rows of 2-D x, (x − μ)·rsqrt(σ² + ε)·g + b, in one oneDNN kernel, for passes that
   *  record no gradient (the backward needs the row statistics); undefined where it is unavailable. */
  layerNormRows(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, eps: number): tf.Tensor | undefined {
    if (!this.fusedKernels || !this.inferenceKernels || x.rank !== 2) return undefined;
    // The kernel is registered without a label; TensorFlow's eager oneDNN rewrite would add one unless
    // the attribute is there, empty.
    const attrs = [
      this.f32,
      { name: 'epsilon', type: this.b.TF_ATTR_FLOAT, value: eps },
      { name: '_kernel', type: this.b.TF_ATTR_STRING, value: '' },
    ];
    return this.tryInference('_MklLayerNorm', [x, g, b], attrs);
  }

  /** Runs a oneDNN inference kernel; the first failure turns them all off (the composed forms remain). */
  private tryInference(name: string, inputs: tf.TensorInfo[], attrs: TfeAttr[]): tf.Tensor | undefined {
    try {
      return this.run(name, inputs, attrs);
    } catch (e) {
      this.inferenceKernels = false;
      debug(`oneDNN ${name} unavailable, composing it: ${String((e as Error)?.message).split('\n')[0]}`);
      return undefined;
    }
  }

  /** Batched a·b over the leading axes (broadcast), either operand's last two axes transposed. */
  batchMatMul(a: tf.Tensor, b: tf.Tensor, adjX = false, adjY = false): tf.Tensor {
    const attrs = [
      this.f32,
      { name: 'adj_x', type: this.b.TF_ATTR_BOOL, value: adjX },
      { name: 'adj_y', type: this.b.TF_ATTR_BOOL, value: adjY },
    ];
    return this.run('BatchMatMulV2', [a, b], attrs);
  }

  transpose(x: tf.Tensor, perm: number[]): tf.Tensor {
    const attrs = [this.f32, { name: 'Tperm', type: this.b.TF_ATTR_TYPE, value: this.b.TF_INT32 }];
    return this.run('Transpose', [x, this.int(perm)], attrs);
  }

  /** The `num` slices of x along `axis`, that axis removed. */
  unstack(x: tf.Tensor, num: number, axis = 0): tf.Tensor[] {
    const attrs = [
      this.f32,
      { name: 'num', type: this.b.TF_ATTR_INT, value: num },
      { name: 'axis', type: this.b.TF_ATTR_INT, value: axis },
    ];
    return this.backend.executeMultipleOutputs('Unpack', attrs, [x], num);
  }

  /** Equal-shaped tensors stacked along a new `axis`. */
  stack(xs: tf.Tensor[], axis = 0): tf.Tensor {
    const attrs = [
      { name: 'N', type: this.b.TF_ATTR_INT, value: xs.length },
      this.f32,
      { name: 'axis', type: this.b.TF_ATTR_INT, value: axis },
    ];
    return this.run('Pack', xs, attrs);
  }

  /** Σ or mean over `axes`, the reduced axes kept (size 1) or not. */
  reduce(op: 'Sum' | 'Mean', x: tf.Tensor, axes: number[], keepDims: boolean): tf.Tensor {
    const attrs = [
      { name: 'keep_dims', type: this.b.TF_ATTR_BOOL, value: keepDims },
      this.f32,
      { name: 'Tidx', type: this.b.TF_ATTR_TYPE, value: this.b.TF_INT32 },
    ];
    return this.run(op, [x, this.int(axes)], attrs);
  }

  sub(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    return this.run('Sub', [a, b]);
  }

  rsqrt(x: tf.Tensor): tf.Tensor {
    return this.run('Rsqrt', [x]);
  }

  /** softmax over the last axis. */
  softmax(x: tf.Tensor): tf.Tensor {
    return this.run('Softmax', [x]);
  }

  /** Per-row cross-entropy of logits [m, V] against int32 labels [m], and its gradient
   *  softmax(logits) − onehot(labels), [m, V]. */
  sparseSoftmaxCrossEntropy(logits: tf.Tensor, labels: tf.Tensor): [tf.Tensor, tf.Tensor] {
    const attrs = [this.f32, { name: 'Tlabels', type: this.b.TF_ATTR_TYPE, value: this.b.TF_INT32 }];
    const [loss, backprop] = this.backend.executeMultipleOutputs(
      'SparseSoftmaxCrossEntropyWithLogits',
      attrs,
      [logits, labels],
      2,
    );
    return [loss!, backprop!];
  }

  add(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    return this.run('AddV2', [a, b]);
  }

  mul(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    return this.run('Mul', [a, b]);
  }
}

type OpListener = (name: string, ms: number, inputShapes: number[][]) => void;
let listener: OpListener | undefined;

/** Calls `f` after every TensorFlow kernel run from here (for profiles: tf.profile sees only the fused
 *  op that issued them); undefined stops it. */
export function onNativeOp(f: OpListener | undefined): void {
  listener = f;
}

let cached: { backend: unknown; ops: NativeOps } | undefined;

/** TensorFlow's ops when `backend` (default: the active one) is tfjs-node's, else undefined. */
export function nativeOps(backend: unknown = tf.getBackend() === 'tensorflow' ? tf.backend() : undefined) {
  if (!backend || typeof (backend as NodeBackend).executeSingleOutput !== 'function') return undefined;
  if (cached?.backend !== backend) cached = { backend, ops: new NativeOps(backend as NodeBackend) };
  return cached.ops;
}
