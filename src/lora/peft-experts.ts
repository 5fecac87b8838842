/**
 * PEFT adapters of transformers 5's fused mixture-of-experts layers, read onto Tabtune's
 * per-expert modules.
 *
 * transformers 5 keeps a Mixtral layer's experts as two stacked parameters, `mlp.experts.gate_up_proj`
 * [E, 2I, H] (each expert's w1 rows, then its w3 rows) and `mlp.experts.down_proj` [E, H, I], and the
 * router as `mlp.gate.weight`; PEFT (0.18+) adapts them through `target_parameters` with a
 * ParamWrapper per parameter, nested on the experts module (the inner one's keys carry
 * `.base_layer`), and its all-linear on such a model targets them all, gate_up_proj at twice the
 * rank. A ParamWrapper's A is [E·r, in] (expert e's rows e·r .. e·r + r - 1) and its B [out, E·r]
 * (expert e's column k at k·E + e); expert e's update is B_e·A_e·scale.
 *
 * Tabtune's modules (and the checkpoints' keys) are transformers 4's: per expert
 * `block_sparse_moe.experts.{e}.w1` (gate), `w3` (up), `w2` (down), and `block_sparse_moe.gate`. A
 * gate_up_proj LoRA of rank r' becomes, exactly, w1 and w3 LoRAs of rank r' sharing expert e's A
 * (w1 takes B_e's first I rows, w3 the rest); down_proj's becomes w2's; the router's is renamed.
 * The ranks and alphas of the converted modules go into rank_pattern / alpha_pattern, one key per
 * layer, ahead of the adapter's own keys. Adapters saved in transformers 4's layout need nothing
 * (their keys are the modules' paths); PEFT converts Tabtune's exports the same way on load.
 */

import { type SafeTensor, tensorToF32 } from '../model/safetensors';
import { type LoraConfig, type ModuleLike, loraAlpha, loraRank } from './config';

const KEY = /^(.+)\.(lora_A|lora_B)((?:\.[A-Za-z0-9_-]+)?)\.weight$/;
const EXPERTS = /^(.*)\.mlp\.experts((?:\.base_layer)*)$/;
const ROUTER = /^(.*)\.mlp\.gate$/;

export class ExpertAdapterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExpertAdapterError';
  }
}

const f32 = (shape: number[], data: Float32Array): SafeTensor => ({
  dtype: 'F32',
  shape,
  data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
});
const esc = (s: string) => s.replace(/[.\\[\]()*+?^$|{}]/g, '\\$&');

/** The parameter names PEFT targets on fused experts that this conversion handles. */
export const EXPERT_PARAMETERS = ['gate_up_proj', 'down_proj', 'gate.weight'];

/**
 * Replaces the fused-expert and router LoRA tensors of `tensors` (an adapter file's, keys as saved)
 * by per-expert ones named after `modules`, and adds their ranks and alphas to `config`. Returns
 * the tensors unchanged when the model has no per-expert modules or the adapter no fused keys.
 * `prefix` is PEFT's key prefix ("base_model.model."), kept as found.
 */
