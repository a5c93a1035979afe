// The caption tokenizer of stage 2 (docs/model.md: lowercased caption, BPE, ≤ textLen tokens, 10% BPE dropout
// in training). Byte-level BPE, trained with the `tokenizers` library (Hugging Face), applied by our own
// encoder over the trained merges.
//
// Why our own encoder: the library's BPE dropout draws from an unseeded thread-local RNG, so a resumed run
// would segment captions differently from the original. Ours applies merges exactly as the library's
// `Word::merge_all` does (lowest merge rank first, ties by position; with dropout, a popped merge is skipped
// with probability p and skipped merges come back after the next applied one), drawing from an RNG keyed
// by the caller's seed. Without dropout both give identical ids (tested).
//
// Ids: 0 = <pad> (reserved for the transformer's per-position padding; never produced by `encode`),
// 1 = <unk> (a byte not in the vocabulary; only possible when the vocabulary is too small to hold all
// 256 bytes), then the byte alphabet, then merge results in merge order. Every id is < vocabSize.
// No start-of-text id, and none is added later: text position 0 holds the first caption token
// (so it is never predicted; docs/model.md, "Where we differ from the paper").
//
// Training: the library's Node binding exposes no trainer options (its `train(files)` uses the default
// BpeTrainer: vocab 30,000, min frequency 0). BPE training is greedy, so the first M merges of that run
// are exactly the merges of a run stopped at a smaller vocabulary; we keep the prefix that fits
// `vocabSize`. Vocabularies above ~30,000 therefore come out smaller than asked (`size` reports it).
// The library trains in a child process: its `train` blocks the event loop (heartbeats of a Temporal
// activity would stop) and its progress bar writes to stdout (it would corrupt `--json` output).
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import type { Dataset } from './dataset.ts';
import { BYTE_TO_CHAR, byteLevelToText, byteLevelWords } from './byte-level.ts';
import { rngFor, type Rng } from '../random/index.ts';

export const PAD_ID = 0;
export const UNK_ID = 1;
export const PAD_TOKEN = '<pad>';
export const UNK_TOKEN = '<unk>';
/** From this vocabulary size up, all 256 bytes are in the alphabet (no <unk> ever); below it, only the
 *  bytes seen in training are, so a tiny vocabulary is not spent on bytes no caption uses. */
export const FULL_BYTE_ALPHABET_MIN_VOCAB = 1024;

/** Lowercase (docs/model.md), Unicode NFC, whitespace runs → one space, trimmed. Applied before training and encoding. */
export function normalizeCaption(caption: string): string {
  return caption.normalize('NFC').toLowerCase().replace(/\s+/g, ' ').trim();
}

export interface EncodeOptions {
  /** BPE dropout probability in [0, 1); 0 (default) = deterministic segmentation. Training only. */
  dropout?: number;
  /** Key of the dropout draws; required when dropout > 0 (derive it with mixSeed(trainSeed, step, position)). */
  seed?: number;
}

export interface Encoded {
  ids: Int32Array; // [textLen], 0-padded
  /** Tokens kept (≤ textLen). */
  length: number;
  /** True when the caption had more than textLen tokens and the tail was cut. */
  truncated: boolean;
  /** Tokens before truncation. */
  fullLength: number;
  /** <unk> tokens among the kept ones (bytes outside a small vocabulary). */
  unknown: number;
}

/** The serialized tokenizer, saved with checkpoints and model bundles. */
export const TokenizerJSON = z.strictObject({
  format: z.literal('dalle-bpe'),
  version: z.literal(1),
  /** Upper bound of ids (transformer.vocabSize). */
  vocabSize: z.number().int().positive(),
  /** id → token (byte-level characters); vocab[0] = <pad>, vocab[1] = <unk>. */
  vocab: z.array(z.string()),
  /** Merges in rank order. */
  merges: z.array(z.tuple([z.string(), z.string()])),
});
export type TokenizerJSON = z.infer<typeof TokenizerJSON>;

/** Bad arguments to encode/train (the message names the argument). */
export class TokenizerOptionsError extends Error {
  override name = 'TokenizerOptionsError';
  readonly fatal = true;
  constructor(
    readonly option: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`tokenizer ${option} = ${JSON.stringify(value)}: ${rule}`);
  }
}

/** A serialized tokenizer that is not self-consistent. */
export class TokenizerFormatError extends Error {
  override name = 'TokenizerFormatError';
  constructor(readonly problem: string) {
    super(`not a valid dalle-bpe tokenizer: ${problem}`);
  }
}

