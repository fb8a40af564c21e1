/** Shared pieces of `strata image`: error reporting, sizes, -o option lists, opening images. */
import { fromSystemError, isStorageError, err, type StorageError } from '../../errors.js';

/** Thrown by a subcommand to exit with a given code after printing nothing more. */
export class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

function asStorageError(e: unknown): StorageError {
  if (isStorageError(e)) return e;
  if ((e as NodeJS.ErrnoException)?.code) return fromSystemError(e, (e as Error).message.split(':')[0] ?? 'I/O');
  return err.io((e as Error)?.message ?? String(e));
}

/**
 * Run a subcommand: one line `strata: message` on error, never a stack
 * trace; `errorCode` is the exit status for failures (qemu-img uses 1, and
 * 2 for compare, which reserves 1 for "different").
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>, errorCode = 1): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      if (e instanceof ExitCode) {
        process.exitCode = e.code;
        return;
      }
      const se = asStorageError(e);
      process.stderr.write(`strata: ${se.message}\n`);
      if (process.env['STRATA_DEBUG']) process.stderr.write(`${(e as Error)?.stack}\n`);
      process.exitCode = errorCode;
    }
  };
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };

/** qemu-img sizes: bytes, or a number with k/M/G/T/P/E (powers of 1024). */
export function parseImgSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([bkmgtpe]?)$/i.exec(s.trim());
  if (!m) throw err.inval(`invalid size '${s}': use bytes or a number with k, M, G, T`);
  const v = Math.ceil(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(v)) throw err.inval(`size '${s}' is too large`);
  return v;
}

export function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

/** Parse `-o a=b,c=d` lists (repeatable) into a map; `help` is refused. */
export function parseOptionList(list: string[] | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of list ?? []) {
    for (const kv of item.split(',')) {
      if (!kv) continue;
      const i = kv.indexOf('=');
      if (i < 0) throw err.inval(`invalid option '${kv}': expected name=value`);
      out.set(kv.slice(0, i).trim(), kv.slice(i + 1).trim());
    }
  }
  return out;
}

export function parseBool(name: string, v: string): boolean {
  if (['on', 'true', 'yes'].includes(v)) return true;
  if (['off', 'false', 'no'].includes(v)) return false;
  throw err.inval(`invalid value '${v}' for ${name}: use on or off`);
}

export function checkFormatName(f: string | undefined): 'raw' | 'qcow2' | undefined {
  if (f === undefined || f === 'raw' || f === 'qcow2') return f;
  throw err.notsup(`unknown or unsupported image format '${f}' (raw, qcow2)`);
}

/** Human sizes as qemu-img prints them ("2 MiB", "1.5 GiB"). */
export function humanSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${n} B`;
  const s = v.toPrecision(3);
  return `${s.includes('.') ? s.replace(/\.?0+$/, '') : s} ${units[i]}`;
}