export function unfuseExpertAdapter(
  tensors: Map<string, SafeTensor>,
  config: LoraConfig,
  modules: readonly ModuleLike[],
  fileName: string,
): { tensors: Map<string, SafeTensor>; converted: number } {
  const paths = new Set(modules.map((m) => m.path));
  const byPath = new Map(modules.map((m) => [m.path, m]));
  const out = new Map<string, SafeTensor>();
  const rank: Record<string, number> = {};
  const alpha: Record<string, number> = {};
  /** Rank and alpha of the modules `key` matches (module `path` among them), where the config says otherwise. */
  const setRank = (key: string, path: string, r: number, a: number) => {
    if (loraRank(config, path) !== r) rank[key] = r;
    if (loraAlpha(config, path) !== a) alpha[key] = a;
  };
  let converted = 0;
  /** Leaf names of the converted modules. */
  const names = new Set<string>();
  const wrappers = new Map<string, { scope: string; prefix: string; suffix: string; A?: SafeTensor; B?: SafeTensor }>();
  for (const [key, t] of tensors) {
    const m = KEY.exec(key);
    const path = m?.[1] ?? '';
    const prefix = path.startsWith('base_model.model.') ? 'base_model.model.' : '';
    const rel = path.slice(prefix.length);
    const ex = m ? EXPERTS.exec(rel) : null;
    const ro = m ? ROUTER.exec(rel) : null;
    if (ex && paths.has(`${ex[1]}.block_sparse_moe.experts.0.w1`)) {
      const w = wrappers.get(path) ?? { scope: ex[1]!, prefix, suffix: m![3]! };
      w[m![2] === 'lora_A' ? 'A' : 'B'] = t;
      wrappers.set(path, w);
    } else if (ro && paths.has(`${ro[1]}.block_sparse_moe.gate`)) {
      const to = `${ro[1]}.block_sparse_moe.gate`;
      out.set(`${prefix}${to}.${m![2]}${m![3]}.weight`, t);
      if (m![2] === 'lora_A') {
        setRank(esc(to), to, t.shape[0]!, loraAlpha(config, `${ro[1]}.mlp.gate.weight`));
        names.add('gate');
        converted++;
      }
    } else out.set(key, t);
  }
  for (const [path, w] of wrappers) {
    if (!w.A || !w.B)
      throw new ExpertAdapterError(
        `${fileName}: "${path}" has lora_${w.A ? 'A' : 'B'} but no lora_${w.A ? 'B' : 'A'}.`,
      );
    const scope = w.scope;
    const w1 = byPath.get(`${scope}.block_sparse_moe.experts.0.w1`)!;
    const H = w1.inF;
    const I = w1.outF;
    let E = 0;
    while (paths.has(`${scope}.block_sparse_moe.experts.${E}.w1`)) E++;
    const [rows, inF] = w.A.shape as [number, number];
    const [outF, cols] = w.B.shape as [number, number];
    const gateUp = inF === H && outF === 2 * I;
    const down = inF === I && outF === H;
    if (w.A.shape.length !== 2 || w.B.shape.length !== 2 || rows !== cols || rows % E !== 0 || !(gateUp || down)) {
      throw new ExpertAdapterError(
        `${fileName}: the LoRA of "${path}" has A [${w.A.shape.join(', ')}] and B [${w.B.shape.join(', ')}]; ` +
          `for this model's ${E} experts (hidden ${H}, expert width ${I}) gate_up_proj needs A [${E}·r, ${H}] and B [${2 * I}, ${E}·r], ` +
          `down_proj A [${E}·r, ${I}] and B [${H}, ${E}·r]. The adapter was probably made for another model.`,
      );
    }
    const r = rows / E;
    const param = `${scope}.mlp.experts.${gateUp ? 'gate_up_proj' : 'down_proj'}`;
    const want = loraRank(config, param);
    if (want !== r) {
      throw new ExpertAdapterError(
        `${fileName}: the LoRA of "${param}" has rank ${r} (A [${rows}, ${inF}] over ${E} experts), ` +
          `but adapter_config.json gives it rank ${want} (r / rank_pattern). Its config does not match its weights.`,
      );
    }
    const A = tensorToF32(w.A);
    const B = tensorToF32(w.B);
    for (let e = 0; e < E; e++) {
      const a = A.slice(e * r * inF, (e + 1) * r * inF);
      const be = new Float32Array(outF * r);
      for (let o = 0; o < outF; o++) for (let k = 0; k < r; k++) be[o * r + k] = B[o * cols + k * E + e]!;
      const put = (name: string, b: Float32Array, bOut: number) => {
        const p = `${scope}.block_sparse_moe.experts.${e}.${name}`;
        out.set(`${w.prefix}${p}.lora_A${w.suffix}.weight`, f32([r, inF], a));
        out.set(`${w.prefix}${p}.lora_B${w.suffix}.weight`, f32([bOut, r], b));
        names.add(name);
        converted++;
      };
      if (gateUp) {
        put('w1', be.slice(0, I * r), I);
        put('w3', be.slice(I * r), I);
      } else put('w2', be, H);
    }
    const key = `${esc(scope)}\\.block_sparse_moe\\.experts\\.\\d+\\.${gateUp ? 'w[13]' : 'w2'}`;
    setRank(key, `${scope}.block_sparse_moe.experts.0.${gateUp ? 'w1' : 'w2'}`, r, loraAlpha(config, param));
  }
  if (converted === 0) return { tensors, converted };
  config.rank_pattern = { ...rank, ...config.rank_pattern };
  config.alpha_pattern = { ...alpha, ...config.alpha_pattern };
  // the converted modules are targets too (PEFT saved only the attention's in target_modules)
  if (Array.isArray(config.target_modules)) config.target_modules = [...new Set([...config.target_modules, ...names])];
  return { tensors: out, converted };
}

/**
 * Why PEFT would not load these per-expert modules as they are, or null. PEFT converts per-expert
 * Mixtral adapters (transformers 4 names) for transformers 5 assuming every expert and router
 * module has the adapter's r and lora_alpha (w1 + w3 become gate_up_proj at 2r and 2·lora_alpha;
 * per-module rank_pattern / alpha_pattern keys do not carry over), so an adapter whose experts have
 * other ranks or scales (one read from transformers 5's fused layout, then trained further) would
 * load with the wrong shapes or scales there.
 */
export function expertExportProblem(
  config: LoraConfig,
  modules: readonly { path: string; r: number }[],
): string | null {
  for (const m of modules) {
    if (!/\.block_sparse_moe\.(gate|experts\.\d+\.w[123])$/.test(m.path)) continue;
    const alpha = loraAlpha(config, m.path);
    if (m.r !== config.r || alpha !== config.lora_alpha) {
      return (
        `"${m.path}" has rank ${m.r} and lora_alpha ${alpha}, but PEFT loads a Mixtral adapter's expert and router ` +
        `LoRAs only at the adapter's r (${config.r}) and lora_alpha (${config.lora_alpha}) (it fuses w1 and w3 into ` +
        `gate_up_proj at twice both); this adapter started from one saved in transformers 5's fused layout. ` +
        `Train a new adapter (without --init-from) to export it.`
      );
    }
  }
  return null;
}
