// Hostile config.json sizes are refused by the parser, before any tensor list, estimate or
// allocation is made from them (num_hidden_layers: 1000000 used to take minutes and gigabytes).
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/model/config';
import { estimateModel } from '../../src/model/load';
import { makeTinyModel, type TinyModelType } from '../fixtures/tiny-model';

const configOf = (modelType: TinyModelType, overrides: Record<string, unknown>) => ({
  ...makeTinyModel({ modelType }).config,
  ...overrides,
});

describe('config.json size bounds', () => {
  it.each([
    ['llama', 'num_hidden_layers', 1_000_000],
    ['llama', 'hidden_size', 2 ** 30],
    ['llama', 'intermediate_size', 2 ** 40],
    ['llama', 'vocab_size', 1e9],
    ['llama', 'max_position_embeddings', 2 ** 50],
    ['llama', 'num_attention_heads', 1e7],
    ['qwen3', 'head_dim', 1e6],
    ['gpt2', 'n_layer', 1_000_000],
    ['gpt2', 'n_positions', 1e12],
    ['gpt2', 'n_embd', 2 ** 31],
  ] as const)('%s %s = %d is refused naming the file and key', (type, key, value) => {
    const raw = configOf(type, { [key]: value });
    expect(() => parseConfig(raw, 'config.json')).toThrow(
      new RegExp(`^config\\.json: "${key}" is ${value}, more than any model Tabtune can run \\(at most \\d+\\)`),
    );
  });

  it('the largest accepted sizes still estimate at once (no per-parameter work)', () => {
    const c = parseConfig(
      configOf('llama', {
        num_hidden_layers: 1024,
        hidden_size: 1 << 17,
        num_attention_heads: 4096,
        num_key_value_heads: 4096,
        intermediate_size: 1 << 20,
        vocab_size: 1 << 23,
      }),
    );
    const est = estimateModel(c);
    expect(est.tensors).toBe(1024 * 9 + 2);
    expect(est.params).toBeGreaterThan(1e14);
  });
});
