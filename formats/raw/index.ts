export { RawDevice, FALLOCATE_MIN, INLINE_MAX, INLINE_WRITE_MAX, type RawOpenOptions } from './raw-device.js';
export { ZeroMap, GRAIN } from './zero-map.js';
