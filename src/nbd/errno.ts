/**
 * StorageError code -> NBD error value (proto.md "Error values"). The only
 * place the NBD edge translates errors; anything that is not a
 * StorageError is a bug below us and goes out as EIO.
 */
import { isStorageError } from '../errors.js';
import * as C from './constants.js';

export function nbdErrno(e: unknown): number {
  if (!isStorageError(e)) return C.EIO;
  switch (e.code) {
    case 'EPERM':
      return C.EPERM;
    case 'ENOSPC':
      return C.ENOSPC;
    case 'EINVAL':
      return C.EINVAL;
    case 'EOVERFLOW':
      return C.EOVERFLOW;
    case 'ENOTSUP':
      return C.ENOTSUP;
    case 'ESHUTDOWN':
      return C.ESHUTDOWN;
    default:
      // EIO, and errors that have no NBD value (ENOENT: volume vanished,
      // EFAULT: corruption, ENXIO: device missing, EBUSY...).
      return C.EIO;
  }
}
