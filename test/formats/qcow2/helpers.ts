/** Test helpers: temp dirs, qemu-img/qemu-io, and reading a whole device. */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockDevice } from '../../../src/device/block-device.js';

export function tempDir(tag: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `strata-${tag}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** qemu-img without throwing: status and output. */
export function qemuImgStatus(...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Run qemu-io commands on an image (format given, so probing never guesses). */
export function qemuIo(file: string, cmds: string[], fmt = 'qcow2'): void {
  const args = ['-f', fmt];
  for (const c of cmds) args.push('-c', c);
  args.push(file);
  const out = execFileSync('qemu-io', args, { encoding: 'utf8' });
  if (/error|failed/i.test(out)) throw new Error(`qemu-io: ${out}`);
}

export interface QemuCheck {
  'check-errors': number;
  corruptions?: number;
  leaks?: number;
  'allocated-clusters'?: number;
  'image-end-offset'?: number;
}

export function qemuCheck(file: string): QemuCheck & { status: number } {
  const r = qemuImgStatus('check', '--output=json', '-f', 'qcow2', file);
  return { ...(JSON.parse(r.stdout) as QemuCheck), status: r.status };
}

/** qemu-img's view of the guest data, as a buffer. */
export function qemuRaw(file: string, dir: string, fmt = 'qcow2', extra: string[] = []): Buffer {
  const out = join(dir, `qemu-raw-${Math.random().toString(36).slice(2)}.raw`);
  qemuImg('convert', '-f', fmt, ...extra, '-O', 'raw', file, out);
  const b = readFileSync(out);
  rmSync(out);
  return b;
}

export async function readAll(dev: BlockDevice): Promise<Buffer> {
  const size = dev.info().size;
  const out = Buffer.alloc(size);
  const step = 4 * 1024 * 1024;
  for (let p = 0; p < size; p += step) await dev.read(p, Math.min(step, size - p), out.subarray(p, Math.min(size, p + step)));
  return out;
}

/** Deterministic pseudo-random generator (tests must be reproducible). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

export function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  const r = rng(seed);
  for (let i = 0; i < len; i += 4) b.writeUInt32LE((r() * 2 ** 32) >>> 0, i);
  return b;
}

/**
 * Compile the project (TypeScript 7 is fast) into a throwaway directory under
 * node_modules/.cache, so child processes can run the real `strata` binary
 * and library; each caller gets its own directory (test files run in parallel).
 */
export function buildProject(tag: string): { root: string; cli: string; cleanup: () => void } {
  const root = join(process.cwd(), 'node_modules', '.cache', `strata-${tag}-${process.pid}-${Date.now()}`);
  const r = spawnSync(join(process.cwd(), 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json', '--outDir', root, '--sourceMap', 'false'], {
    encoding: 'utf8',
  });
  const cli = join(root, 'src', 'cli', 'main.js');
  try {
    readFileSync(cli);
  } catch {
    throw new Error(`build failed: ${r.stdout}${r.stderr}`);
  }
  return { root, cli, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Run the built `strata image ...` with a memory cap; returns status and output. */
export function strata(cli: string, args: string[], cwd?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--max-old-space-size=192', cli, 'image', ...args], { encoding: 'utf8', cwd, timeout: 60_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
