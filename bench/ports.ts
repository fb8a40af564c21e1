/**
 * Ports for the benchmarks that start servers (bench/nbd, bench/qcow2,
 * bench/snapshot-strategies): a free one, and waiting until one listens.
 */
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';

/** A port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves when host:port accepts a connection; rejects if `child` exits first or after the timeout. */
export function waitPort(host: string, port: number, child: ChildProcess | null, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child && child.exitCode !== null) return reject(new Error(`server exited with code ${child.exitCode} before listening on ${host}:${port}`));
      const s = net.connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`${host}:${port} did not open within ${timeoutMs} ms`));
        else setTimeout(attempt, 40);
      });
    };
    attempt();
  });
}
