/**
 * `strata serve`: opens every pool of the home (creating the embedded
 * default pool on first run), exports every volume over NBD under its full
 * name, answers the CLI on the control socket and the HTTP API, and shuts
 * down gracefully: stop accepting, finish in-flight requests, flush, close.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:net';
import { err } from '../errors.js';
import { checked } from '../device/validate.js';
import type { BlockDevice } from '../device/block-device.js';
import { NbdServer, type NbdExportInfo, type NbdExport } from '../nbd/index.js';
import { openImage } from '../../formats/image-format.js';
import { Home } from './home.js';
import { PoolManager } from './services.js';
import { LocalApi } from './api.js';
import { serveControl } from './control.js';
import { startHttp } from './http.js';
import { Scheduler } from './scheduler.js';

export interface ServeOptions {
  home?: string;
  nbd?: string; // ADDR:PORT | off
  http?: string;
  iscsi?: string;
  config?: string;
  log?: (msg: string) => void;
}

export interface DaemonConfig {
  nbd?: string;
  http?: string;
  iscsi?: string;
  tls?: { key: string; cert: string; ca?: string; requestCert?: boolean };
  /** Extra exports: image files served under a name. */
  images?: Record<string, { path: string; format?: 'raw' | 'qcow2'; readOnly?: boolean; description?: string }>;
  /** Per-export policy by export name (volumes too). */
  exports?: Record<string, { readOnly?: boolean; allowedClients?: string[]; requireTls?: boolean; maxConnections?: number }>;
  default?: { pool?: string; size?: string; volume?: string; volsize?: string };
}

