#!/usr/bin/env node
// Launcher for scripts/llama2c.ts (a llama2.c model + tokenizer -> a Hugging Face Llama folder):
// registers tsx for TypeScript, then runs it.
//   node scripts/llama2c-to-hf.mjs --model MODEL.bin --tokenizer TOKENIZER.bin --out DIR [--chat-template FILE] [--card FILE]
const { register } = await import('tsx/esm/api');
register();
const { main } = await import('./llama2c.ts');
process.exit(main(process.argv.slice(2)));
