/**
 * PEFT adapters of transformers 5's fused Mixtral experts (target_parameters: gate_up_proj,
 * down_proj, the router's gate.weight) read onto Tabtune's per-expert modules: the layout of
 * PEFT's ParamWrapper (A [E·r, in] expert-major, B [out, E·r] with expert e's column k at k·E + e)
 * written out here independently, each expert's A/B recovered exactly.
 */
import { describe, expect, it } from 'vitest';
import { type ModuleLike, loraScale } from '../../src/lora/config';
import { exportPeft } from '../../src/lora/peft';
import { importPeft } from '../../src/lora/peft-import';
import { writeSafetensors } from '../../src/model/safetensors';

const H = 6;
const I = 5;
const E = 3;
const L = 2;

function mixtralModules(): ModuleLike[] {
  const out: ModuleLike[] = [];
  const add = (path: string, inF: number, outF: number) =>
    out.push({ path, name: path.slice(path.lastIndexOf('.') + 1), inF, outF, transposed: false });
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) add(`${p}.self_attn.${n}`, H, H);
    add(`${p}.block_sparse_moe.gate`, H, E);
    for (let e = 0; e < E; e++) {
      add(`${p}.block_sparse_moe.experts.${e}.w1`, H, I);
      add(`${p}.block_sparse_moe.experts.${e}.w2`, I, H);
      add(`${p}.block_sparse_moe.experts.${e}.w3`, H, I);
    }
  }
  return out;
}

/** A value that names its place: expert, row, column, tensor. */
const val = (tag: number, e: number, i: number, j: number) => tag * 1000 + e * 100 + i * 10 + j;

/** PEFT's stacked A [E·r, in] and B [out, E·r] from per-expert A_e [r, in], B_e [out, r]. */
function stacked(r: number, inF: number, outF: number, tag: number) {
  const A = new Float32Array(E * r * inF);
  const B = new Float32Array(outF * E * r);
  for (let e = 0; e < E; e++)
    for (let k = 0; k < r; k++) {
      for (let i = 0; i < inF; i++) A[(e * r + k) * inF + i] = val(tag, e, k, i);
      for (let o = 0; o < outF; o++) B[o * E * r + k * E + e] = -val(tag, e, o, k);
    }
  return { A, B };
}

function adapter(r: number, opts: { rankPattern?: number } = {}) {
  const rg = opts.rankPattern ?? 2 * r;
  const tensors: { name: string; dtype: 'F32'; shape: number[]; data: Float32Array }[] = [];
  const put = (path: string, A: Float32Array, B: Float32Array, a: number[], b: number[]) => {
    tensors.push({ name: `base_model.model.${path}.lora_A.weight`, dtype: 'F32', shape: a, data: A });
    tensors.push({ name: `base_model.model.${path}.lora_B.weight`, dtype: 'F32', shape: b, data: B });
  };
  for (let l = 0; l < L; l++) {
    const gu = stacked(2 * r, H, 2 * I, 1);
    put(`model.layers.${l}.mlp.experts.base_layer`, gu.A, gu.B, [E * 2 * r, H], [2 * I, E * 2 * r]);
    const dn = stacked(r, I, H, 2);
    put(`model.layers.${l}.mlp.experts`, dn.A, dn.B, [E * r, I], [H, E * r]);
    put(
      `model.layers.${l}.mlp.gate`,
      new Float32Array(r * H).fill(0.5),
      new Float32Array(E * r).fill(-1),
      [r, H],
      [E, r],
    );
    put(
      `model.layers.${l}.self_attn.q_proj`,
      new Float32Array(r * H).fill(1),
      new Float32Array(H * r).fill(2),
      [r, H],
      [H, r],
    );
  }
  const config = {
    peft_type: 'LORA',
    r,
    lora_alpha: 2 * r,
    target_modules: ['q_proj'],
    target_parameters: ['gate_up_proj', 'down_proj', 'gate.weight'],
    rank_pattern: { '.*\\.gate_up_proj': rg },
    alpha_pattern: { '.*\\.gate_up_proj': 6 * r },
  };
  return { adapterConfig: JSON.stringify(config), adapterModel: writeSafetensors(tensors, { format: 'pt' }) };
}

