/**
 * ExportTable: turns the caller's exports (a static record or a live
 * resolver) into what a connection needs: policy checks (TLS, client
 * address, connection limit), the device wrapped in the standard filter
 * stack, and per-export counters that outlive connections.
 *
 * Filter stack per export: stats( checked( readOnlyView?( device ) ) ).
 * checked() is the one place requests are validated; stats sits outside it
 * so the counters include requests refused by validation (what the client
 * saw). The stack is built once per (name, device, readOnly) and reused;
 * the counters belong to the export name, so they survive a resolver that
 * hands out a fresh device object per open (the daemon does).
 */
import type { BlockDevice, BlockDeviceInfo } from '../device/block-device.js';
import { readOnlyView } from '../device/read-only.js';
import { newStatsCounters, StatsDevice, type DeviceStatsSnapshot, type StatsCounters } from '../device/stats.js';
import { checked } from '../device/validate.js';
import { addressAllowed } from './cidr.js';
import type { NbdClientContext, NbdExport, NbdExportInfo, NbdExportResolver, NbdExports } from './types.js';

export interface OpenedExport {
  name: string;
  export: NbdExport;
  /** The filtered device: every call is validated and counted. */
  device: BlockDevice;
  info: BlockDeviceInfo;
  /** Call exactly once when the connection is done with the export. */
  release(): Promise<void>;
}

export type OpenResult =
  | { ok: true; opened: OpenedExport }
  | { ok: false; reason: 'unknown' | 'tls' | 'policy'; message: string };

interface Stack {
  base: BlockDevice;
  readOnly: boolean;
  stats: StatsDevice;
  device: BlockDevice;
}

function isResolver(e: NbdExports): e is NbdExportResolver {
  return typeof (e as NbdExportResolver).list === 'function' && typeof (e as NbdExportResolver).open === 'function';
}

export class ExportTable {
  private readonly resolver: NbdExportResolver;
  private readonly stacks = new Map<string, Stack>();
  private readonly counters = new Map<string, StatsCounters>();
  private readonly connections = new Map<string, number>();

  constructor(exports: NbdExports) {
    if (isResolver(exports)) {
      this.resolver = exports;
    } else {
      const table = exports;
      this.resolver = {
        list: () =>
          Object.entries(table).map(([name, e]) => ({
            name,
            description: e.description,
            requireTls: e.requireTls,
            allowedClients: e.allowedClients,
          })),
        open: async (name) => (Object.prototype.hasOwnProperty.call(table, name) ? table[name]! : null),
      };
    }
  }

  /** Exports this client may see: TLS-only ones are hidden before STARTTLS (spec allows it; stops enumeration). */
  list(ctx: NbdClientContext): NbdExportInfo[] {
    return this.resolver
      .list()
      .filter((e) => (ctx.tls || !e.requireTls) && addressAllowed(ctx.remoteAddress, e.allowedClients));
  }

  async open(name: string, ctx: NbdClientContext): Promise<OpenResult> {
    const exp = await this.resolver.open(name, ctx);
    if (!exp) return { ok: false, reason: 'unknown', message: `no export named '${name}'` };
    const refuse = (reason: 'tls' | 'policy', message: string): OpenResult => {
      void Promise.resolve(exp.release?.()).catch(() => {});
      return { ok: false, reason, message };
    };
    if (exp.requireTls && !ctx.tls) return refuse('tls', `export '${name}' requires TLS`);
    if (!addressAllowed(ctx.remoteAddress, exp.allowedClients)) {
      return refuse('policy', `client ${ctx.remoteAddress} may not use export '${name}'`);
    }
    const stack = this.stack(name, exp);
    let released = false;
    return {
      ok: true,
      opened: {
        name,
        export: exp,
        device: stack.device,
        info: stack.device.info(),
        release: async () => {
          if (released) return;
          released = true;
          await exp.release?.();
        },
      },
    };
  }

  private stack(name: string, exp: NbdExport): Stack {
    const readOnly = !!exp.readOnly;
    const cur = this.stacks.get(name);
    if (cur && cur.base === exp.device && cur.readOnly === readOnly) return cur;
    let counters = this.counters.get(name);
    if (!counters) this.counters.set(name, (counters = newStatsCounters()));
    const stats = new StatsDevice(checked(readOnly ? readOnlyView(exp.device) : exp.device), counters);
    const s: Stack = { base: exp.device, readOnly, stats, device: stats };
    this.stacks.set(name, s);
    return s;
  }

  /** Reserve a transmission slot; false when the export's maxConnections is reached. */
  acquire(name: string, exp: NbdExport): boolean {
    const n = this.connections.get(name) ?? 0;
    if (exp.maxConnections !== undefined && n >= exp.maxConnections) return false;
    this.connections.set(name, n + 1);
    return true;
  }

  releaseSlot(name: string): void {
    const n = (this.connections.get(name) ?? 1) - 1;
    if (n <= 0) this.connections.delete(name);
    else this.connections.set(name, n);
  }

  connectionCount(name: string): number {
    return this.connections.get(name) ?? 0;
  }

  stats(): Record<string, DeviceStatsSnapshot> {
    const out: Record<string, DeviceStatsSnapshot> = {};
    for (const [name, s] of this.stacks) out[name] = s.stats.snapshot();
    return out;
  }
}