export function parseAddr(s: string, defPort: number): { host: string; port: number } | null {
  if (s === 'off') return null;
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d+))?$/.exec(s);
  if (!m) throw err.inval(`invalid address '${s}': expected ADDR:PORT or off`);
  const port = m[3] !== undefined ? Number(m[3]) : defPort;
  if (!(port >= 0 && port < 65536)) throw err.inval(`invalid port in '${s}'`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

export class Daemon {
  readonly home: Home;
  readonly mgr: PoolManager;
  private nbd: NbdServer | null = null;
  private control: Server | null = null;
  private http: { close(): Promise<void>; port: number } | null = null;
  private config: DaemonConfig = {};
  private images = new Map<string, BlockDevice>();
  addresses: { nbd?: string; http?: string } = {};
  private log: (m: string) => void;
  private scheduler: Scheduler | null = null;

  constructor(private opts: ServeOptions) {
    this.home = new Home(opts.home);
    this.mgr = new PoolManager(this.home);
    this.log = opts.log ?? ((m) => process.stderr.write(m + '\n'));
  }

  async start(): Promise<void> {
    this.home.ensure();
    const other = this.home.daemonPid();
    if (other && other !== process.pid) throw err.busy(`another strata daemon (process ${other}) is serving ${this.home.dir}`);
    const cfgPath = this.opts.config ?? this.home.configFile;
    if (existsSync(cfgPath)) {
      try {
        this.config = JSON.parse(readFileSync(cfgPath, 'utf8')) as DaemonConfig;
      } catch (e) {
        throw err.inval(`cannot read config ${cfgPath}: ${(e as Error).message}`);
      }
    } else if (this.opts.config) throw err.noent(`config file '${this.opts.config}' does not exist`);

    if (Object.keys(this.home.readCache()).length === 0) await this.createDefaultPool();
    await this.mgr.openAll();
    for (const [name, img] of Object.entries(this.config.images ?? {})) {
      this.images.set(name, await openImage(img.path, { format: img.format, readOnly: !!img.readOnly }));
    }

    // Scheduled snapshots with retention (snapshot:policy), every minute.
    this.scheduler = new Scheduler(this.mgr, { log: this.log });
    this.scheduler.start();

    this.control = serveControl(this.home.controlSocket, new LocalApi(this.mgr), this.log);
    await new Promise<void>((r) => this.control!.once('listening', () => r()));
    this.home.writeDaemonPid();

    const nbdAddr = parseAddr(this.opts.nbd ?? this.config.nbd ?? '127.0.0.1:10809', 10809);
    if (nbdAddr) {
      const tls = this.config.tls
        ? { key: readFileSync(this.config.tls.key), cert: readFileSync(this.config.tls.cert), ca: this.config.tls.ca ? readFileSync(this.config.tls.ca) : undefined, requestCert: this.config.tls.requestCert }
        : undefined;
      this.nbd = new NbdServer({ exports: { list: () => this.exportList(), open: (name) => this.openExport(name) }, tls });
      const a = await this.nbd.listen(nbdAddr.port, nbdAddr.host);
      this.addresses.nbd = `${nbdAddr.host}:${(a as { port: number }).port}`;
    }
    const httpAddr = parseAddr(this.opts.http ?? this.config.http ?? '127.0.0.1:8080', 8080);
    if (httpAddr) {
      this.http = await startHttp(new LocalApi(this.mgr), httpAddr.host, httpAddr.port, () => this.exportList(), () => this.nbd?.stats() ?? {});
      this.addresses.http = `${httpAddr.host}:${this.http.port}`;
    }
  }

  private async createDefaultPool(): Promise<void> {
    const d = this.config.default ?? {};
    const pool = d.pool ?? 'tank';
    const dev = join(this.home.devicesDir, `${pool}.img`);
    this.log(`creating the default pool '${pool}' on ${dev} (sparse, ${d.size ?? '8G'})`);
    const { parseSize } = await import('../pool/dataset/units.js');
    await this.mgr.poolCreate(pool, { groups: [{ type: 'single', paths: [dev] }], createSize: parseSize(d.size ?? '8G'), force: false });
    await this.mgr.create(`${pool}/${d.volume ?? 'demo'}`, { volsize: d.volsize ?? '1G', sparse: true, command: `create -s -V ${d.volsize ?? '1G'} ${pool}/${d.volume ?? 'demo'}` });
  }

  exportList(): NbdExportInfo[] {
    const out: NbdExportInfo[] = [];
    for (const pool of this.mgr.openPools()) {
      for (const name of pool.list()) {
        const rec = pool.dir.datasets.get(name);
        if (rec?.type !== 'volume') continue;
        const pol = this.config.exports?.[name];
        out.push({ name, description: `strata volume ${name}`, requireTls: pol?.requireTls, allowedClients: pol?.allowedClients });
        for (const s of rec.snapshots) {
          const full = `${name}@${s.name}`;
          const sp = this.config.exports?.[full] ?? pol;
          out.push({ name: full, description: `strata snapshot ${full} (read-only)`, requireTls: sp?.requireTls, allowedClients: sp?.allowedClients });
        }
      }
    }
    for (const [name, img] of Object.entries(this.config.images ?? {})) {
      const pol = this.config.exports?.[name];
      out.push({ name, description: img.description ?? `image ${img.path}`, requireTls: pol?.requireTls, allowedClients: pol?.allowedClients });
    }
    return out;
  }

  private async openExport(name: string): Promise<NbdExport | null> {
    const pol = this.config.exports?.[name] ?? {};
    const img = this.images.get(name);
    if (img) return { device: checked(img), readOnly: pol.readOnly || this.config.images?.[name]?.readOnly, ...pol };
    const poolName = name.split(/[/@]/)[0]!;
    const pool = this.mgr.openPools().find((p) => p.name === poolName);
    if (!pool) return null;
    if (name.includes('@')) {
      // Snapshots export read-only, always.
      const ds = pool.dir.datasets.get(name.slice(0, name.indexOf('@')));
      if (ds?.type !== 'volume' || !ds.snapshots.some((s) => s.name === name.slice(name.indexOf('@') + 1))) return null;
      const { device, release } = await this.mgr.openSnapshot(name);
      return { device: checked(device), description: `strata snapshot ${name} (read-only)`, ...pol, readOnly: true, release };
    }
    if (pool.dir.datasets.get(name)?.type !== 'volume') return null;
    const { volume, release } = await this.mgr.openVolume(name, { readOnly: pol.readOnly });
    return { device: checked(volume), description: `strata volume ${name}`, ...pol, release };
  }

  /** Graceful stop: no new connections, in-flight requests finish, everything flushed and closed. */
  async stop(force = false): Promise<void> {
    const errors: unknown[] = [];
    await this.scheduler?.stop();
    const step = async (f: () => Promise<void> | void) => {
      try {
        await f();
      } catch (e) {
        errors.push(e);
      }
    };
    await step(async () => {
      if (this.nbd) await this.nbd.close({ force });
    });
    await step(async () => {
      if (this.http) await this.http.close();
    });
    await step(() => new Promise<void>((r) => (this.control ? this.control.close(() => r()) : r())));
    for (const d of this.images.values()) await step(() => d.close());
    await step(() => this.mgr.close());
    this.home.clearDaemonPid();
    if (errors.length) throw errors[0];
  }
}