describe('PEFT adapters of fused experts (transformers 5) onto per-expert modules', () => {
  it('splits gate_up_proj into w1 / w3 sharing A, down_proj into w2, renames the router; ranks and alphas kept', () => {
    const r = 2;
    const got = importPeft(adapter(r), mixtralModules());
    expect(got.warnings.join('\n')).not.toMatch(/target_parameters/);
    const by = new Map(got.modules.map((m) => [m.path, m]));
    expect(got.modules).toHaveLength(L * (1 + 1 + 3 * E));
    for (let l = 0; l < L; l++) {
      for (let e = 0; e < E; e++) {
        const p = `model.layers.${l}.block_sparse_moe.experts.${e}`;
        const w1 = by.get(`${p}.w1`)!;
        const w3 = by.get(`${p}.w3`)!;
        const w2 = by.get(`${p}.w2`)!;
        expect([w1.r, w3.r, w2.r]).toEqual([2 * r, 2 * r, r]);
        for (let k = 0; k < 2 * r; k++)
          for (let i = 0; i < H; i++) {
            expect(w1.a[k * H + i]).toBe(val(1, e, k, i));
            expect(w3.a[k * H + i]).toBe(val(1, e, k, i));
          }
        for (let o = 0; o < I; o++)
          for (let k = 0; k < 2 * r; k++) {
            expect(w1.b[o * 2 * r + k]).toBe(-val(1, e, o, k));
            expect(w3.b[o * 2 * r + k]).toBe(-val(1, e, I + o, k));
          }
        for (let k = 0; k < r; k++) for (let i = 0; i < I; i++) expect(w2.a[k * I + i]).toBe(val(2, e, k, i));
        for (let o = 0; o < H; o++) for (let k = 0; k < r; k++) expect(w2.b[o * r + k]).toBe(-val(2, e, o, k));
      }
      expect(by.get(`model.layers.${l}.block_sparse_moe.gate`)!.r).toBe(r);
    }
    // gate_up_proj's rank and alpha (rank_pattern 2r, alpha_pattern 6r) carry over to w1 / w3; w2 has r, lora_alpha 2r
    expect(loraScale(got.config, { path: 'model.layers.1.block_sparse_moe.experts.2.w3' })).toBe(3);
    expect(loraScale(got.config, { path: 'model.layers.1.block_sparse_moe.experts.2.w2' })).toBe(2);
    expect(got.config.target_modules).toEqual(expect.arrayContaining(['q_proj', 'gate', 'w1', 'w2', 'w3']));
  });

  it('exporting per-expert modules whose rank or alpha PEFT would not reproduce is refused, naming the module', () => {
    const got = importPeft(adapter(2), mixtralModules());
    expect(() => exportPeft({ config: got.config, baseModel: 'm', modules: got.modules, fanInFanOut: false })).toThrow(
      /Cannot export this adapter for PEFT: "model\.layers\.0\.block_sparse_moe\.experts\.0\.w1" has rank 4 and lora_alpha 12.*r \(2\).*without --init-from/,
    );
    // the same modules at the adapter's r and lora_alpha export
    const plain = got.modules.filter((m) => m.r === 2);
    const cfg = { ...got.config, rank_pattern: {}, alpha_pattern: {}, lora_alpha: 4 };
    const w2 = plain.filter((m) => m.path.endsWith('.w2'));
    expect(w2).toHaveLength(L * E);
    expect(() => exportPeft({ config: cfg, baseModel: 'm', modules: plain, fanInFanOut: false })).not.toThrow();
  });

  it('a rank that does not match the config is an error naming the parameter', () => {
    expect(() => importPeft(adapter(2, { rankPattern: 3 }), mixtralModules())).toThrow(
      /"model\.layers\.0\.mlp\.experts\.gate_up_proj" has rank 4 .*gives it rank 3/,
    );
  });
});
