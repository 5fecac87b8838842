/** Module lists shaped like the registry's LinearModule[] for a tiny Llama and a tiny GPT-2. */
import type { ModuleLike } from '../../src/lora/config';

export interface FixtureModule extends ModuleLike {
  layer: number;
}

/** Llama family: hidden 64, 4 heads of 16 with 2 KV heads (k/v out 32), MLP 128. */
export function llamaModules(layers = 2): FixtureModule[] {
  const out: FixtureModule[] = [];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    const add = (sub: string, name: string, inF: number, outF: number): void => {
      out.push({ path: `${p}.${sub}.${name}`, name, inF, outF, transposed: false, layer: l });
    };
    add('self_attn', 'q_proj', 64, 64);
    add('self_attn', 'k_proj', 64, 32);
    add('self_attn', 'v_proj', 64, 32);
    add('self_attn', 'o_proj', 64, 64);
    add('mlp', 'gate_proj', 64, 128);
    add('mlp', 'up_proj', 64, 128);
    add('mlp', 'down_proj', 128, 64);
  }
  return out;
}

/** GPT-2: hidden 32, Conv1D modules (weights stored [in, out]). */
export function gpt2Modules(layers = 2): FixtureModule[] {
  const out: FixtureModule[] = [];
  for (let l = 0; l < layers; l++) {
    const p = `transformer.h.${l}`;
    const add = (sub: string, name: string, inF: number, outF: number): void => {
      out.push({ path: `${p}.${sub}.${name}`, name, inF, outF, transposed: true, layer: l });
    };
    add('attn', 'c_attn', 32, 96);
    add('attn', 'c_proj', 32, 32);
    add('mlp', 'c_fc', 32, 128);
    add('mlp', 'c_proj', 128, 32);
  }
  return out;
}
