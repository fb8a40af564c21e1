/**
 * Persistent dirty bitmaps (bitmaps extension): we do not maintain them. We
 * only enumerate the clusters they use (so check counts them) and, when an
 * image is opened for writing, drop them: header first (no reference left),
 * then the clusters are freed. QEMU would otherwise see bitmaps we made
 * stale and, once the autoclear bit is cleared, report their clusters as
 * leaks.
 */
import { err } from '../../src/errors.js';
import { OFFSET_MASK } from './constants.js';
import type { ImageFile } from './io.js';
import type { BitmapsExtension } from './header.js';

/** Byte ranges [offset, length] of every structure of the bitmaps extension. */
export async function bitmapRanges(file: ImageFile, bm: BitmapsExtension, clusterSize: number): Promise<Array<[number, number]>> {
  const out: Array<[number, number]> = [];
  if (bm.directorySize === 0) return out;
  if (bm.directorySize > 64 * 1024 * 1024) throw err.corrupt('qcow2: bitmap directory is absurdly large');
  out.push([bm.directoryOffset, bm.directorySize]);
  const dir = await file.readExact(bm.directoryOffset, bm.directorySize, 'bitmap directory');
  let o = 0;
  for (let i = 0; i < bm.nbBitmaps && o + 24 <= dir.length; i++) {
    const tOff = Number(dir.readBigUInt64BE(o));
    const tSize = dir.readUInt32BE(o + 8);
    const nameLen = dir.readUInt16BE(o + 18);
    const extra = dir.readUInt32BE(o + 20);
    if (tSize * 8 > 64 * 1024 * 1024) throw err.corrupt('qcow2: bitmap table is absurdly large');
    out.push([tOff, tSize * 8]);
    const t = await file.readExact(tOff, tSize * 8, 'bitmap table');
    for (let k = 0; k < tSize; k++) {
      const d = Number(t.readBigUInt64BE(k * 8) & OFFSET_MASK);
      if (d) out.push([d, clusterSize]);
    }
    o += Math.ceil((24 + extra + nameLen) / 8) * 8;
  }
  return out;
}
