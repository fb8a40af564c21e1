/** `strata image commit` and `strata image rebase`: moving data along a backing chain. */
import { openImage, openImageLayers, probeFormat } from '../../../formats/image-format.js';
import { Kind, makeEmpty, Qcow2Image, resolveBacking, setBackingFile } from '../../../formats/qcow2/index.js';
import { err } from '../../errors.js';
import { checkFormatName } from './common.js';
import { progress } from './convert.js';

const CHUNK = 4 * 1024 * 1024;

/**
 * Commit the top image into its backing file: every range the top holds
 * (data or zero clusters) is written into the backing chain's top, then,
 * unless -d, the top is emptied so it reads through again.
 */
export async function commitCommand(file: string, o: { format?: string; keep?: boolean; progress?: boolean }): Promise<void> {
  const format = checkFormatName(o.format) ?? (await probeFormat(file));
  if (format !== 'qcow2') throw err.inval(`'${file}' has no backing file (format ${format})`);
  const top = await Qcow2Image.open(file, { readOnly: !!o.keep });
  try {
    if (!top.header.backingFile) throw err.inval(`image '${file}' does not have a backing file`);
    const bpath = resolveBacking(file, top.header.backingFile);
    const bfmt = checkFormatName(top.header.backingFormat ?? undefined) ?? (await probeFormat(bpath));
    const base = await openImage(bpath, { format: bfmt });
    try {
      const size = Math.min(top.size, base.info().size);
      if (top.size > base.info().size) throw err.notsup('commit into a smaller backing file is not supported');
      const bar = await progress(!!o.progress, size);
      for (let pos = 0; pos < size; ) {
        const segs = await top.ownSegments(pos, Math.min(CHUNK * 16, size - pos));
        for (const s of segs) {
          if (s.kind === Kind.Unalloc) continue;
          if (s.kind === Kind.Zero) {
            await base.writeZeroes(s.offset, s.length, { mayTrim: true });
            continue;
          }
          for (let p = s.offset; p < s.offset + s.length; p += CHUNK) {
            const n = Math.min(CHUNK, s.offset + s.length - p);
            await base.write(p, await top.readOwn(p, n));
          }
        }
        const last = segs[segs.length - 1]!;
        pos = last.offset + last.length;
        bar.update(pos);
      }
      await base.flush();
      bar.stop();
    } finally {
      await base.close();
    }
    if (!o.keep) await makeEmpty(top);
    process.stdout.write('Image committed.\n');
  } finally {
    await top.close();
  }
}

/**
 * Rebase: with -u only the header changes. Otherwise, wherever the image
 * does not hold data itself and the old and new backing chains differ, the
 * old content is copied into the image first, so the guest sees the same
 * disk; then the header is switched.
 */
export async function rebaseCommand(file: string, o: { format?: string; backing?: string; backingFormat?: string; unsafe?: boolean; progress?: boolean }): Promise<void> {
  if (o.backing === undefined) throw err.inval('rebase needs -b BACKING ("" to remove it)');
  const format = checkFormatName(o.format) ?? (await probeFormat(file));
  if (format !== 'qcow2') throw err.inval('rebase needs a qcow2 image');
  const nb = o.backing === '' ? null : o.backing;
  let nbFormat: 'raw' | 'qcow2' | null = null;
  if (nb) nbFormat = checkFormatName(o.backingFormat) ?? (await probeFormat(resolveBacking(file, nb)));
  if (o.unsafe) {
    const img = await Qcow2Image.open(file);
    try {
      await setBackingFile(img, nb, nbFormat);
    } finally {
      await img.close();
    }
    return;
  }
  const { device, layers } = await openImageLayers(file, { format: 'qcow2' });
  try {
    const top = layers[0]!.qcow2!;
    const newBase = nb ? await openImage(resolveBacking(file, nb), { format: nbFormat!, readOnly: true }) : null;
    try {
      const size = top.size;
      const nsize = newBase?.info().size ?? 0;
      const oldBase = top.backing;
      const osize = oldBase?.info().size ?? 0;
      const bar = await progress(!!o.progress, size);
      const cs = top.clusterSize;
      for (let pos = 0; pos < size; ) {
        const segs = await top.ownSegments(pos, Math.min(CHUNK * 16, size - pos));
        for (const s of segs) {
          if (s.kind !== Kind.Unalloc) continue;
          for (let p = s.offset; p < s.offset + s.length; ) {
            const n = Math.min(CHUNK, s.offset + s.length - p);
            const oldData = Buffer.alloc(n);
            if (oldBase && p < osize) await oldBase.read(p, Math.min(n, osize - p), oldData);
            const newData = Buffer.alloc(n);
            if (newBase && p < nsize) await newBase.read(p, Math.min(n, nsize - p), newData);
            // Copy only the clusters that differ, so the image stays as sparse as possible.
            for (let c = 0; c < n; c += cs) {
              const e = Math.min(n, c + cs);
              if (!oldData.subarray(c, e).equals(newData.subarray(c, e))) await top.write(p + c, oldData.subarray(c, e));
            }
            p += n;
          }
        }
        const last = segs[segs.length - 1]!;
        pos = last.offset + last.length;
        bar.update(pos);
      }
      await setBackingFile(top, nb, nbFormat);
      bar.stop();
    } finally {
      await newBase?.close();
    }
  } finally {
    await device.close();
  }
}
