/**
 * blockExtents: the blockStatus answer of a block-addressed device, from the
 * blocks that are known (allocated or dirty; `data` false means a block known
 * to be a hole) in ascending order. Everything else in [first, end) is a hole.
 * Extents are clipped to [offset, offset + length) and merged.
 */
import type { Extent } from './block-device.js';

export function blockExtents(
  offset: number,
  length: number,
  blockSize: number,
  first: number,
  end: number,
  known: Iterable<[blkid: number, data: boolean]>,
): Extent[] {
  const out: Extent[] = [];
  const push = (start: number, stop: number, data: boolean) => {
    const s = Math.max(start, offset);
    const e = Math.min(stop, offset + length);
    if (e <= s) return;
    const last = out[out.length - 1];
    if (last && last.hole === !data && last.offset + last.length === s) last.length += e - s;
    else out.push({ offset: s, length: e - s, hole: !data, zero: !data });
  };
  let pos = first;
  for (const [b, data] of known) {
    if (b > pos) push(pos * blockSize, b * blockSize, false);
    push(b * blockSize, (b + 1) * blockSize, data);
    pos = b + 1;
  }
  if (pos < end) push(pos * blockSize, end * blockSize, false);
  return out;
}
