// How an all-reduce cuts an array: W contiguous segments (segment j is reduced by rank j), each cut into
// chunks that fit one NATS message. Every rank derives the same layout from (length, W, chunkElems), so a
// receiver knows exactly which chunks to expect from whom: a missing one is detected, never summed as zero.

export interface Layout {
  readonly length: number;
  readonly worldSize: number;
  readonly chunkElems: number;
  /** segStart[j] .. segStart[j+1] is segment j (length W+1). */
  readonly segStart: number[];
  /** Number of chunks of segment j. */
  readonly chunks: number[];
}

/** `segments`: the segments' starts and the end (W + 1 non-decreasing offsets from 0 to `length`) when
 *  the caller's data is arranged so that rank j's part is segment j (a reduce-scatter or all-gather);
 *  default W near-equal segments. */
export function layout(
  length: number,
  worldSize: number,
  chunkElems: number,
  segments?: readonly number[],
): Layout {
  if (!Number.isInteger(length) || length < 0) throw new RangeError(`layout: length ${length}`);
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new RangeError(`layout: worldSize ${worldSize}`);
  if (!Number.isInteger(chunkElems) || chunkElems < 1)
    throw new RangeError(`layout: chunkElems ${chunkElems}`);
  if (segments && !validSegments(segments, length, worldSize))
    throw new RangeError(`layout: segments [${segments.join(', ')}] do not cut ${length} into ${worldSize}`);
  const segStart: number[] = segments ? [...segments] : [];
  if (!segments) for (let j = 0; j <= worldSize; j++) segStart.push(Math.floor((j * length) / worldSize));
  const chunks = segStart.slice(0, -1).map((s, j) => Math.ceil((segStart[j + 1]! - s) / chunkElems));
  return { length, worldSize, chunkElems, segStart, chunks };
}

/** [start, end) of chunk c of segment j, as indices into the whole array. */
export function chunkRange(l: Layout, seg: number, c: number): [number, number] {
  const start = l.segStart[seg]! + c * l.chunkElems;
  return [start, Math.min(start + l.chunkElems, l.segStart[seg + 1]!)];
}

export function validSegments(segments: readonly number[], length: number, worldSize: number): boolean {
  return (
    segments.length === worldSize + 1 &&
    segments[0] === 0 &&
    segments[worldSize] === length &&
    segments.every((x, j) => Number.isInteger(x) && (j === 0 || x >= segments[j - 1]!))
  );
}
