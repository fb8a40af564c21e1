/**
 * The NBD servers of the benchmark, each a process of its own so strata and
 * qemu-nbd are measured the same way (fio ioengine=nbd over loopback TCP):
 *
 * - PoolService: `strata serve` on the home that holds the pool (a temporary
 *   home, or the admin's), driven through its control socket (the same API
 *   the CLI uses). When we started it we may restart it to drop the ARC
 *   (cold-cache amplification); an admin's running daemon is never touched.
 * - ImageServer: one qcow2 file (or the top of an overlay chain) served by
 *   `strata serve` (config `images`, its own small home) or by qemu-nbd.
 *   Both read the image at start-up, so offline image operations (qemu-img
 *   snapshot/create/commit) stop the server and the next use restarts it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectControl } from '../../src/daemon/control.js';
import type { Api } from '../../src/daemon/api.js';
import { Home } from '../../src/daemon/home.js';
import { EXIT_WITH_PARENT, stopChild, track } from '../children.js';
import { freePort, sleep, waitPort } from './proc.js';

/**
 * `strata serve`, stopped by the runner alone: in a process group of its own, since a second
 * signal forces its shutdown (Ctrl-C reached it, then the runner's SIGTERM did), and through
 * its IPC channel (EXIT_WITH_PARENT) when the runner is killed outright.
 */
function spawnStrata(cli: string, args: string[], log: (l: string) => void): ChildProcess {
  const child = track(spawn(process.execPath, [...EXIT_WITH_PARENT, cli, ...args], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], detached: true }));
  let tail = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    tail = (tail + d).slice(-4000);
    for (const line of d.split('\n')) if (/error|failed|suspend/i.test(line)) log(`strata serve: ${line.trim()}`);
  });
  child.once('exit', (code, sig) => {
    if (code && code !== 0) log(`strata serve (${args.join(' ')}) exited ${code ?? sig}: ${tail.trim().split('\n').slice(-3).join(' | ')}`);
  });
  return child;
}

export class PoolService {
  api!: Api;
  nbdHost = '127.0.0.1';
  nbdPort = 0;
  private child: ChildProcess | null = null;
  private syncs = 0;
  /** True when the daemon is ours (we started it and may restart it). */
  own = false;

  constructor(
    private o: { cli: string; home: string; nbd?: string; log: (l: string) => void },
  ) {}

  async start(): Promise<void> {
    const home = new Home(this.o.home);
    if (home.daemonPid() && !this.child) {
      // The admin's daemon: use it as it is.
      const api = await connectControl(home.controlSocket);
      if (!api) throw new Error(`a strata daemon runs on ${home.dir} but its control socket does not answer`);
      this.api = api;
      let addr = this.o.nbd;
      if (!addr && existsSync(home.configFile)) addr = (JSON.parse(readFileSync(home.configFile, 'utf8')) as { nbd?: string }).nbd;
      const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d+))?$/.exec(addr ?? '127.0.0.1:10809');
      this.nbdHost = m?.[1] ?? (m?.[2] || '127.0.0.1');
      this.nbdPort = Number(m?.[3] ?? 10809);
      if (this.nbdHost === '0.0.0.0' || this.nbdHost === '::') this.nbdHost = '127.0.0.1';
      this.own = false;
      return;
    }
    this.nbdPort = await freePort();
    this.child = spawnStrata(this.o.cli, ['--home', this.o.home, 'serve', '--nbd', `127.0.0.1:${this.nbdPort}`, '--http', 'off'], this.o.log);
    this.own = true;
    await waitPort('127.0.0.1', this.nbdPort, this.child, 120_000);
    const api = await connectControl(home.controlSocket);
    if (!api) throw new Error('strata serve started but its control socket does not answer');
    this.api = api;
  }

  uri(vol: string): string {
    return `nbd://${this.nbdHost}:${this.nbdPort}/${vol}`;
  }

  /** Drop every cache (ARC) by restarting the daemon; false when it is not ours to restart. */
  async restart(): Promise<boolean> {
    if (!this.own || !this.child) return false;
    await this.stop();
    await this.start();
    return true;
  }

  /**
   * Commit the open txg now, so the device writes of everything written so
   * far are counted: a property change is a directory change, and those are
   * durable (synced) when the call returns.
   */
  async sync(vol: string): Promise<void> {
    await this.api.set(vol, { 'strata:bench-sync': String(++this.syncs) });
  }

  async stop(): Promise<void> {
    await this.api?.close().catch(() => {});
    if (this.child) {
      await stopChild(this.child, 60_000);
      this.child = null;
    }
  }
}

export type ImageServerKind = 'strata' | 'qemu-nbd';

export class ImageServer {
  private child: ChildProcess | null = null;
  private port = 0;
  private file = '';
  private homeReady = false;
  private starts = 0;

  constructor(
    readonly kind: ImageServerKind,
    private o: { cli: string; home: string; log: (l: string) => void },
  ) {}

  /** Serve `file` (qcow2; an overlay brings its backing chain); reuses the running server when it already serves it. */
  async uri(file: string): Promise<string> {
    if (this.child && this.file !== file) await this.stop();
    if (!this.child) await this.start(file);
    return `nbd://127.0.0.1:${this.port}/disk`;
  }

  get restarts(): number {
    return this.starts;
  }

  private async start(file: string): Promise<void> {
    this.port = await freePort();
    this.file = file;
    this.starts++;
    if (this.kind === 'qemu-nbd') {
      this.child = track(
        spawn('qemu-nbd', ['-f', 'qcow2', '--cache=writeback', '-b', '127.0.0.1', '-p', String(this.port), '-x', 'disk', '-t', file], {
          stdio: ['ignore', 'ignore', 'pipe'],
        }),
      );
      // Our readiness probe connects and hangs up: qemu-nbd says so on stderr; anything else is news.
      let partial = '';
      this.child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        const lines = (partial + d).split('\n');
        partial = lines.pop()!;
        for (const line of lines) if (line.trim() && !/option negotiation failed/.test(line)) this.o.log(line.trim());
      });
    } else {
      if (!this.homeReady) {
        mkdirSync(this.o.home, { recursive: true });
        this.homeReady = true;
      }
      // A home without pools gets a default pool on first start: keep it tiny.
      const cfg = {
        images: { disk: { path: file, format: 'qcow2' } },
        default: { pool: 'imgsrv', size: '64M', volume: 'unused', volsize: '1M' },
      };
      const cfgFile = join(this.o.home, 'bench-config.json');
      writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
      this.child = spawnStrata(this.o.cli, ['--home', this.o.home, 'serve', '--config', cfgFile, '--nbd', `127.0.0.1:${this.port}`, '--http', 'off'], this.o.log);
    }
    await waitPort('127.0.0.1', this.port, this.child, 120_000);
  }

  /** Stop serving (before an offline operation on the image). */
  async stop(): Promise<void> {
    if (!this.child) return;
    await stopChild(this.child, 60_000);
    this.child = null;
    // qemu-nbd drops its image lock on exit; give the kernel a moment on busy machines.
    await sleep(10);
  }
}
