/**
 * Whether a path lives on a memory filesystem (tmpfs, ramfs), where a read
 * or write is a memcpy that never waits for a disk: formats/ do small I/O
 * synchronously there (raw-device.ts, ../qcow2/io.ts). src/device has the
 * same check for the pool's devices (formats/ import nothing from src/ but
 * the BlockDevice interface and errors, and src/pool nothing from formats/).
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
