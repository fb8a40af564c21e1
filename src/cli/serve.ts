/** `strata serve`: run the daemon in the foreground until SIGTERM/SIGINT (a second signal forces). */
import type { Command } from 'commander';
import type { CliContext } from './context.js';

export function registerServeCommand(program: Command, ctx: CliContext): void {
  program
    .command('serve')
    .description('serve every volume over NBD (and the HTTP API); CLI commands then go through it')
    .option('--config <file>', 'daemon config (JSON)')
    .option('--nbd <addr>', 'NBD listen address ADDR:PORT or off (default 127.0.0.1:10809)')
    .option('--iscsi <addr>', 'iSCSI listen address or off (not available yet)')
    .option('--http <addr>', 'HTTP listen address or off (default 127.0.0.1:8080)')
    .action(async (o: { config?: string; nbd?: string; iscsi?: string; http?: string }) => {
      // Loaded here: the daemon pulls in Koa and the NBD server, which no other command needs.
      const { Daemon } = await import('../daemon/daemon.js');
      const daemon = new Daemon({ home: ctx.homeDir, config: o.config, nbd: o.nbd, http: o.http, iscsi: o.iscsi });
      await daemon.start();
      const a = daemon.addresses;
      process.stderr.write(`strata: serving ${daemon.home.dir}${a.nbd ? `; NBD on ${a.nbd}` : ''}${a.http ? `; HTTP on ${a.http}` : ''}\n`);
      await new Promise<void>((resolve) => {
        let stopping = false;
        const onSignal = () => {
          if (stopping) {
            process.stderr.write('strata: forced shutdown\n');
            process.exit(130);
          }
          stopping = true;
          process.stderr.write('strata: shutting down (again to force)\n');
          daemon.stop().then(resolve, (e: Error) => {
            process.stderr.write(`strata: shutdown: ${e.message}\n`);
            process.exitCode = 1;
            resolve();
          });
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
    });
}
