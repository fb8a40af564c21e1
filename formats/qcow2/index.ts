/** formats/qcow2: our qcow2 library. See README.md for what it owns and its ordering rules. */
export { Qcow2Image, type Qcow2OpenOptions } from './image.js';
export { ChainDevice, openLayers, resolveBacking, type Layer, type OpenChainOptions } from './chain.js';
export { createQcow2, validateCreateOptions, type Qcow2CreateOptions, type Preallocation } from './create.js';
export { checkImage, type CheckResult, type CheckOptions } from './check.js';
export { createSnapshot, deleteSnapshot, applySnapshot, listSnapshots, openSnapshotView, type SnapshotInfo } from './snapshot.js';
export { parseHeader, encodeHeader, compatName, type Qcow2Header } from './header.js';
export { Kind, type Seg } from './cluster.js';
export { resizeImage, setBackingFile, makeEmpty } from './ops.js';
export * as constants from './constants.js';
