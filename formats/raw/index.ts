export { RawDevice, FALLOCATE_MIN, INLINE_MAX, type RawOpenOptions } from './raw-device.js';
export { ZeroMap, GRAIN } from './zero-map.js';
