/**
 * Whether a path lives on a memory filesystem (tmpfs, ramfs), where a read
 * or write is a memcpy that never waits for a disk. There, doing small I/O
 * synchronously on the calling thread costs less than libuv's thread-pool
 * hand-off (measured on the 2-core bench machine: about 2x the CPU per
 * 4 KiB op, and the context switches between the event loop and the pool
 * threads dominated cold-cache random reads of a pool). On disk-backed
 * filesystems a page-cache miss would stall the event loop, so callers keep
 * those asynchronous. (formats/raw/memory-backed.ts is its twin for formats/,
 * which import nothing from src/ but the BlockDevice interface and errors.)
 */
import { statfs } from 'node:fs/promises';

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

export async function memoryBacked(path: string): Promise<boolean> {
  try {
    const t = (await statfs(path)).type;
    return t === TMPFS_MAGIC || t === RAMFS_MAGIC;
  } catch {
    return false;
  }
}
