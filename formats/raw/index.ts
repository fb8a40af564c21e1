export { RawDevice, FALLOCATE_MIN, type RawOpenOptions } from './raw-device.js';
export { ZeroMap, GRAIN } from './zero-map.js';
