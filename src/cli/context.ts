/**
 * What every command needs: the home directory and the API, which is the
 * running daemon's (control socket) when there is one, else in-process.
 */
import { Home } from '../daemon/home.js';
import { LocalApi, type Api } from '../daemon/api.js';
import { connectControl } from '../daemon/control.js';
import { PoolManager } from '../daemon/services.js';

export class CliContext {
  private apiP: Promise<Api> | null = null;
  private local: LocalApi | null = null;
  homeDir: string | undefined;

  get home(): Home {
    return new Home(this.homeDir);
  }

  /** True when commands go through a daemon (no local progress bars then). */
  remote = false;

  api(): Promise<Api> {
    if (!this.apiP) {
      this.apiP = (async () => {
        const home = this.home;
        if (home.daemonPid()) {
          const remote = await connectControl(home.controlSocket);
          if (remote) {
            this.remote = true;
            return remote;
          }
        }
        this.local = new LocalApi(new PoolManager(home));
        return this.local;
      })();
    }
    return this.apiP;
  }

  async close(): Promise<void> {
    if (this.apiP) await (await this.apiP).close();
  }
}
