// The public surface of data/: datasets, the two preprocessors of docs/model.md, the batch loader with exact
// resume, the synthetic shapes set, and the BPE tokenizer. Import from here, not from the files.
export {
  type CaptionDraw,
  type Dataset,
  type DatasetItem,
  type SkipReason,
  type Split,
  DatasetFormatError,
  DatasetIndexError,
  DatasetNotFoundError,
  SKIP_REASONS,
  parseCaptionLines,
  pickCaption,
} from './dataset.ts';
export { openDataset, type OpenDatasetOptions } from './open-dataset.ts';
export { ShapesDataset } from './shapes-dataset.ts';
export {
  type Batch,
  type LoadBatchOptions,
  BatchOptionsError,
  EmptyDatasetError,
  NoDecodableItemError,
  loadBatch,
  rankSlice,
} from './batch.ts';
export { epochOrder, itemAt } from './order.ts';
export {
  type CropPlan,
  ImageShapeError,
  ResolutionError,
  applyPlan,
  areaResize,
  areaResizeUint8,
  cropRgb,
  flipHorizontal,
  planDvae,
  planTransformer,
  preprocessDvae,
  preprocessTransformer,
  roundHalfEven,
} from './preprocess.ts';
export {
  type DecodedImage,
  IMAGE_EXTENSIONS,
  ImageDecodeError,
  MAX_ASPECT,
  MIN_ASPECT,
  aspectOk,
  decodeImage,
  encodePng,
  probeImage,
} from './image.ts';
export * from './shapes.ts';
export {
  type EncodeOptions,
  type Encoded,
  FULL_BYTE_ALPHABET_MIN_VOCAB,
  PAD_ID,
  PAD_TOKEN,
  Tokenizer,
  TokenizerFormatError,
  TokenizerJSON,
  TokenizerOptionsError,
  TokenizerTrainingError,
  UNK_ID,
  UNK_TOKEN,
  datasetCaptions,
  normalizeCaption,
  trainTokenizer,
} from './tokenizer.ts';
export {
  type TarEntry,
  type TarMember,
  TarFormatError,
  TarNameError,
  listTar,
  readTarMember,
  tarBytes,
  writeTar,
} from './tar.ts';
