import type { DiffRange } from '../pool/dataset/snapshots.js';

/** Changed block ids as byte ranges ('M': cow and row know a block changed, not whether it became a hole). */
export function rangesOf(ids: number[], bs: number): DiffRange[] {
  const out: DiffRange[] = [];
  for (const id of [...ids].sort((x, y) => x - y)) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length === id * bs) last.length += bs;
    else out.push({ offset: id * bs, length: bs, change: 'M' });
  }
  return out;
}
