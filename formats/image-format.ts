/**
 * Image formats behind one door: probe a file's format, open it (with its
 * backing chain) as a BlockDevice, create one. Raw files come from
 * formats/raw, qcow2 from formats/qcow2.
 */
import { open } from 'node:fs/promises';
import type { BlockDevice } from '../src/device/block-device.js';
import { err, fromSystemError } from '../src/errors.js';
import { RawDevice } from './raw/index.js';
import { ChainDevice, openLayers, type Layer } from './qcow2/chain.js';
import { QCOW2_MAGIC } from './qcow2/constants.js';
import { createQcow2, type Qcow2CreateOptions } from './qcow2/create.js';
import { Qcow2Image } from './qcow2/image.js';

export type ImageFormatName = 'raw' | 'qcow2';

export interface OpenImageOptions {
  format?: string;
  readOnly?: boolean;
  /** Open only the named file, not its backing chain. */
  noBacking?: boolean;
  /** qcow2: synchronous I/O on memory file systems, for batch tools (see Qcow2OpenOptions.syncIo). */
  syncIo?: boolean;
}

function checkFormat(f: string | undefined): ImageFormatName | undefined {
  if (f === undefined || f === 'raw' || f === 'qcow2') return f;
  throw err.notsup(`image format '${f}' is not supported (raw, qcow2)`);
}

/** 'qcow2' if the file starts with the qcow2 magic, else 'raw' (as qemu-img probes). */
export async function probeFormat(path: string): Promise<ImageFormatName> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fromSystemError(e, `cannot open '${path}'`);
  }
  try {
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    return bytesRead === 4 && b.readUInt32BE(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
  } finally {
    await fh.close();
  }
}

const openRaw = (path: string, readOnly: boolean): Promise<BlockDevice> => RawDevice.open(path, { readOnly });

/** Open an image and its chain; the layers are returned for tools that need them (info, map, commit). */
export async function openImageLayers(path: string, opts: OpenImageOptions = {}): Promise<{ device: BlockDevice; layers: Layer[] }> {
  const format = checkFormat(opts.format);
  const layers = await openLayers(path, { readOnly: opts.readOnly, format, openRaw, probe: probeFormat, noBacking: opts.noBacking, syncIo: opts.syncIo });
  const device = layers.length === 1 ? layers[0]!.dev : new ChainDevice(layers);
  return { device, layers };
}

/** Open raw or qcow2 (probed unless `format` is given), with its backing chain, as one BlockDevice. */
export async function openImage(path: string, opts: OpenImageOptions = {}): Promise<BlockDevice> {
  return (await openImageLayers(path, opts)).device;
}

export interface CreateImageOptions extends Partial<Qcow2CreateOptions> {
  format: string;
  size: number;
  /** Return the new image alone, without opening its backing chain. */
  noOpenBacking?: boolean;
  /** qcow2: never sync (see Qcow2OpenOptions.unsafeNoSync). */
  unsafeNoSync?: boolean;
  /** qcow2: write-behind for a sole sequential writer (see Qcow2OpenOptions.writeBehind). */
  writeBehind?: boolean;
  /** qcow2: synchronous I/O on memory file systems, for batch tools (see Qcow2OpenOptions.syncIo). */
  syncIo?: boolean;
}

/** Create an image (overwriting) and open it read-write. */
export async function createImage(path: string, opts: CreateImageOptions): Promise<BlockDevice> {
  const format = checkFormat(opts.format) ?? 'raw';
  if (format === 'raw') return RawDevice.create(path, opts.size, { overwrite: true });
  await createQcow2(path, { ...opts, size: opts.size });
  if (opts.backingFile && !opts.noOpenBacking) return openImage(path, { format: 'qcow2' });
  return Qcow2Image.open(path, { unsafeNoSync: opts.unsafeNoSync, writeBehind: opts.writeBehind, syncIo: opts.syncIo });
}
