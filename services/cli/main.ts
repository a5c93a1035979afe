// `dalle <command>`: the process entry (bin/dalle.js); the dispatcher is commands.ts.
import { main } from './commands.ts';

// `dalle config show x | head` must not crash with EPIPE.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

process.exitCode = await main(process.argv.slice(2));
