/**
 * StorageError: the one error type that crosses layers.
 *
 * Every layer below the edges throws StorageError with an errno-style code.
 * Only the edges translate: nbd/ to NBD error numbers, iscsi/ to SCSI sense,
 * api/ to HTTP status, cli/ to an exit code and a one-line message. Anything
 * that is not a StorageError reaching an edge is a bug and is reported as EIO
 * (with the stack logged, never shown to a user).
 */
export type ErrorCode =
  | 'EIO' // device error or checksum mismatch that redundancy could not repair
  | 'ENOSPC' // pool (or quota) full
  | 'EPERM' // write to a read-only device/export
  | 'EINVAL' // bad argument: offset, length, flag, property value, name
  | 'EOVERFLOW' // request larger than the device allows
  | 'ENOTSUP' // operation or feature not supported
  | 'ESHUTDOWN' // server/pool is shutting down
  | 'ENOENT' // no such pool/dataset/snapshot/file
  | 'EEXIST' // name already taken
  | 'EBUSY' // in use (pool lock, exported volume, held snapshot, clones)
  | 'ENXIO' // device missing / pool cannot be opened
  | 'EFAULT'; // corrupt on-disk structure (not a pool, bad image)

export class StorageError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'StorageError';
  }
}

export function isStorageError(e: unknown): e is StorageError {
  return e instanceof StorageError;
}

export const err = {
  io: (m: string, cause?: unknown) => new StorageError('EIO', m, { cause }),
  nospc: (m = 'out of space') => new StorageError('ENOSPC', m),
  perm: (m = 'read-only') => new StorageError('EPERM', m),
  inval: (m: string) => new StorageError('EINVAL', m),
  overflow: (m: string) => new StorageError('EOVERFLOW', m),
  notsup: (m: string) => new StorageError('ENOTSUP', m),
  shutdown: (m = 'shutting down') => new StorageError('ESHUTDOWN', m),
  noent: (m: string) => new StorageError('ENOENT', m),
  exist: (m: string) => new StorageError('EEXIST', m),
  busy: (m: string) => new StorageError('EBUSY', m),
  nxio: (m: string) => new StorageError('ENXIO', m),
  corrupt: (m: string) => new StorageError('EFAULT', m),
};

/**
 * All of `ps`, and only then the first failure if any: a caller that sees the
 * rejection may reuse the buffers those operations fill (or close what they
 * use), so none of them may still be running by then.
 */
export async function settleAll(ps: ReadonlyArray<Promise<unknown>>): Promise<void> {
  const r = await Promise.allSettled(ps);
  for (const x of r) if (x.status === 'rejected') throw x.reason;
}

/**
 * The promise an async version of `now` would return: for functions that answer
 * at once when they can (an array) and with a promise otherwise (readManyNow,
 * readBlocksNow). A throw becomes a rejection, as from an async function, since
 * callers may combine the promise with others before awaiting it.
 */
export function promiseOf<T>(now: () => T[] | Promise<T[]>): Promise<T[]> {
  try {
    const got = now();
    return Array.isArray(got) ? Promise.resolve(got) : got;
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Turn a Node.js system error (ENOENT, ENOSPC, EIO...) into a StorageError. */
export function fromSystemError(e: unknown, what: string): StorageError {
  if (e instanceof StorageError) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const msg = `${what}: ${(e as Error | undefined)?.message ?? String(e)}`;
  switch (code) {
    case 'ENOENT':
      return new StorageError('ENOENT', msg, { cause: e });
    case 'ENOSPC':
    case 'EDQUOT':
      return new StorageError('ENOSPC', msg, { cause: e });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new StorageError('EPERM', msg, { cause: e });
    case 'EEXIST':
      return new StorageError('EEXIST', msg, { cause: e });
    case 'EBUSY':
      return new StorageError('EBUSY', msg, { cause: e });
    case 'EINVAL':
      return new StorageError('EINVAL', msg, { cause: e });
    default:
      return new StorageError('EIO', msg, { cause: e });
  }
}

/** CLI exit codes (only cli/ uses these). */
export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'EINVAL':
      return 2;
    default:
      return 1;
  }
}
