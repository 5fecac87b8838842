#!/usr/bin/env node
// Launcher for scripts/make-demo-assets.ts (the demo model and dataset in public/): registers tsx
// for TypeScript, then runs it.
//   node scripts/demo-assets.mjs [--llama2c DIR] [--if-missing]
const { register } = await import('tsx/esm/api');
register();
const { main } = await import('./make-demo-assets.ts');
process.exit(main(process.argv.slice(2)));
