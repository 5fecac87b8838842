/**
 * The buffers a ModelRunner records into (see runner.ts for the layer it computes): the batch
 * inputs and loss accumulators, every layer's saved activations (train), one shared set (eval,
 * infer, or train with activation checkpointing), the KV cache (infer) and the LoRA intermediates S.
 * Forward (runner-forward.ts) and backward (runner-backward.ts) read and write them through
 * RunnerState.
 *
 * Shape legend as in runner.ts: T tokens, H hidden, nH / nKV heads, hd head dim, I MLP width, r rank.
 */

import type { Gpu } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { Workspace } from '../gpu/workspace';
import { ropeInvFreq } from '../kernels/rope';
import type { GpuModel } from './gpu-model';

/** train: keeps every layer's activations for backward; eval: forward + loss only, one buffer set
 * shared by all layers; infer: like eval plus a KV cache for generation (batch 1). */
export type RunnerMode = 'train' | 'eval' | 'infer';

export interface RunnerOptions {
  mode: RunnerMode;
  /** Largest B*S (train) or largest prompt chunk (infer) this runner records. */
  maxTokens: number;
  /** infer: KV cache length (prompt + generated tokens). */
  maxContext?: number;
  /** Vocabulary chunk of the cross-entropy (tests force tiny chunks). */
  ceChunk?: number;
  /**
   * train: keep only each layer's input and recompute the layer just before its backward
   * (activation checkpointing). Same results bit for bit; activation memory drops from
   * ~layers x (everything a layer saves) to layers x T x H plus one layer's set.
   */
  checkpointActivations?: boolean;
}

export interface NormSave {
  y: Tensor; // [T, H] normalised output (input of the next linear)
  rstd: Tensor; // [T]
  mean: Tensor | null; // [T] LayerNorm only
}

export interface LayerActs {
  xIn: Tensor; // [T, H] residual stream entering the layer
  n1: NormSave;
  qkv: Tensor | null; // [T, 3H] GPT-2 fused projection output
  qPre: Tensor | null; // [T, nH*hd] before qk-norm (qwen3)
  kPre: Tensor | null;
  qRstd: Tensor | null; // [T*nH]
  kRstd: Tensor | null; // [T*nKV]
  q: Tensor; // [T, nH*hd] after RoPE
  k: Tensor; // [T, nKV*hd]
  v: Tensor; // [T, nKV*hd]
  o: Tensor; // [T, nH*hd] attention output
  lse: Tensor; // [T*nH]
  xMid: Tensor; // [T, H] residual after attention
  n2: NormSave;
  g: Tensor; // [T, I] gate (llama) or fc output (gpt2)
  u: Tensor | null; // [T, I] up (llama)
  a: Tensor; // [T, I] MLP activation
  s: Map<string, Tensor>; // LoRA S per module path [T, r]
}

/** Everything forward and backward record with; owned (and freed) by the ModelRunner. */
export interface RunnerState {
  readonly gpu: Gpu;
  readonly model: GpuModel;
  readonly opts: RunnerOptions;
  readonly ids: Tensor; // u32 [maxT]
  readonly positions: Tensor; // u32 [maxT]
  readonly targets: Tensor; // u32 [maxT]
  readonly lossSum: Tensor; // f32 [1] running sum of token losses
  readonly countSum: Tensor; // f32 [1] running count of counted tokens
  readonly lossOut: Tensor; // f32 [2]: (sum, count) copied out for one readback
  readonly rowLoss: Tensor; // f32 [maxT]
  readonly logits: Tensor | null; // f32 [V] (infer)
  readonly acts: LayerActs[];
  readonly xFinal: Tensor; // [T, H] residual after the last layer
  readonly nf: NormSave; // final norm
  readonly ws: Workspace;
  readonly kCache: Tensor[]; // infer: per layer [maxContext, nKV*hd]
  readonly vCache: Tensor[];
  readonly lastHidden: Tensor | null; // infer: [1, H]
  /** RoPE frequencies when the config scales them (llama3 / linear); undefined = plain theta. */
  readonly invFreq: Float32Array | undefined;
  /** Every tensor above (and each S made later), freed by dispose. */
  readonly owned: Tensor[];
}

