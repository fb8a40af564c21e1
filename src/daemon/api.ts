/**
 * The administrative API as the CLI and HTTP see it: one set of methods,
 * served in-process (LocalApi) or by a running daemon over its control
 * socket (see control.ts). Arguments and results are plain JSON.
 */
import { PoolManager } from './services.js';
import { exportImage, importImage } from './transfer.js';
import type { CopyProgress } from '../device/copy.js';

export const API_METHODS = [
  'poolCreate',
  'poolList',
  'poolExport',
  'poolDestroy',
  'poolScan',
  'poolImport',
  'create',
  'destroy',
  'rename',
  'set',
  'inherit',
  'datasets',
  'history',
  'status',
  'importImage',
  'exportImage',
] as const;

export type ApiMethod = (typeof API_METHODS)[number];

export class LocalApi {
  constructor(readonly mgr: PoolManager) {}
  poolCreate = (...a: Parameters<PoolManager['poolCreate']>) => this.mgr.poolCreate(...a);
  poolList = (...a: Parameters<PoolManager['poolList']>) => this.mgr.poolList(...a);
  poolExport = (...a: Parameters<PoolManager['poolExport']>) => this.mgr.poolExport(...a);
  poolDestroy = (...a: Parameters<PoolManager['poolDestroy']>) => this.mgr.poolDestroy(...a);
  poolScan = async (dir?: string) => (await this.mgr.poolScan(dir)).map((f) => ({ name: f.name, guid: f.guid, state: f.state, devices: [...f.paths.values()] }));
  poolImport = (...a: Parameters<PoolManager['poolImport']>) => this.mgr.poolImport(...a);
  create = (...a: Parameters<PoolManager['create']>) => this.mgr.create(...a);
  destroy = (...a: Parameters<PoolManager['destroy']>) => this.mgr.destroy(...a);
  rename = (...a: Parameters<PoolManager['rename']>) => this.mgr.rename(...a);
  set = (...a: Parameters<PoolManager['set']>) => this.mgr.set(...a);
  inherit = (...a: Parameters<PoolManager['inherit']>) => this.mgr.inherit(...a);
  datasets = (...a: Parameters<PoolManager['datasets']>) => this.mgr.datasets(...a);
  history = (...a: Parameters<PoolManager['history']>) => this.mgr.history(...a);
  status = (...a: Parameters<PoolManager['status']>) => this.mgr.status(...a);
  importImage = (file: string, vol: string, o: Parameters<typeof importImage>[3] & { onProgress?: (p: CopyProgress) => void }) => importImage(this.mgr, file, vol, o);
  exportImage = (vol: string, file: string, o: Parameters<typeof exportImage>[3] & { onProgress?: (p: CopyProgress) => void }) => exportImage(this.mgr, vol, file, o);
  close = () => this.mgr.close();
}

export type Api = Omit<LocalApi, 'mgr'>;
