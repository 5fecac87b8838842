#!/usr/bin/env node
// The `tabtune` command. Runs the TypeScript sources directly (no build step): registers tsx for
// .ts files and bin/raw-loader.mjs for `?raw` imports of WGSL, then calls src/cli/main.ts.

import module from 'node:module';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 6) || typeof module.register !== 'function') {
  process.stderr.write(`tabtune: Node ${process.versions.node} is too old; Node >= 20.6 is needed.\n`);
  process.exit(1);
}

let registerTsx;
try {
  ({ register: registerTsx } = await import('tsx/esm/api'));
} catch {
  process.stderr.write('tabtune: dependencies are not installed; run `npm ci` in the repository first.\n');
  process.exit(1);
}
registerTsx();
// Hooks registered later run first: the raw loader sees `?raw` specifiers before tsx does.
module.register('./raw-loader.mjs', import.meta.url);

const { main } = await import('../src/cli/main.ts');
const code = await main(process.argv.slice(2));
// A WebGPU instance can keep the event loop alive after its device is destroyed; leave explicitly
// once stdout and stderr have drained.
await Promise.all(
  [process.stdout, process.stderr].map((s) => new Promise((r) => (s.writableNeedDrain ? s.once('drain', r) : r()))),
);
process.exit(code);
