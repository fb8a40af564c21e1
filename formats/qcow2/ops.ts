/**
 * Whole-image operations that rewrite the header: resize (grow) and
 * changing the backing file name (rebase -u).
 */
import { err } from '../../src/errors.js';
import { MAX_L1_BYTES } from './constants.js';
import type { Qcow2Image } from './image.js';

/**
 * Grow the virtual disk. A larger L1 table is written and synced (with its
 * refcounts) before the header points at it; the old one is freed after.
 * Shrinking is refused: data past the new end would be lost.
 */
export function resizeImage(img: Qcow2Image, newSize: number): Promise<void> {
  return img.exclusive(async () => {
    if (img.readOnly) throw err.perm('cannot resize: image is open read-only');
    if (!Number.isSafeInteger(newSize) || newSize < 0) throw err.inval(`invalid size ${newSize}`);
    newSize = Math.ceil(newSize / 512) * 512;
    if (newSize < img.size) throw err.notsup('qcow2: shrinking an image is not supported');
    const refs = await img.loadRefcounts();
    const map = img.map;
    const cs = map.cs;
    await img.flushLocked();
    const need = Math.ceil(newSize / map.l2Span);
    if (need * 8 > MAX_L1_BYTES) throw err.inval('qcow2: image too large for this cluster size');
    if (need > map.l1.length) {
      const l1 = new Float64Array(need);
      l1.set(map.l1);
      const copied = new Uint8Array(need);
      copied.set(map.l1Copied);
      const off = await refs.allocate(Math.ceil((need * 8) / cs));
      const oldOff = map.l1Offset;
      const oldLen = map.l1.length;
      map.replaceL1(l1, copied, off);
      await img.file.write(off, map.l1Buffer());
      await refs.flush();
      img.header.l1TableOffset = off;
      img.header.l1Size = need;
      img.header.size = newSize;
      map.size = newSize;
      await img.writeHeader();
      if (oldLen > 0) for (let c = oldOff / cs; c < Math.ceil((oldOff + oldLen * 8) / cs); c++) refs.free(c);
      img.invalidateMetadata();
    } else {
      img.header.size = newSize;
      map.size = newSize;
      await img.writeHeader();
    }
    await img.flushLocked();
  });
}

/** Point the image at another backing file (or none). Data is not touched (rebase -u). */
export function setBackingFile(img: Qcow2Image, backing: string | null, format: string | null): Promise<void> {
  return img.exclusive(async () => {
    if (img.readOnly) throw err.perm('cannot change the backing file: image is open read-only');
    await img.flushLocked();
    img.header.backingFile = backing;
    img.header.backingFormat = backing ? format : null;
    await img.writeHeader();
  });
}

/**
 * Drop every cluster of the active state (after commit): all L1 entries
 * become zero, so everything reads from the backing file again. Refused with
 * internal snapshots (their clusters would need per-entry accounting we do
 * not do here). Order: the emptied L1 is durable before the drops apply.
 */
export function makeEmpty(img: Qcow2Image): Promise<void> {
  return img.exclusive(async () => {
    if (img.readOnly) throw err.perm('cannot empty: image is open read-only');
    if (img.snapshots.length > 0) throw err.notsup('qcow2: cannot empty an image that has internal snapshots');
    const refs = await img.loadRefcounts();
    const map = img.map;
    const cs = map.cs;
    await img.flushLocked();
    for (let i = 0; i < map.l1.length; i++) {
      const l2off = map.l1[i]!;
      if (!l2off) continue;
      const l2 = await map.cache.get(l2off);
      for (let j = 0; j < map.l2Entries; j++) {
        const e = map.decode(l2, j);
        if (e.compressed) {
          for (let c = Math.floor(e.host / cs); c <= Math.floor((e.host + e.csize - 1) / cs); c++) refs.free(c);
        } else if (e.host) refs.free(e.host / cs);
      }
      refs.free(l2off / cs);
      map.cache.discard(l2off);
      map.setL1(i, 0, false);
    }
    img.invalidateMetadata();
    await img.flushLocked();
  });
}
