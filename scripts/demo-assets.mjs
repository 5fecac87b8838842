#!/usr/bin/env node
// Launcher for scripts/make-demo-assets.ts (the demo model and dataset in public/): registers tsx
// for TypeScript and bin/raw-loader.mjs for the engine's `?raw` WGSL imports, then runs it.
//   node scripts/demo-assets.mjs [--if-missing]
import module from 'node:module';

const { register } = await import('tsx/esm/api');
register();
module.register('../bin/raw-loader.mjs', import.meta.url);
const { main } = await import('./make-demo-assets.ts');
const code = await main(process.argv.slice(2));
process.exit(code);
