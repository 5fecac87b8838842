/**
 * Every supported model_type: its config parser (config.json -> ModelConfig flags) and, per family,
 * its weight layout. One file per group of related families says what differs between them.
 */
import type { ModelConfig } from '../config-types';
import type { Reader } from '../config-reader';
import type { Layout } from '../layout';
import { GEMMA_CONFIGS, GEMMA_LAYOUTS } from './gemma';
import { GPT_CONFIGS, GPT_LAYOUTS } from './gpt';
import { LLAMA_CONFIGS, LLAMA_LAYOUTS } from './llama';
import { NEOX_CONFIGS, NEOX_LAYOUTS } from './neox';
import { OPT_BLOOM_FALCON_CONFIGS, OPT_BLOOM_FALCON_LAYOUTS } from './opt-bloom-falcon';

/** model_type -> parser. */
export const FAMILY_CONFIGS: Readonly<Record<string, (r: Reader) => ModelConfig>> = {
  ...LLAMA_CONFIGS,
  ...GEMMA_CONFIGS,
  ...NEOX_CONFIGS,
  ...GPT_CONFIGS,
  ...OPT_BLOOM_FALCON_CONFIGS,
};

/** ModelConfig.family -> weight layout. */
export const FAMILY_LAYOUTS: Readonly<Record<string, (c: ModelConfig) => Layout>> = {
  ...LLAMA_LAYOUTS,
  ...GEMMA_LAYOUTS,
  ...NEOX_LAYOUTS,
  ...GPT_LAYOUTS,
  ...OPT_BLOOM_FALCON_LAYOUTS,
};