/** Training could not produce a tokenizer (no captions, vocabulary too small for the alphabet). */
export class TokenizerTrainingError extends Error {
  override name = 'TokenizerTrainingError';
  constructor(readonly problem: string) {
    super(`cannot train the BPE tokenizer: ${problem}`);
  }
}

/** Run the library's BPE trainer (byte-level pre-tokenizer, default trainer) on `corpus` in a child
 *  Node process, saving its tokenizer.json at `out`. */
async function trainInChild(corpus: string, out: string): Promise<void> {
  const lib = createRequire(import.meta.url).resolve('tokenizers');
  const script = [
    `const { Tokenizer, BPE, byteLevelPreTokenizer } = require(${JSON.stringify(lib)});`,
    'const [corpus, out] = process.argv.slice(1);',
    'const t = new Tokenizer(BPE.empty());',
    't.setPreTokenizer(byteLevelPreTokenizer(true, true));',
    't.train([corpus]);',
    't.save(out);',
  ].join('\n');
  const child = spawn(process.execPath, ['-e', script, corpus, out], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0)
    throw new TokenizerTrainingError(`the tokenizers trainer exited with ${code}: ${stderr.trim()}`);
}

interface Merge {
  rank: number;
  id: number;
}

/** Min-heap of pending merges ordered by (rank, position), as the library's BinaryHeap<Merge>. */
class MergeQueue {
  private rank: number[] = [];
  private pos: number[] = [];
  private id: number[] = [];

  get size(): number {
    return this.rank.length;
  }

  private less(a: number, b: number): boolean {
    return this.rank[a] < this.rank[b] || (this.rank[a] === this.rank[b] && this.pos[a] < this.pos[b]);
  }

  private swap(a: number, b: number): void {
    [this.rank[a], this.rank[b]] = [this.rank[b], this.rank[a]];
    [this.pos[a], this.pos[b]] = [this.pos[b], this.pos[a]];
    [this.id[a], this.id[b]] = [this.id[b], this.id[a]];
  }

