// Node module hooks (registered by bin/tabtune.mjs with module.register) that give `?raw` imports
// the meaning Vite gives them: `import code from '../../shaders/matmul.wgsl?raw'` yields a module
// whose default export is the file's text. Every other specifier passes through untouched.

import { readFile } from 'node:fs/promises';

const RAW = /[?&]raw(?:&|$)/;

export async function resolve(specifier, context, nextResolve) {
  const q = specifier.indexOf('?');
  if (q < 0 || !RAW.test(specifier.slice(q))) return nextResolve(specifier, context);
  // Resolve the path part relative to the importer; keep `?raw` on the URL so load() sees it.
  const url = new URL(specifier.slice(0, q), context.parentURL);
  if (url.protocol !== 'file:') return nextResolve(specifier, context);
  url.search = '?raw';
  return { url: url.href, shortCircuit: true };
}

export async function load(url, context, nextLoad) {
  if (!url.startsWith('file:') || !RAW.test(new URL(url).search)) return nextLoad(url, context);
  const file = new URL(url);
  file.search = '';
  const text = await readFile(file, 'utf8');
  return { format: 'module', source: `export default ${JSON.stringify(text)};\n`, shortCircuit: true };
}
