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
  'snapshot',
  'destroySnapshots',
  'rollback',
  'rollbackToOrigin',
  'clone',
  'promote',
  'hold',
  'release',
  'holds',
  'diff',
  'snapshotRows',
  'autoSnapshot',
  'poolScrub',
  'poolWait',
  'poolAttach',
  'poolDetach',
  'poolReplace',
  'poolOffline',
  'poolOnline',
  'poolClear',
  'poolStatus',
  'poolIostat',
  'amplification',
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
  snapshot = (...a: Parameters<PoolManager['snapshot']>) => this.mgr.snapshot(...a);
  destroySnapshots = (...a: Parameters<PoolManager['destroySnapshots']>) => this.mgr.destroySnapshots(...a);
  rollback = (...a: Parameters<PoolManager['rollback']>) => this.mgr.rollback(...a);
  rollbackToOrigin = (...a: Parameters<PoolManager['rollbackToOrigin']>) => this.mgr.rollbackToOrigin(...a);
  clone = (...a: Parameters<PoolManager['clone']>) => this.mgr.clone(...a);
  promote = (...a: Parameters<PoolManager['promote']>) => this.mgr.promote(...a);
  hold = (...a: Parameters<PoolManager['hold']>) => this.mgr.hold(...a);
  release = (...a: Parameters<PoolManager['release']>) => this.mgr.release(...a);
  holds = (...a: Parameters<PoolManager['holds']>) => this.mgr.holds(...a);
  diff = (...a: Parameters<PoolManager['diff']>) => this.mgr.diff(...a);
  amplification = (...a: Parameters<PoolManager['amplification']>) => this.mgr.amplification(...a);
  snapshotRows = (...a: Parameters<PoolManager['snapshotRows']>) => this.mgr.snapshotRows(...a);
  autoSnapshot = (...a: Parameters<PoolManager['autoSnapshot']>) => this.mgr.autoSnapshot(...a);
  poolScrub = (...a: Parameters<PoolManager['poolScrub']>) => this.mgr.poolScrub(...a);
  poolWait = (...a: Parameters<PoolManager['poolWait']>) => this.mgr.poolWait(...a);
  poolAttach = (...a: Parameters<PoolManager['poolAttach']>) => this.mgr.poolAttach(...a);
  poolDetach = (...a: Parameters<PoolManager['poolDetach']>) => this.mgr.poolDetach(...a);
  poolReplace = (...a: Parameters<PoolManager['poolReplace']>) => this.mgr.poolReplace(...a);
  poolOffline = (...a: Parameters<PoolManager['poolOffline']>) => this.mgr.poolOffline(...a);
  poolOnline = (...a: Parameters<PoolManager['poolOnline']>) => this.mgr.poolOnline(...a);
  poolClear = (...a: Parameters<PoolManager['poolClear']>) => this.mgr.poolClear(...a);
  poolStatus = (...a: Parameters<PoolManager['poolStatus']>) => this.mgr.poolStatus(...a);
  poolIostat = (...a: Parameters<PoolManager['poolIostat']>) => this.mgr.poolIostat(...a);
  close = () => this.mgr.close();
}

export type Api = Omit<LocalApi, 'mgr'>;
