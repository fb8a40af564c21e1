/** Sizes as zfs/qemu-img users write them: 512, 4K, 16k, 1.5G, 2T (binary units). */
import { err } from '../../errors.js';

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4, P: 1024 ** 5, E: 1024 ** 6 };

export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]?)(?:i?B)?\s*$/i.exec(String(s));
  if (!m) throw err.inval(`invalid size '${s}'`);
  const v = Math.round(parseFloat(m[1]!) * UNITS[m[2]!.toUpperCase()]!);
  if (!Number.isSafeInteger(v)) throw err.inval(`size '${s}' is too large`);
  return v;
}

/** Human size like zfs list: 1.50G, 16K, 0B. */
export function formatSize(n: number): string {
  if (n < 1024) return `${n}B`;
  const units = ['K', 'M', 'G', 'T', 'P', 'E'];
  let v = n;
  let i = -1;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  // Like zfs_nicenum: exact values print bare ("16K"), others with three significant digits ("1.50G").
  const s = Number.isInteger(v) ? String(v) : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  return `${s}${units[i]}`;
}
