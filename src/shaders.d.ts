// WGSL sources are imported as strings: `import code from '../../shaders/matmul.wgsl?raw'`.
// Vite/Vitest handle `?raw` natively; the CLI registers a loader for it (bin/raw-loader.mjs).
declare module '*.wgsl?raw' {
  const source: string;
  export default source;
}

// The Python trainer a recipe folder ships (src/recipe/train.py), imported the same way.
declare module '*.py?raw' {
  const source: string;
  export default source;
}
