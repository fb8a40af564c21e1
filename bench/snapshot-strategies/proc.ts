/**
 * Processes the snapshot-strategies benchmark drives: fio (ioengine=nbd),
 * `strata serve`, qemu-nbd, qemu-img / qemu-io, and the small helpers they
 * need (free ports, waiting for a port, timing a command). Every one is tracked
 * (bench/children.ts) so that an interrupted run stops it.
 */
import { spawn } from 'node:child_process';
import { track } from '../children.js';

export { freePort, waitPort } from '../ports.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Milliseconds since t0 (from process.hrtime.bigint()). */
export const msSince = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

export interface RunOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a command to completion (asynchronously: the event loop stays free for our own servers). */
export function run(cmd: string, args: string[], opts: { allowFail?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<RunOutput> {
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env }));
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => {
      const out = { code: code ?? -1, stdout, stderr };
      if (code !== 0 && !opts.allowFail) reject(new Error(`${cmd} ${args.slice(0, 8).join(' ')}${args.length > 8 ? ' ...' : ''} exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
      else resolve(out);
    });
  });
}

/** Run a command and return its wall time in ms. */
export async function timed(cmd: string, args: string[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  await run(cmd, args);
  return msSince(t0);
}

/** Is `cmd` installed (runs `cmd --version`)? */
export async function have(cmd: string): Promise<string | null> {
  try {
    const r = await run(cmd, ['--version'], { allowFail: true });
    return r.code === 0 ? (r.stdout || r.stderr).trim().split('\n')[0]! : null;
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------ fio

export interface FioJob {
  rw: 'read' | 'write' | 'randread' | 'randwrite';
  bs: number;
  iodepth: number;
  /** Region of the device the job covers (from offset 0). */
  size: number;
  /** Stop after this many bytes (a fixed amount of work: first overwrites after a snapshot are a finite resource). */
  ioSize?: number;
  /** Time-based job of this many ms instead (after rampMs). */
  runtimeMs?: number;
  rampMs?: number;
  /** Random seed (different seeds touch different blocks); default fio's fixed one. */
  seed?: number;
}

export interface FioResult {
  iops: number;
  mbps: number;
  bytes: number;
  ms: number;
}

/** One fio job over NBD (ioengine=nbd, one connection). */
export async function fio(uri: string, job: FioJob): Promise<FioResult> {
  const args = [
    '--name=j',
    '--ioengine=nbd',
    `--uri=${uri}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--iodepth=${job.iodepth}`,
    `--size=${job.size}`,
    '--output-format=json',
  ];
  if (job.ioSize !== undefined) args.push(`--io_size=${job.ioSize}`);
  if (job.runtimeMs !== undefined) args.push('--time_based', `--runtime=${Math.max(1, Math.round(job.runtimeMs))}ms`);
  if (job.rampMs) args.push(`--ramp_time=${Math.round(job.rampMs)}ms`);
  if (job.seed !== undefined) args.push(`--randseed=${job.seed}`);
  const r = await run('fio', args);
  const i = r.stdout.indexOf('{');
  if (i < 0) throw new Error(`fio printed no JSON: ${r.stdout.slice(0, 200)} ${r.stderr.slice(0, 200)}`);
  const j = JSON.parse(r.stdout.slice(i)).jobs[0];
  if (j.error) throw new Error(`fio job error ${j.error}: ${r.stderr.trim()}`);
  const side = job.rw.includes('read') ? j.read : j.write;
  return { iops: side.iops, mbps: side.bw_bytes / 1e6, bytes: side.io_bytes, ms: side.runtime };
}