export function createRunnerState(gpu: Gpu, model: GpuModel, opts: RunnerOptions): RunnerState {
  const c = model.config;
  const T = opts.maxTokens;
  const owned: Tensor[] = [];
  const cat = opts.mode === 'train' ? 'activations' : 'scratch';
  const mk = (label: string, shape: number[], dtype: 'f32' | 'u32' = 'f32', category = cat) => {
    const t = gpu.tensor(label, shape, dtype, category as 'activations');
    owned.push(t);
    return t;
  };
  const ws = new Workspace(gpu);
  const invFreq = c.rope?.scaling ? ropeInvFreq(c.rope.rotaryDim, c.rope.theta, c.rope.scaling) : undefined;
  const ids = mk('ids', [T], 'u32', 'io');
  const positions = mk('positions', [T], 'u32', 'io');
  const targets = mk('targets', [T], 'u32', 'io');
  const lossSum = mk('lossSum', [1], 'f32', 'io');
  const countSum = mk('countSum', [1], 'f32', 'io');
  const lossOut = mk('lossOut', [2], 'f32', 'io');
  const rowLoss = mk('rowLoss', [T], 'f32', 'io');
  const H = c.hiddenSize;
  const qW = c.numHeads * c.headDim;
  const kvW = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const gpt2 = c.arch === 'gpt2';
  const norm = (l: string): NormSave => ({
    y: mk(`${l}.y`, [T, H]),
    rstd: mk(`${l}.rstd`, [T]),
    mean: c.norm === 'layer' ? mk(`${l}.mean`, [T]) : null,
  });
  const layerActs = (l: string): LayerActs => ({
    xIn: mk(`${l}.xIn`, [T, H]),
    n1: norm(`${l}.n1`),
    qkv: gpt2 ? mk(`${l}.qkv`, [T, qW + 2 * kvW]) : null,
    qPre: c.qkNorm ? mk(`${l}.qPre`, [T, qW]) : null,
    kPre: c.qkNorm ? mk(`${l}.kPre`, [T, kvW]) : null,
    qRstd: c.qkNorm ? mk(`${l}.qRstd`, [T * c.numHeads]) : null,
    kRstd: c.qkNorm ? mk(`${l}.kRstd`, [T * c.numKvHeads]) : null,
    q: mk(`${l}.q`, [T, qW]),
    k: mk(`${l}.k`, [T, kvW]),
    v: mk(`${l}.v`, [T, kvW]),
    o: mk(`${l}.o`, [T, qW]),
    lse: mk(`${l}.lse`, [T * c.numHeads]),
    xMid: mk(`${l}.xMid`, [T, H]),
    n2: norm(`${l}.n2`),
    g: mk(`${l}.g`, [T, I]),
    u: gpt2 ? null : mk(`${l}.u`, [T, I]),
    a: mk(`${l}.a`, [T, I]),
    s: new Map(),
  });
  const kCache: Tensor[] = [];
  const vCache: Tensor[] = [];
  let acts: LayerActs[];
  if (opts.mode === 'train' && !opts.checkpointActivations) {
    acts = Array.from({ length: c.numLayers }, (_, i) => layerActs(`L${i}`));
  } else if (opts.mode === 'train') {
    // One shared set of layer activations; each layer keeps only its own input.
    const shared = layerActs('L*');
    acts = Array.from({ length: c.numLayers }, (_, i) =>
      i === 0 ? shared : { ...shared, xIn: mk(`L${i}.xIn`, [T, H]) },
    );
  } else {
    const shared = layerActs('L*');
    acts = Array.from({ length: c.numLayers }, () => shared);
    const ctx = opts.maxContext ?? T;
    for (let i = 0; i < c.numLayers && opts.mode === 'infer'; i++) {
      kCache.push(mk(`L${i}.kCache`, [ctx, kvW], 'f32', 'activations'));
      vCache.push(mk(`L${i}.vCache`, [ctx, kvW], 'f32', 'activations'));
    }
  }
  const xFinal = mk('xFinal', [T, H]);
  const nf = norm('final');
  const lastHidden = opts.mode === 'infer' ? mk('lastHidden', [1, H]) : null;
  const logits = opts.mode === 'infer' ? mk('logits', [c.vocabSize]) : null;
  return {
    gpu,
    model,
    opts,
    ids,
    positions,
    targets,
    lossSum,
    countSum,
    lossOut,
    rowLoss,
    logits,
    acts,
    xFinal,
    nf,
    ws,
    kCache,
    vCache,
    lastHidden,
    invFreq,
    owned,
  };
}

/** The LoRA intermediate S [maxT, r] of module `path` in layer set L, made on first use. */
export function loraScratch(st: RunnerState, L: LayerActs, path: string, r: number): Tensor {
  const key = `${path}#${r}`;
  let s = L.s.get(key);
  if (!s) {
    s = st.gpu.tensor(`${path}.S`, [st.opts.maxTokens, r], 'f32', st.opts.mode === 'train' ? 'activations' : 'scratch');
    st.owned.push(s);
    L.s.set(key, s);
  }
  return s;
}
