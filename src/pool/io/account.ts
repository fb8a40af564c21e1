/**
 * Device-level I/O of one volume, counted where it happens so write
 * amplification is a measurement:
 *
 * - guest bytes/ops: what the volume's users asked for (Volume.read/write);
 * - device writes: every block the txg sync writes for the volume's objects
 *   (head, cow stores, row layers; data and indirect blocks, all copies:
 *   the allocated size), counted as the tree sync gives them birth;
 * - device reads on the write path: blocks a write had to read first
 *   (read-modify-write of partial blocks, cow copy-out, row merges) that
 *   were not in the ARC, at their physical size;
 * - device reads for guest reads, likewise, kept apart.
 *
 * amplification = (device bytes written + device bytes read for writes)
 *                 / guest bytes written
 */
export interface IoAccountJson {
  guestReadOps: number;
  guestReadBytes: number;
  guestWriteOps: number;
  guestWriteBytes: number;
  deviceWriteOps: number;
  deviceWriteBytes: number;
  deviceReadOpsForWrites: number;
  deviceReadBytesForWrites: number;
  deviceReadOps: number;
  deviceReadBytes: number;
  /** (deviceWriteBytes + deviceReadBytesForWrites) / guestWriteBytes; 0 before any write. */
  amplification: number;
  since: number;
}

export class IoAccount {
  guestReadOps = 0;
  guestReadBytes = 0;
  guestWriteOps = 0;
  guestWriteBytes = 0;
  deviceWriteOps = 0;
  deviceWriteBytes = 0;
  deviceReadOpsForWrites = 0;
  deviceReadBytesForWrites = 0;
  deviceReadOps = 0;
  deviceReadBytes = 0;
  since = Date.now();

  reset(): void {
    Object.assign(this, new IoAccount());
  }

  toJson(): IoAccountJson {
    const dev = this.deviceWriteBytes + this.deviceReadBytesForWrites;
    return {
      guestReadOps: this.guestReadOps,
      guestReadBytes: this.guestReadBytes,
      guestWriteOps: this.guestWriteOps,
      guestWriteBytes: this.guestWriteBytes,
      deviceWriteOps: this.deviceWriteOps,
      deviceWriteBytes: this.deviceWriteBytes,
      deviceReadOpsForWrites: this.deviceReadOpsForWrites,
      deviceReadBytesForWrites: this.deviceReadBytesForWrites,
      deviceReadOps: this.deviceReadOps,
      deviceReadBytes: this.deviceReadBytes,
      amplification: this.guestWriteBytes ? Math.round((dev / this.guestWriteBytes) * 1000) / 1000 : 0,
      since: this.since,
    };
  }
}
