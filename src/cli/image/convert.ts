/**
 * `strata image convert`: copy any image (or an internal snapshot of one) to
 * a new raw or qcow2 image. Sparse: ranges the source reports as zero are
 * skipped, and so is any all-zero granule of data (qemu-img's -S default).
 * With -c, whole qcow2 clusters are written compressed.
 */
import { createImage, openImageLayers } from '../../../formats/image-format.js';
import { Qcow2Image } from '../../../formats/qcow2/image.js';
import { readRangesOf, type BlockDevice } from '../../device/block-device.js';
import { err } from '../../errors.js';
import { checkFormatName } from './common.js';
import { createOptionsFrom } from './create.js';
import { dataExtents, KnownExtents } from './file-extents.js';

/** Largest piece read (and zero-scanned) at once. */
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

/** Batches read and written concurrently: reads run ahead of the (in-order) writes. */
const DEPTH = 4;
/**
 * Data bytes per batch (the buffers are as large as the pieces were before
 * batching). A batch's ranges are read with one readRanges call, so ranges
 * whose data lie next to each other in the source file share a system call
 * (formats/raw/file-pieces.ts): the 1 MiB data runs of a sparse qcow2 that
 * qemu-img wrote cost one thread-pool hand-off per 4 MiB instead of one
 * each. Larger batches or more of them measured no faster here: more
 * buffer memory to touch, and a batch writes only once all its reads are in.
 */
const BATCH = 4 * 1024 * 1024;

/** dataRanges grouped into batches of at most BATCH bytes (a larger range alone). */
async function* batches(src: BlockDevice, granule: number): AsyncGenerator<Array<[number, number]>> {
  let cur: Array<[number, number]> = [];
  let bytes = 0;
  for await (const r of dataRanges(src, granule)) {
    const len = r[1] - r[0];
    if (cur.length && bytes + len > BATCH) {
      yield cur;
      cur = [];
      bytes = 0;
    }
    cur.push(r);
    bytes += len;
  }
  if (cur.length) yield cur;
}

/** Runs of non-zero granules of `data` (relative offsets), merged. */
function dataRuns(data: Buffer, granule: number, zero: Buffer): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  let runStart = -1;
  for (let g = 0; g < data.length; g += granule) {
    const ge = Math.min(data.length, g + granule);
    // Data granules usually differ in their first bytes: test those before the whole granule.
    const isZero = data[g] === 0 && data[ge - 1] === 0 && data.subarray(g, ge).equals(zero.subarray(0, ge - g));
    if (isZero) {
      if (runStart >= 0) runs.push([runStart, g]);
      runStart = -1;
    } else if (runStart < 0) runStart = g;
  }
  if (runStart >= 0) runs.push([runStart, data.length]);
  return runs;
}

/**
 * Copy `src` into a fresh `dst` (which reads as zeroes), skipping zeroes.
 * `granule` is the unit of zero detection and of compressed writes.
 *
 * Pipeline: up to DEPTH batches (of at most BATCH data bytes) are in flight
 * at once: their reads run concurrently, and their writes are issued
 * strictly in guest order (a batch issues its writes only after the
 * previous batch issued its own), so a qcow2 output allocates its clusters
 * in guest order and large sequential runs stay contiguous on the host. A
 * batch's buffer is reused once its writes resolved.
 */
export async function copySparse(
  src: BlockDevice,
  dst: BlockDevice,
  o: { granule: number; compress?: (off: number, data: Buffer) => Promise<void>; onProgress?: (done: number) => void; noSync?: boolean },
): Promise<void> {
  const zero = Buffer.alloc(o.granule);
  // A range is at most CHUNK long before rounding out to granules at both ends.
  const bufSize = Math.max(BATCH, CHUNK + 2 * o.granule);
  const spare: Buffer[] = [];
  const inflight = new Set<Promise<void>>();
  let failure: { e: unknown } | null = null;
  let issued: Promise<void> = Promise.resolve(); // resolves once the previous batch issued its writes
  let done = 0;
  const put = (off: number, data: Buffer) => (o.compress ? o.compress(off, data) : dst.write(off, data));
  for await (const batch of batches(src, o.granule)) {
    while (inflight.size >= DEPTH) await Promise.race(inflight);
    if (failure) break;
    const buf = spare.pop() ?? Buffer.allocUnsafe(bufSize);
    const prev = issued;
    let myTurnDone!: () => void;
    issued = new Promise<void>((r) => (myTurnDone = r));
    const task = (async () => {
      let writes: Promise<void>[] = [];
      try {
        await readRangesOf(
          src,
          batch.map(([a, z]) => [a, z - a] as const),
          buf,
        );
        const pieces: Array<[number, Buffer, Array<[number, number]>]> = [];
        let at = 0;
        for (const [a, z] of batch) {
          const data = buf.subarray(at, at + z - a);
          at += z - a;
          pieces.push([a, data, dataRuns(data, o.granule, zero)]);
        }
        await prev;
        if (failure) return;
        for (const [a, data, runs] of pieces) for (const [s, e] of runs) writes.push(put(a + s, data.subarray(s, e)));
      } catch (e) {
        failure ??= { e }; // before the next batch's turn: it must not write after a failed read
        throw e;
      } finally {
        myTurnDone();
      }
      await Promise.all(writes);
      spare.push(buf);
      done = Math.max(done, batch[batch.length - 1]![1]);
      o.onProgress?.(done);
    })().catch((e) => {
      failure ??= { e };
    });
    const t = task.finally(() => inflight.delete(t));
    inflight.add(t);
  }
  await Promise.all(inflight);
  if (failure) throw (failure as { e: unknown }).e;
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
  // Who does which I/O (memory file systems; on disks everything goes through
  // the thread pool): the output is written on this thread, synchronously
  // (qcow2 syncIo, raw inline writes), by one writer in guest order, while the
  // source's large reads run ahead in the thread pool, on the other core.
  // Writes to one file serialize on its inode lock, so writes issued from
  // several pool threads only contend (measured: spinning on the lock, +0.1 s
  // of CPU per GiB) and add hand-offs; reads take no lock and cost about half
  // of what writes do here (a write also allocates the page cache), so it is
  // the reads that move off the thread that also runs the JS.
  const format = checkFormatName(o.format);
  // A raw file cannot report its holes itself (formats/raw): ask the file
  // system (a perl process, see file-extents.ts; never fails: null =
  // unknown), while the source is opened and the output created. Started
  // first when the source is known to be raw.
  const early = format === 'raw' && o.snapshot === undefined ? dataExtents(srcPath) : null;
  const { device, layers } = await openImageLayers(srcPath, { format, readOnly: true });
  let src: BlockDevice = device;
  let view: Qcow2Image | null = null;
  try {
    const holes = o.snapshot === undefined && layers.length === 1 && layers[0]!.format === 'raw' ? (early ?? dataExtents(layers[0]!.path)) : null;
    if (o.snapshot !== undefined) {
      const top = layers[0]!;
      if (!top.qcow2) throw err.inval('-l needs a qcow2 source');
      const { openSnapshotView } = await import('../../../formats/qcow2/snapshot.js');
      view = await openSnapshotView(top.path, parseSnapshotArg(o.snapshot), top.qcow2.backing);
      src = view;
    }
    const size = src.info().size;
    // The output has one sequential writer that never reads it back: write-behind.
    const dst = await createImage(dstPath, { ...co, format: outFmt, size, unsafeNoSync: noSync, writeBehind: true, syncIo: true });
    const data = await holes;
    if (data) src = new KnownExtents(device, data);
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

