/**
 * The home directory: all of strata's state for one installation
 * (`--home DIR`, else $STRATA_HOME, else ./strata-data).
 *
 *   pools.json        the pool cache: imported pools and their device paths (zpool.cache)
 *   locks/POOL.lock   pid of the process that has POOL open (created O_EXCL)
 *   control.sock      the daemon's control socket while `strata serve` runs
 *   daemon.pid        pid of that daemon
 *   devices/          default device files (the embedded pool)
 *   config.json       daemon configuration (optional)
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync, openSync, closeSync, unlinkSync, writeSync, existsSync, fsyncSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { err } from '../errors.js';

export interface PoolCacheEntry {
  guid: string;
  paths: string[];
}

export class Home {
  readonly dir: string;

  constructor(dir?: string) {
    this.dir = resolve(dir ?? process.env['STRATA_HOME'] ?? './strata-data');
  }

  ensure(): void {
    mkdirSync(join(this.dir, 'locks'), { recursive: true });
    mkdirSync(join(this.dir, 'devices'), { recursive: true });
  }

  get devicesDir(): string {
    return join(this.dir, 'devices');
  }
  get controlSocket(): string {
    return join(this.dir, 'control.sock');
  }
  get configFile(): string {
    return join(this.dir, 'config.json');
  }

  readCache(): Record<string, PoolCacheEntry> {
    try {
      const j = JSON.parse(readFileSync(join(this.dir, 'pools.json'), 'utf8')) as { pools?: Record<string, PoolCacheEntry> };
      return j.pools ?? {};
    } catch {
      return {};
    }
  }

  /** Atomic replace (write temp, fsync, rename) so a crash never leaves a torn cache. */
  writeCache(pools: Record<string, PoolCacheEntry>): void {
    this.ensure();
    const tmp = join(this.dir, `pools.json.${process.pid}.tmp`);
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, JSON.stringify({ version: 1, pools }, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(this.dir, 'pools.json'));
  }

  setCached(name: string, entry: PoolCacheEntry | null): void {
    const c = this.readCache();
    if (entry) c[name] = entry;
    else delete c[name];
    this.writeCache(c);
  }

  /** Take the pool's lock file; refuses if a live process holds it. Returns the release function. */
  lockPool(name: string): () => void {
    this.ensure();
    const path = join(this.dir, 'locks', `${name}.lock`);
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = openSync(path, 'wx');
        writeSync(fd, String(process.pid));
        closeSync(fd);
        return () => {
          try {
            if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
          } catch {
            /* already gone */
          }
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw err.io(`cannot create lock ${path}: ${(e as Error).message}`);
        const pid = Number(readFileSync(path, 'utf8').trim());
        if (pid && pid !== process.pid && alive(pid)) throw err.busy(`pool '${name}' is in use by process ${pid}`);
        try {
          unlinkSync(path); // stale: its owner is gone
        } catch {
          /* raced with another cleaner */
        }
      }
    }
    throw err.busy(`pool '${name}' is being opened by another process`);
  }

  daemonPid(): number | null {
    try {
      const pid = Number(readFileSync(join(this.dir, 'daemon.pid'), 'utf8').trim());
      return pid && alive(pid) ? pid : null;
    } catch {
      return null;
    }
  }

  writeDaemonPid(): void {
    this.ensure();
    writeFileSync(join(this.dir, 'daemon.pid'), String(process.pid));
  }

  clearDaemonPid(): void {
    try {
      if (readFileSync(join(this.dir, 'daemon.pid'), 'utf8').trim() === String(process.pid)) unlinkSync(join(this.dir, 'daemon.pid'));
    } catch {
      /* gone */
    }
    try {
      if (existsSync(this.controlSocket)) unlinkSync(this.controlSocket);
    } catch {
      /* gone */
    }
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
