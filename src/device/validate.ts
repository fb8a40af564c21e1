/**
 * checked(): the single place where requests are validated before they reach
 * any BlockDevice implementation (range, alignment-free bounds, read-only,
 * request size). Everything below may trust offsets and lengths.
 */
import { err } from '../errors.js';
import type { BlockDevice, BlockDeviceInfo, Extent, WriteOptions, ZeroOptions } from './block-device.js';

function checkRange(info: BlockDeviceInfo, offset: number, length: number, op: string, sizeLimited = true): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw err.inval(`${op}: invalid offset ${offset} or length ${length}`);
  }
  if (offset + length > info.size) {
    throw err.inval(`${op}: range ${offset}+${length} is beyond the end of the device (${info.size} bytes)`);
  }
  if (sizeLimited && length > info.maxRequest) {
    throw err.overflow(`${op}: request of ${length} bytes exceeds the maximum of ${info.maxRequest}`);
  }
}

/** Wrap a device so every call is validated once. Wrapping twice is harmless but wasteful. */
export function checked(dev: BlockDevice): BlockDevice {
  const info = () => dev.info();
  const rw = (op: string) => {
    const i = info();
    if (i.readOnly) throw err.perm(`${op}: device is read-only`);
    return i;
  };
  return {
    info,
    async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
      checkRange(info(), offset, length, 'read');
      if (into && into.length < length) throw err.inval('read: destination buffer too small');
      if (length === 0) return into ? into.subarray(0, 0) : Buffer.alloc(0);
      return dev.read(offset, length, into);
    },
    async write(offset: number, data: Buffer, opts?: WriteOptions): Promise<void> {
      const i = rw('write');
      checkRange(i, offset, data.length, 'write');
      if (data.length === 0) return opts?.fua ? dev.flush() : undefined;
      return dev.write(offset, data, opts);
    },
    async writeZeroes(offset: number, length: number, opts?: ZeroOptions): Promise<void> {
      const i = rw('write zeroes');
      checkRange(i, offset, length, 'write zeroes', false);
      if (!i.canZero) throw err.notsup('write zeroes is not supported by this device');
      if (length === 0) return;
      return dev.writeZeroes(offset, length, opts);
    },
    async trim(offset: number, length: number, opts?: WriteOptions): Promise<void> {
      const i = rw('trim');
      checkRange(i, offset, length, 'trim', false);
      if (!i.canTrim) throw err.notsup('trim is not supported by this device');
      if (length === 0) return;
      return dev.trim(offset, length, opts);
    },
    async flush(): Promise<void> {
      return dev.flush();
    },
    async blockStatus(offset: number, length: number): Promise<Extent[]> {
      checkRange(info(), offset, length, 'block status', false);
      if (length === 0) return [];
      return dev.blockStatus(offset, length);
    },
    async cache(offset: number, length: number): Promise<void> {
      checkRange(info(), offset, length, 'cache', false);
      if (dev.cache) return dev.cache(offset, length);
    },
    close: () => dev.close(),
  };
}
