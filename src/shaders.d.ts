// WGSL sources are imported as strings: `import code from '../../shaders/matmul.wgsl?raw'`.
// Vite/Vitest handle `?raw` natively; the CLI registers a loader for it (bin/raw-loader.mjs).
declare module '*.wgsl?raw' {
  const source: string;
  export default source;
}
