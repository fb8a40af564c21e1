/**
 * copyDevice: stream one BlockDevice into another, sparse-aware. Holes and
 * all-zero chunks of the source are not written (the target must read zero
 * there already: a new sparse file, a new volume), so a mostly empty disk
 * copies in time proportional to its data. Bounded memory: a few 4 MiB
 * chunks in flight.
 */
import type { BlockDevice } from './block-device.js';

export interface CopyProgress {
  done: number;
  total: number;
}

const CHUNK = 4 * 1024 * 1024;
const DEPTH = 4;

function allZero(b: Buffer): boolean {
  // Compare in 64 KiB slices against a shared zero buffer (memcmp speed).
  const z = ZERO;
  for (let i = 0; i < b.length; i += z.length) {
    const n = Math.min(z.length, b.length - i);
    if (b.compare(z, 0, n, i, i + n) !== 0) return false;
  }
  return true;
}
const ZERO = Buffer.alloc(64 * 1024);

export async function copyDevice(
  src: BlockDevice,
  dst: BlockDevice,
  opts: { onProgress?: (p: CopyProgress) => void; length?: number } = {},
): Promise<{ dataBytes: number }> {
  const total = opts.length ?? src.info().size;
  let dataBytes = 0;
  let done = 0;
  const inflight = new Set<Promise<void>>();
  let pos = 0;
  while (pos < total) {
    const extents = await src.blockStatus(pos, Math.min(total - pos, 1024 * CHUNK));
    if (extents.length === 0) break;
    for (const e of extents) {
      if (e.zero || e.hole) {
        done += e.length;
        opts.onProgress?.({ done, total });
        continue;
      }
      for (let off = e.offset; off < e.offset + e.length; off += CHUNK) {
        const n = Math.min(CHUNK, e.offset + e.length - off);
        const job = (async () => {
          const buf = await src.read(off, n);
          if (!allZero(buf)) {
            await dst.write(off, buf);
            dataBytes += n;
          }
          done += n;
          opts.onProgress?.({ done, total });
        })();
        inflight.add(job);
        void job.finally(() => inflight.delete(job)).catch(() => {});
        if (inflight.size >= DEPTH) await Promise.race(inflight);
      }
    }
    const last = extents[extents.length - 1]!;
    pos = last.offset + last.length;
  }
  await Promise.all(inflight);
  await dst.flush();
  return { dataBytes };
}
