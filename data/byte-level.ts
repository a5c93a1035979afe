// GPT-2's byte-level pre-tokenization, as the `tokenizers` library's ByteLevel pre-tokenizer does it
// (add_prefix_space, use_regex): prefix a space, split with GPT-2's regex, map every UTF-8 byte to a
// printable character. We re-implement it (rather than call the library) because BPE dropout must be
// seeded, which the library's BPE cannot do; a test checks both agree.

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upward. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const printable = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCharCode(printable(b) ? b : 256 + n++);
  return out;
})();

export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/** GPT-2's split regex (the `tokenizers` ByteLevel pre-tokenizer uses the same pattern). */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

const utf8 = new TextEncoder();

/** Words of `text` in byte-level characters, e.g. "a red circle" → ["Ġa", "Ġred", "Ġcircle"]. */
export function byteLevelWords(text: string): string[] {
  const s = text.startsWith(' ') ? text : ' ' + text;
  const words: string[] = [];
  for (const m of s.matchAll(GPT2_SPLIT)) {
    let w = '';
    for (const b of utf8.encode(m[0])) w += BYTE_TO_CHAR[b];
    words.push(w);
  }
  return words;
}

/** Inverse of the byte mapping: byte-level characters → text (invalid UTF-8 becomes U+FFFD). */
export function byteLevelToText(chars: string): string {
  const bytes: number[] = [];
  for (const ch of chars) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b !== undefined) bytes.push(b);
  }
  return new TextDecoder('utf-8', { fatal: false }).decode(new Uint8Array(bytes));
}
