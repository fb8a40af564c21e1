/**
 * `strata image convert`: copy any image (or an internal snapshot of one) to
 * a new raw or qcow2 image. Sparse: ranges the source reports as zero are
 * skipped, and so is any all-zero granule of data (qemu-img's -S default).
 * With -c, whole qcow2 clusters are written compressed.
 */
import { createImage, openImageLayers } from '../../../formats/image-format.js';
import { openSnapshotView, Qcow2Image } from '../../../formats/qcow2/index.js';
import type { BlockDevice } from '../../device/block-device.js';
import { err } from '../../errors.js';
import { checkFormatName } from './common.js';
import { createOptionsFrom } from './create.js';

const CHUNK = 4 * 1024 * 1024;

export interface Progress {
  update(done: number): void;
  stop(): void;
}

/** A progress bar on a TTY (stderr), nothing otherwise (cli-progress is loaded only then). */
export async function progress(enabled: boolean, total: number): Promise<Progress> {
  if (!enabled || !process.stderr.isTTY) return { update() {}, stop() {} };
  const { SingleBar } = await import('cli-progress');
  const bar = new SingleBar({ stream: process.stderr, format: '    ({percentage}/100%) [{bar}]', hideCursor: true }, undefined);
  bar.start(100, 0);
  return {
    update: (d) => bar.update(total ? Math.floor((100 * d) / total) : 100),
    stop: () => {
      bar.update(100);
      bar.stop();
    },
  };
}

function parseSnapshotArg(l: string): string {
  if (l.startsWith('snapshot.name=')) return l.slice('snapshot.name='.length);
  if (l.startsWith('snapshot.id=')) return l.slice('snapshot.id='.length);
  return l;
}

/** Ranges to copy, aligned to the granule, skipping what the source reports as zero. */
async function* dataRanges(src: BlockDevice, granule: number): AsyncGenerator<[number, number]> {
  const size = src.info().size;
  let pos = 0;
  let last = 0; // never emit a range twice when granules straddle extents
  while (pos < size) {
    const ext = await src.blockStatus(pos, Math.min(size - pos, 1024 * CHUNK));
    if (ext.length === 0) throw err.io('block status returned nothing');
    for (const e of ext) {
      if (e.zero) continue;
      for (let p = e.offset; p < e.offset + e.length; ) {
        const end = Math.min(e.offset + e.length, (Math.floor(p / CHUNK) + 1) * CHUNK);
        const a = Math.max(last, Math.floor(p / granule) * granule);
        const z = Math.min(size, Math.ceil(end / granule) * granule);
        if (z > a) yield [a, z];
        last = Math.max(last, z);
        p = end;
      }
    }
    const tail = ext[ext.length - 1]!;
    pos = tail.offset + tail.length;
  }
}

/**
 * Copy `src` into a fresh `dst` (which reads as zeroes), skipping zeroes.
 * `granule` is the unit of zero detection and of compressed writes. The
 * next chunk is read while the current one is written (two buffers).
 */
export async function copySparse(
  src: BlockDevice,
  dst: BlockDevice,
  o: { granule: number; compress?: (off: number, data: Buffer) => Promise<void>; onProgress?: (done: number) => void; noSync?: boolean },
): Promise<void> {
  const zero = Buffer.alloc(o.granule);
  const bufs = [Buffer.allocUnsafe(CHUNK + o.granule), Buffer.allocUnsafe(CHUNK + o.granule)];
  const writeRuns = async (a: number, data: Buffer) => {
    let runStart = -1;
    const flushRun = async (stop: number) => {
      if (runStart < 0) return;
      const piece = data.subarray(runStart, stop);
      if (o.compress) await o.compress(a + runStart, piece);
      else await dst.write(a + runStart, piece);
      runStart = -1;
    };
    for (let g = 0; g < data.length; g += o.granule) {
      const ge = Math.min(data.length, g + o.granule);
      if (data.subarray(g, ge).equals(zero.subarray(0, ge - g))) await flushRun(g);
      else if (runStart < 0) runStart = g;
    }
    await flushRun(data.length);
    o.onProgress?.(a + data.length);
  };
  let writing: Promise<void> = Promise.resolve();
  let k = 0;
  for await (const [a, z] of dataRanges(src, o.granule)) {
    const reading = src.read(a, z - a, bufs[k++ % 2]!.subarray(0, z - a));
    await writing; // the buffer we read into next time is free once this is done
    const data = await reading;
    writing = writeRuns(a, data);
  }
  await writing;
  o.onProgress?.(src.info().size);
  if (!o.noSync) await dst.flush();
}

export async function convertCommand(
  srcPath: string,
  dstPath: string,
  o: { format?: string; outputFormat?: string; compress?: boolean; options?: string[]; snapshot?: string; progress?: boolean; cache?: string },
): Promise<void> {
  const outFmt = checkFormatName(o.outputFormat ?? 'raw')!;
  if (o.compress && outFmt !== 'qcow2') throw err.inval('compression (-c) needs -O qcow2');
  const co = createOptionsFrom(outFmt, o.options);
  const cache = o.cache ?? 'writeback';
  if (!['writeback', 'unsafe', 'none', 'writethrough', 'directsync'].includes(cache)) throw err.inval(`invalid cache mode '${cache}'`);
  // Only 'unsafe' changes anything: every other mode ends with the output durable.
  const noSync = cache === 'unsafe';
  if (co.backingFile) throw err.notsup('convert with a backing file for the output is not supported');
  const { device, layers } = await openImageLayers(srcPath, { format: checkFormatName(o.format), readOnly: true });
  let src: BlockDevice = device;
  let view: Qcow2Image | null = null;
  try {
    if (o.snapshot !== undefined) {
      const top = layers[0]!;
      if (!top.qcow2) throw err.inval('-l needs a qcow2 source');
      view = await openSnapshotView(top.path, parseSnapshotArg(o.snapshot), top.qcow2.backing);
      src = view;
    }
    const size = src.info().size;
    const dst = await createImage(dstPath, { ...co, format: outFmt, size, unsafeNoSync: noSync });
    try {
      const bar = await progress(!!o.progress, size);
      const granule = dst instanceof Qcow2Image ? dst.clusterSize : 65536;
      await copySparse(src, dst, {
        granule,
        compress: o.compress ? (off, data) => (dst as Qcow2Image).writeCompressed(off, data) : undefined,
        onProgress: (d) => bar.update(d),
        noSync,
      });
      bar.stop();
    } finally {
      await dst.close();
    }
  } finally {
    if (view) await view.close();
    await device.close();
  }
}

