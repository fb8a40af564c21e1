/**
 * `strata import FILE POOL/VOL` and `strata export VOL FILE`: whole-disk
 * copies between image files and pool volumes, sparse-aware both ways.
 * Image formats come from formats/ (raw; qcow2 through formats/image-format).
 */
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { err } from '../errors.js';
import type { BlockDevice } from '../device/block-device.js';
import { copyDevice, type CopyProgress } from '../device/copy.js';
import { createImage, openImage } from '../../formats/image-format.js';
import type { PoolManager } from './services.js';

export type ImageFormat = 'raw' | 'qcow2';

async function openSource(path: string, format: ImageFormat | undefined): Promise<BlockDevice> {
  return openImage(path, { format, readOnly: true });
}

async function createTarget(path: string, format: ImageFormat, size: number): Promise<BlockDevice> {
  return createImage(path, { format, size });
}

export async function importImage(
  mgr: PoolManager,
  file: string,
  volume: string,
  o: { format?: ImageFormat; blocksize?: string; props?: Record<string, string>; sparse?: boolean; onProgress?: (p: CopyProgress) => void; command?: string },
): Promise<{ size: number; dataBytes: number }> {
  const path = resolve(file);
  if (!existsSync(path)) throw err.noent(`cannot open '${file}': no such file`);
  if (!(await stat(path)).isFile()) throw err.inval(`'${file}' is not a regular file`);
  const src = await openSource(path, o.format);
  try {
    const pool = await mgr.poolFor(volume);
    if (pool.dir.has(volume)) throw err.exist(`cannot import into '${volume}': dataset already exists`);
    const bs = Number(o.blocksize ? (await import('../pool/dataset/units.js')).parseSize(o.blocksize) : 16384);
    const size = Math.ceil(src.info().size / bs) * bs;
    if (size === 0) throw err.inval(`'${file}' is empty`);
    await mgr.create(volume, { volsize: String(size), sparse: o.sparse ?? true, blocksize: String(bs), props: o.props, command: o.command });
    const { volume: vol, release } = await mgr.openVolume(volume);
    try {
      const r = await copyDevice(src, vol, { onProgress: o.onProgress, length: src.info().size });
      return { size, dataBytes: r.dataBytes };
    } finally {
      release();
    }
  } finally {
    await src.close();
  }
}

export async function exportImage(
  mgr: PoolManager,
  volume: string,
  file: string,
  o: { format?: ImageFormat; onProgress?: (p: CopyProgress) => void },
): Promise<{ size: number; dataBytes: number }> {
  const { volume: vol, release } = await mgr.openVolume(volume, { readOnly: true });
  try {
    const size = vol.info().size;
    const dst = await createTarget(resolve(file), o.format ?? 'raw', size);
    try {
      const r = await copyDevice(vol, dst, { onProgress: o.onProgress });
      return { size, dataBytes: r.dataBytes };
    } finally {
      await dst.close();
    }
  } finally {
    release();
  }
}
