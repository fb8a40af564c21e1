/**
 * readOnlyView(): a filter that serves a device read-only (snapshot exports,
 * `readOnly` exports of writable volumes). Reads, block status and cache go
 * through; anything that could change data fails with EPERM before it
 * reaches the device. info() reports readOnly and no trim/zero support, so
 * protocol layers advertise the right flags.
 */
import { err } from '../errors.js';
import type { BlockDevice, BlockDeviceInfo } from './block-device.js';

export function readOnlyView(dev: BlockDevice): BlockDevice {
  const deny = async (): Promise<never> => {
    throw err.perm('the device is read-only');
  };
  return {
    info(): BlockDeviceInfo {
      return { ...dev.info(), readOnly: true, canTrim: false, canZero: false, canFastZero: false };
    },
    read: (offset, length, into) => dev.read(offset, length, into),
    write: deny,
    writeZeroes: deny,
    trim: deny,
    // Nothing can have been written through this view, but flushing the
    // underlying device is harmless and keeps FLUSH semantics simple.
    flush: () => dev.flush(),
    blockStatus: (offset, length) => dev.blockStatus(offset, length),
    cache: dev.cache ? (offset, length) => dev.cache!(offset, length) : undefined,
    // The view does not own the device: closing it must not close a volume
    // that other exports (or the writable export) still use.
    close: async () => {},
  };
}
