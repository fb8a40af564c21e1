/**
 * strata's NBD server library: serve any BlockDevice over the NBD protocol
 * (fixed newstyle, structured replies, base:allocation, STARTTLS).
 *
 *   const server = new NbdServer({ exports: { disk: { device } } });
 *   const addr = await server.listen(10809, '127.0.0.1');
 *   ...
 *   await server.close();
 */
export { NbdServer } from './server.js';
export type {
  NbdExport,
  NbdExportInfo,
  NbdExportResolver,
  NbdExports,
  NbdClientContext,
  NbdServerOptions,
  NbdTlsOptions,
  NbdLogger,
} from './types.js';
export type { DeviceStatsSnapshot } from '../device/stats.js';
