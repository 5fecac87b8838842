/** CPU side of models: sources, config, architecture registry, loading, tokenizer, safetensors. */
export * from './safetensors';
export * from './source';
export * from './config';
export * from './registry';
export * from './load';
export * from './tokenizer';