  push(rank: number, pos: number, id: number): void {
    this.rank.push(rank);
    this.pos.push(pos);
    this.id.push(id);
    let i = this.rank.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  pop(): { rank: number; pos: number; id: number } {
    const top = { rank: this.rank[0], pos: this.pos[0], id: this.id[0] };
    const last = this.rank.length - 1;
    this.swap(0, last);
    this.rank.pop();
    this.pos.pop();
    this.id.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.rank.length && this.less(l, m)) m = l;
      if (r < this.rank.length && this.less(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return top;
  }
}

export class Tokenizer {
  /** Ids actually used (≤ vocabSize). */
  readonly size: number;
  private readonly ids: Map<string, number>;
  private readonly pairs: Map<number, Merge>; // key a·size + b
  private readonly cache = new Map<string, number[]>();

  private constructor(
    /** Upper bound of ids, from config (transformer.vocabSize). */
    readonly vocabSize: number,
    private readonly vocab: readonly string[],
    private readonly merges: readonly (readonly [string, string])[],
  ) {
    this.size = vocab.length;
    this.ids = new Map(vocab.map((t, i) => [t, i]));
    this.pairs = new Map();
    for (const [rank, [a, b]] of merges.entries()) {
      const ia = this.ids.get(a);
      const ib = this.ids.get(b);
      const out = this.ids.get(a + b);
      if (ia === undefined || ib === undefined || out === undefined) {
        throw new TokenizerFormatError(
          `merge ${rank} (${JSON.stringify(a)}, ${JSON.stringify(b)}) uses or makes a token not in the vocabulary`,
        );
      }
      const key = ia * this.size + ib;
      if (!this.pairs.has(key)) this.pairs.set(key, { rank, id: out });
    }
  }

  /** Train byte-level BPE on captions (normalized first: lowercased). At most `vocabSize` ids, counting
   *  <pad> and <unk>. Deterministic: the same captions give the same tokenizer. */
  static async train(
    captions: Iterable<string> | AsyncIterable<string>,
    opts: { vocabSize: number },
  ): Promise<Tokenizer> {
    const { vocabSize } = opts;
    if (!Number.isInteger(vocabSize) || vocabSize < 3)
      throw new TokenizerOptionsError('vocabSize', vocabSize, 'must be an integer ≥ 3');
    const lines: string[] = [];
    for await (const c of captions) {
      const n = normalizeCaption(c);
      if (n) lines.push(n);
    }
    if (lines.length === 0) throw new TokenizerTrainingError('no non-empty captions');
    const dir = await mkdtemp(join(tmpdir(), 'dalle-bpe-'));
    try {
      const corpus = join(dir, 'captions.txt');
      await writeFile(corpus, lines.join('\n') + '\n');
      await trainInChild(corpus, join(dir, 'tokenizer.json'));
      const saved = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8')) as {
        model: { vocab: Record<string, number>; merges: (string | [string, string])[] };
      };
      const merges = saved.model.merges.map((m) =>
        typeof m === 'string' ? (m.split(' ', 2) as [string, string]) : m,
      );
      return Tokenizer.fromTrained(saved.model.vocab, merges, vocabSize);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Keep the longest merge prefix whose tokens fit vocabSize (see the file header). */
  private static fromTrained(
    trainedVocab: Record<string, number>,
    merges: [string, string][],
    vocabSize: number,
  ): Tokenizer {
    const made = new Set(merges.map(([a, b]) => a + b));
    // The trainer's alphabet, minus the newline byte: it comes from our corpus file's line breaks, and
    // normalized captions never contain one.
    const seen = Object.keys(trainedVocab).filter((t) => !made.has(t) && t !== BYTE_TO_CHAR[0x0a]);
    const alphabet =
      vocabSize >= FULL_BYTE_ALPHABET_MIN_VOCAB
        ? [...BYTE_TO_CHAR]
        : seen.sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
    if (vocabSize < 2 + alphabet.length) {
      throw new TokenizerTrainingError(
        `vocabSize ${vocabSize} cannot hold <pad>, <unk> and the ${alphabet.length} bytes the captions use`,
      );
    }
    const vocab = [PAD_TOKEN, UNK_TOKEN, ...alphabet];
    const have = new Set(vocab);
    const kept: [string, string][] = [];
    for (const [a, b] of merges) {
      const t = a + b;
      if (!have.has(t)) {
        if (vocab.length >= vocabSize) break;
        vocab.push(t);
        have.add(t);
      }
      kept.push([a, b]);
    }
    return new Tokenizer(vocabSize, vocab, kept);
  }

  /** Load a tokenizer saved by `toJSON` (object or JSON text). Throws TokenizerFormatError. */
  static fromJSON(json: unknown): Tokenizer {
    let data: unknown = json;
    if (typeof json === 'string') {
      try {
        data = JSON.parse(json);
      } catch (e) {
        throw new TokenizerFormatError(`not JSON: ${(e as Error).message}`);
      }
    }
    const r = TokenizerJSON.safeParse(data);
    if (!r.success)
      throw new TokenizerFormatError(
        r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '),
      );
    const { vocab, merges, vocabSize } = r.data;
    if (vocab[PAD_ID] !== PAD_TOKEN || vocab[UNK_ID] !== UNK_TOKEN)
      throw new TokenizerFormatError('vocab must start with <pad>, <unk>');
    if (vocab.length > vocabSize)
      throw new TokenizerFormatError(`${vocab.length} tokens exceed vocabSize ${vocabSize}`);
    if (new Set(vocab).size !== vocab.length) throw new TokenizerFormatError('vocab has duplicate tokens');
    return new Tokenizer(vocabSize, vocab, merges);
  }

  toJSON(): TokenizerJSON {
    return {
      format: 'dalle-bpe',
      version: 1,
      vocabSize: this.vocabSize,
      vocab: [...this.vocab],
      merges: this.merges.map(([a, b]) => [a, b]),
    };
  }

  /** The same tokenizer in the `tokenizers` library's tokenizer.json format (no dropout), for other tools. */
  toHuggingFaceJSON(): Record<string, unknown> {
    const byteLevel = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      // <pad> and <unk> live in the model vocabulary only: as added tokens the library would also match
      // their literal text inside captions, which our encoder (rightly) treats as plain bytes.
      added_tokens: [],
      normalizer: {
        type: 'Sequence',
        normalizers: [
          { type: 'NFC' },
          { type: 'Lowercase' },
          { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' },
          { type: 'Strip', strip_left: true, strip_right: true },
        ],
      },
      pre_tokenizer: byteLevel,
      post_processor: null,
      decoder: byteLevel,
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: UNK_TOKEN,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab: Object.fromEntries(this.vocab.map((t, i) => [t, i])),
        merges: this.merges.map(([a, b]) => [a, b]),
      },
    };
  }

  /** Token string of an id (byte-level characters), e.g. for debugging segmentations. */
  token(id: number): string | undefined {
    return this.vocab[id];
  }

  /** BPE of one byte-level word: the library's merge_all, with optional seeded dropout. */
  private bpe(word: string, dropout: number, rng: Rng | null): number[] {
    if (dropout === 0) {
      const hit = this.cache.get(word);
      if (hit) return hit;
    }
    const chars = [...word];
    const n = chars.length;
    const sym = chars.map((c) => this.ids.get(c) ?? UNK_ID);
    const prev = Int32Array.from({ length: n }, (_, i) => i - 1);
    const next = Int32Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
    const alive = new Uint8Array(n).fill(1);
    const q = new MergeQueue();
    for (let i = 0; i + 1 < n; i++) {
      const m = this.pairs.get(sym[i] * this.size + sym[i + 1]);
      if (m) q.push(m.rank, i, m.id);
    }
    const skipped: { rank: number; pos: number; id: number }[] = [];
    while (q.size > 0) {
      const top = q.pop();
      if (dropout > 0 && rng!.next() < dropout) {
        skipped.push(top);
        continue;
      }
      for (const s of skipped) q.push(s.rank, s.pos, s.id);
      skipped.length = 0;
      const p = top.pos;
      if (!alive[p] || next[p] === -1) continue;
      const r = next[p];
      const m = this.pairs.get(sym[p] * this.size + sym[r]);
      if (!m || m.id !== top.id) continue; // stale entry: a neighbour changed since it was queued
      sym[p] = top.id;
      alive[r] = 0;
      next[p] = next[r];
      if (next[r] !== -1) prev[next[r]] = p;
      if (prev[p] !== -1) {
        const left = this.pairs.get(sym[prev[p]] * this.size + sym[p]);
        if (left) q.push(left.rank, prev[p], left.id);
      }
      if (next[p] !== -1) {
        const right = this.pairs.get(sym[p] * this.size + sym[next[p]]);
        if (right) q.push(right.rank, p, right.id);
      }
    }
    const out: number[] = [];
    for (let i = 0; i < n; i++) if (alive[i]) out.push(sym[i]);
    if (dropout === 0 && this.cache.size < 100_000) this.cache.set(word, out);
    return out;
  }

  /** All tokens of a caption (normalized, lowercased), before truncation. */
  tokenize(caption: string, opts: EncodeOptions = {}): number[] {
    const dropout = opts.dropout ?? 0;
    if (!(dropout >= 0 && dropout < 1))
      throw new TokenizerOptionsError('dropout', dropout, 'must be in [0, 1)');
    if (dropout > 0 && (opts.seed === undefined || !Number.isSafeInteger(opts.seed) || opts.seed < 0)) {
      throw new TokenizerOptionsError(
        'seed',
        opts.seed,
        'a non-negative integer is required with dropout > 0, so segmentation is reproducible on resume',
      );
    }
    const rng = dropout > 0 ? rngFor(opts.seed!, 'bpe-dropout') : null;
    const text = normalizeCaption(caption);
    if (!text) return [];
    return byteLevelWords(text).flatMap((w) => this.bpe(w, dropout, rng));
  }

  /** Encode a caption into exactly textLen ids (0-padded). Truncation is reported, never silent.
   *  Dropout applies only when asked (training); the same (caption, seed) gives the same ids. */
  encode(caption: string, textLen: number, opts: EncodeOptions = {}): Encoded {
    if (!Number.isInteger(textLen) || textLen < 1)
      throw new TokenizerOptionsError('textLen', textLen, 'must be a positive integer');
    const all = this.tokenize(caption, opts);
    const length = Math.min(all.length, textLen);
    const ids = new Int32Array(textLen);
    let unknown = 0;
    for (let i = 0; i < length; i++) {
      ids[i] = all[i];
      if (all[i] === UNK_ID) unknown++;
    }
    return { ids, length, truncated: all.length > textLen, fullLength: all.length, unknown };
  }

  /** Ids → text (padding skipped, <unk> dropped). Inverse of encode for untruncated captions, up to normalization. */
  decode(ids: ArrayLike<number>): string {
    let s = '';
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id === PAD_ID || id === UNK_ID) continue;
      const t = this.vocab[id];
      if (t !== undefined) s += t;
    }
    return byteLevelToText(s).trim();
  }
}

/** Every caption of a dataset, in item order (e.g. to train the tokenizer on the train split). */
export async function* datasetCaptions(ds: Dataset): AsyncGenerator<string> {
  for (let i = 0; i < ds.size; i++) yield* await ds.captions(i);
}

/** Train the BPE tokenizer on all captions of a dataset (docs/model.md: the dataset's lowercased captions). */
export async function trainTokenizer(ds: Dataset, vocabSize: number): Promise<Tokenizer> {
  return Tokenizer.train(datasetCaptions(ds), { vocabSize });
}
