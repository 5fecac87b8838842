// A worker thread that tokenizes dataset records for the CLI's engine (src/train/data/pool.ts;
// started by src/train/data/node-threads.ts). Registers tsx for the TypeScript sources, as
// bin/tabtune.mjs does, then answers the pool's messages.

import { parentPort } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { servePool } = await import('../src/train/data/pool.ts');
const port = parentPort;
port.on(
  'message',
  servePool((m, transfer) => port.postMessage(m, transfer)),
);
