/**
 * The HTTP API (Koa): JSON views over the same API the CLI uses. This is the
 * seed of the REST API and dashboard; it binds 127.0.0.1 by default.
 */
import Koa from 'koa';
import type { Server } from 'node:http';
import { isStorageError } from '../errors.js';
import type { LocalApi } from './api.js';
import type { NbdExportInfo } from '../nbd/index.js';

const STATUS: Record<string, number> = { ENOENT: 404, EEXIST: 409, EBUSY: 409, EINVAL: 400, EPERM: 403, ENOSPC: 507, ENOTSUP: 501 };

export async function startHttp(
  api: LocalApi,
  host: string,
  port: number,
  exports: () => NbdExportInfo[],
  stats: () => Record<string, unknown> = () => ({}),
): Promise<{ close(): Promise<void>; port: number }> {
  const app = new Koa();
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (e) {
      const code = isStorageError(e) ? e.code : 'EIO';
      ctx.status = STATUS[code] ?? 500;
      ctx.body = { error: { code, message: isStorageError(e) ? e.message : 'internal error' } };
    }
  });
  app.use(async (ctx) => {
    if (ctx.method !== 'GET') {
      ctx.status = 405;
      ctx.body = { error: { code: 'EINVAL', message: 'read-only API for now' } };
      return;
    }
    switch (ctx.path) {
      case '/healthz':
        ctx.body = { ok: true };
        return;
      case '/api/pools':
        ctx.body = await api.poolList();
        return;
      case '/api/datasets':
        ctx.body = await api.datasets([], true);
        return;
      case '/api/amplification':
        // Device-level I/O per volume and write amplification (src/pool/io/account.ts).
        ctx.body = await api.amplification([]);
        return;
      case '/api/exports':
        ctx.body = exports();
        return;
      case '/api/exports/stats':
        // Per-export counters kept by the device/ stats filter: ops, bytes, errors, latency histograms.
        ctx.body = stats();
        return;
      default:
        ctx.status = 404;
        ctx.body = { error: { code: 'ENOENT', message: `no route ${ctx.path}` } };
    }
  });
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(port, host, () => resolve(s));
    s.once('error', reject);
  });
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
