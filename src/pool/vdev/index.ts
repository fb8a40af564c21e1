/** The device layer's public entry point (see README.md in this folder). */
export * from './types.js';
export type { VdevEvents } from './child-io.js';
export { leafDataBytes } from './child-io.js';
export { AbstractLeaf, leafUsable, type LeafPolicy } from './leaf-base.js';
export { FileLeaf, createSparseFile, type FileLeafOptions } from './leaf-file.js';
export { MemoryLeaf } from './leaf-memory.js';
export { FaultLeaf, type FaultRule, type FaultLeafOptions } from './fault-leaf.js';
export { isLeafConfig, type LeafConfig } from './leaf-config.js';
export { SingleVdev } from './single.js';
export { MirrorVdev, mirrorState } from './mirror.js';
export { RaidzVdev } from './raidz.js';
export { raidzAsize, raidzMap } from './raidz-math.js';
export { ReplacingLeaf } from './replacing.js';
export { VdevTree, type OpenTreeOptions, type MissingDevice } from './tree.js';
export * as admin from './tree-admin.js';
export { parseLayout, buildRootConfig, leafConfigFor, newGuid, replicationMismatch, type LayoutSpec, type TopSpec } from './layout.js';
export { statusTree, type PoolStatusTree, type VdevStatusRow } from './status.js';
