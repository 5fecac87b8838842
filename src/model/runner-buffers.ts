/**
 * The buffers a ModelRunner records into (see runner.ts for the layer it computes): the batch
 * inputs and loss accumulators, every layer's saved activations (train), one shared set (eval,
 * infer, or train with activation checkpointing), the KV cache (infer) and the LoRA intermediates S.
 * Which tensors a layer set has follows the config's flags (fused projections, q/k norms, norms
 * around and after the sublayers, gated MLP, experts); forward (runner-forward.ts) and backward
 * (runner-backward.ts) read and write them through RunnerState.
 *
 * Shape legend as in runner.ts: T tokens, H hidden, E embedDim, nH / nKV heads, hd head dim,
 * I MLP width, r rank.
 */

import type { Gpu } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { Workspace } from '../gpu/workspace';
import { ropeInvFreq } from '../numerics/rope';
import type { NormKind } from './config';
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

/** A norm's input, output and saved statistics (rows of `dim`). */
export interface NormSave {
  x: Tensor;
  y: Tensor;
  rstd: Tensor; // [rows]
  mean: Tensor | null; // [rows] LayerNorm only
}

/** One layer's tensors; null where the config's flags make no use of them. */
export interface LayerActs {
  xIn: Tensor; // [T, H] residual stream entering the layer
  nAttn: NormSave | null; // norm before attention; y = the attention input
  qkv: Tensor | null; // [T, nH*hd + 2 nKV*hd] fused projection output
  qn: NormSave | null; // q norm: x = q before it [T, nH*hd], y = q
  kn: NormSave | null;
  q: Tensor; // [T, nH*hd] after norm and RoPE
  k: Tensor; // [T, nKV*hd]
  v: Tensor; // [T, nKV*hd]
  o: Tensor; // [T, nH*hd] attention output
  lse: Tensor; // [T*nH]
  attnOut: Tensor | null; // [T, H] o_proj output, when it does not accumulate straight into the residual
  nAttnOut: NormSave | null; // norm of attnOut
  sum1: Tensor | null; // [T, H] x + attention, before a norm that follows the residual (OPT post-norm)
  xMid: Tensor | null; // [T, H] sequential blocks: the residual after attention
  y1: NormSave | null; // OPT post-norm: xMid = norm(sum1)
  nMlp: NormSave | null; // the MLP's own input norm
  gu: Tensor | null; // [T, 2I] fused gate-up output
  g: Tensor | null; // [T, I] gate, or fc_in output
  u: Tensor | null; // [T, I] up
  a: Tensor; // [T, I] MLP activation ([1], unused, with experts)
  /** Mixture of experts: router logits and weights [T, E], each expert's gate, up, activation [T, I] and output [T, H]. */
  moe: { logits: Tensor; w: Tensor; experts: { g: Tensor; u: Tensor; a: Tensor; o: Tensor }[] } | null;
  mlpOut: Tensor | null; // [T, H] down / fc_out output, when not accumulated into the residual
  nMlpOut: NormSave | null;
  sum2: Tensor | null; // [T, H] OPT post-norm: x_mid + MLP before its norm
  y2: NormSave | null; // OPT post-norm: layer output = norm(sum2)
  s: Map<string, Tensor>; // LoRA S per module path [T, r]
}

/** Everything forward and backward record with; owned (and freed) by the ModelRunner. */
export interface RunnerState {
  readonly gpu: Gpu;
  readonly model: GpuModel;
  readonly opts: RunnerOptions;
  readonly ids: Tensor; // u32 [maxT]
  readonly positions: Tensor; // u32 [maxT]
  readonly keyStart: Tensor; // u32 [maxT]: packed rows, each token's example start (ForwardArgs.packed)
  /** u32 [maxT]: rows of the learned position table (positions + offset), when the offset is not 0. */
  readonly posIds: Tensor | null;
  readonly targets: Tensor; // u32 [maxT]
  readonly lossSum: Tensor; // f32 [1] running sum of token losses
  readonly countSum: Tensor; // f32 [1] running count of counted tokens
  readonly lossOut: Tensor; // f32 [2]: (sum, count) copied out for one readback
  readonly rowLoss: Tensor; // f32 [maxT]
  readonly logits: Tensor | null; // f32 [V] (infer)
  /** [T, E] the token embedding before project_in / the embedding norm (null when it goes straight to layer 0). */
  readonly embRaw: Tensor | null;
  readonly nEmbed: NormSave | null; // BLOOM's embedding norm
  readonly acts: LayerActs[];
  readonly xFinal: Tensor; // [T, H] residual after the last layer
  readonly nf: NormSave | null; // final norm
  readonly hOut: Tensor | null; // [T, E] project_out output (OPT-350m)
  readonly topS: Map<string, Tensor>; // LoRA S of modules outside the layers
  readonly ws: Workspace;
  readonly kCache: Tensor[]; // infer: per layer [maxContext, nKV*hd]
  readonly vCache: Tensor[];
  readonly lastHidden: Tensor | null; // infer: [1, E]
  /** Per layer: RoPE frequencies (null for layers without RoPE). */
  readonly invFreq: (Float32Array | null)[];
  /** Every tensor above (and each S made later), freed by dispose. */
  readonly owned: Tensor[];
}

/** The hidden states the LM head reads: project_out's output, the final norm's, or the last layer's. */
export function headInput(st: RunnerState): Tensor {
  return st.hOut ?? st.nf?.y ?? st.xFinal;
}

export function createRunnerState(gpu: Gpu, model: GpuModel, opts: RunnerOptions): RunnerState {
  const c = model.config;
  const b = c.block;
  const T = opts.maxTokens;
  const owned: Tensor[] = [];
  const cat = opts.mode === 'train' ? 'activations' : 'scratch';
  const mk = (label: string, shape: number[], dtype: 'f32' | 'u32' = 'f32', category = cat) => {
    const t = gpu.tensor(label, shape, dtype, category as 'activations');
    owned.push(t);
    return t;
  };
  const maybe = (yes: boolean, label: string, shape: number[]) => (yes ? mk(label, shape) : null);
  const ws = new Workspace(gpu);
  const H = c.hiddenSize;
  const E = c.embedDim;
  const qW = c.numHeads * c.headDim;
  const kvW = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const arch = model.arch;
  const fused = (role: string) => arch.layers[0]!.linears.some((m) => m.role === role);
  /** A norm over `rows` rows whose output is `y` (allocated when not given). */
  const norm = (l: string, x: Tensor, kind: NormKind, rows = T, dim = H, y?: Tensor): NormSave => ({
    x,
    y: y ?? mk(`${l}.y`, [rows, dim]),
    rstd: mk(`${l}.rstd`, [rows]),
    mean: kind === 'layer' ? mk(`${l}.mean`, [rows]) : null,
  });
  const moe = c.moe;
  const qk = c.attention.qkNorm;
  const qkRows = (heads: number) => (qk?.over === 'all' ? T : T * heads);
  // Sublayer outputs go straight into the residual (copy, then accumulate) unless a norm or a
  // multiplier sits in between.
  const attnDirect = !b.attnOutNorm && b.residualScale === 1;
  const mlpDirect = !b.mlpOutNorm && b.residualScale === 1;
  const layerActs = (l: string): LayerActs => {
    const xIn = mk(`${l}.xIn`, [T, H]);
    const q = mk(`${l}.q`, [T, qW]);
    const k = mk(`${l}.k`, [T, kvW]);
    const attnOut = attnDirect ? null : mk(`${l}.attnOut`, [T, H]);
    const mlpOut = mlpDirect ? null : mk(`${l}.mlpOut`, [T, H]);
    const sum1 = b.normAfterResidual && !b.parallel ? mk(`${l}.sum1`, [T, H]) : null;
    const xMid = b.parallel ? null : mk(`${l}.xMid`, [T, H]);
    const sum2 = b.normAfterResidual && !b.parallel ? mk(`${l}.sum2`, [T, H]) : null;
    return {
      xIn,
      nAttn: b.attnNorm && !b.normAfterResidual ? norm(`${l}.nAttn`, xIn, c.norm.kind) : null,
      qkv: fused('qkv') ? mk(`${l}.qkv`, [T, qW + 2 * kvW]) : null,
      qn: qk ? norm(`${l}.qn`, mk(`${l}.qPre`, [T, qW]), qk.kind, qkRows(c.numHeads), 0, q) : null,
      kn: qk ? norm(`${l}.kn`, mk(`${l}.kPre`, [T, kvW]), qk.kind, qkRows(c.numKvHeads), 0, k) : null,
      q,
      k,
      v: mk(`${l}.v`, [T, kvW]),
      o: mk(`${l}.o`, [T, qW]),
      lse: mk(`${l}.lse`, [T * c.numHeads]),
      attnOut,
      nAttnOut: b.attnOutNorm ? norm(`${l}.nAttnOut`, attnOut!, c.norm.kind) : null,
      sum1,
      xMid,
      y1: sum1 ? norm(`${l}.y1`, sum1, c.norm.kind, T, H, xMid!) : null,
      nMlp:
        b.mlpNorm === 'own' && !b.normAfterResidual ? norm(`${l}.nMlp`, b.parallel ? xIn : xMid!, c.norm.kind) : null,
      gu: fused('gate_up') ? mk(`${l}.gu`, [T, 2 * I]) : null,
      g: fused('gate_up') || moe ? null : mk(`${l}.g`, [T, I]),
      u: c.mlp.gated && !fused('gate_up') && !moe ? mk(`${l}.u`, [T, I]) : null,
      a: mk(`${l}.a`, moe ? [1] : [T, I]),
      moe: moe
        ? {
            logits: mk(`${l}.router`, [T, moe.numExperts]),
            w: mk(`${l}.routing`, [T, moe.numExperts]),
            experts: Array.from({ length: moe.numExperts }, (_, e) => ({
              g: mk(`${l}.e${e}.g`, [T, I]),
              u: mk(`${l}.e${e}.u`, [T, I]),
              a: mk(`${l}.e${e}.a`, [T, I]),
              o: mk(`${l}.e${e}.o`, [T, H]),
            })),
          }
        : null,
      mlpOut,
      nMlpOut: b.mlpOutNorm ? norm(`${l}.nMlpOut`, mlpOut!, c.norm.kind) : null,
      sum2,
      y2: sum2 ? norm(`${l}.y2`, sum2, c.norm.kind) : null,
      s: new Map(),
    };
  };
  const kCache: Tensor[] = [];
  const vCache: Tensor[] = [];
  let acts: LayerActs[];
  if (opts.mode === 'train' && !opts.checkpointActivations) {
    acts = Array.from({ length: c.numLayers }, (_, i) => layerActs(`L${i}`));
  } else if (opts.mode === 'train') {
    // One shared set of layer activations; each layer keeps only its own input.
    const shared = layerActs('L*');
    acts = Array.from({ length: c.numLayers }, (_, i) => {
      if (i === 0) return shared;
      const xIn = mk(`L${i}.xIn`, [T, H]);
      // the norms that read the layer input read this layer's copy
      const rebind = (n: NormSave | null) => (n && n.x === shared.xIn ? { ...n, x: xIn } : n);
      return { ...shared, xIn, nAttn: rebind(shared.nAttn), nMlp: rebind(shared.nMlp) };
    });
  } else {
    const shared = layerActs('L*');
    acts = Array.from({ length: c.numLayers }, () => shared);
    const ctx = opts.maxContext ?? T;
    for (let i = 0; i < c.numLayers && opts.mode === 'infer'; i++) {
      kCache.push(mk(`L${i}.kCache`, [ctx, kvW], 'f32', 'activations'));
      vCache.push(mk(`L${i}.vCache`, [ctx, kvW], 'f32', 'activations'));
    }
  }
  const projectIn = arch.top.some((m) => m.role === 'project_in');
  const embRaw = projectIn || arch.embedNorm ? mk('embRaw', [T, E]) : null;
  const xFinal = mk('xFinal', [T, H]);
  return {
    gpu,
    model,
    opts,
    ids: mk('ids', [T], 'u32', 'io'),
    positions: mk('positions', [T], 'u32', 'io'),
    keyStart: mk('keyStart', [T], 'u32', 'io'),
    posIds: c.learnedPositions?.offset ? mk('posIds', [T], 'u32', 'io') : null,
    targets: mk('targets', [T], 'u32', 'io'),
    lossSum: mk('lossSum', [1], 'f32', 'io'),
    countSum: mk('countSum', [1], 'f32', 'io'),
    lossOut: mk('lossOut', [2], 'f32', 'io'),
    rowLoss: mk('rowLoss', [T], 'f32', 'io'),
    logits: opts.mode === 'infer' ? mk('logits', [c.vocabSize]) : null,
    embRaw,
    nEmbed: arch.embedNorm ? norm('embed', embRaw!, c.norm.kind, T, H, acts[0]!.xIn) : null,
    acts,
    xFinal,
    nf: arch.finalNorm ? norm('final', xFinal, c.norm.kind) : null,
    hOut: maybe(
      arch.top.some((m) => m.role === 'project_out'),
      'hOut',
      [T, E],
    ),
    topS: new Map(),
    ws,
    kCache,
    vCache,
    lastHidden: opts.mode === 'infer' ? mk('lastHidden', [1, E]) : null,
    invFreq: c.layers.map((l) => (l.rope ? ropeInvFreq(l.rope.rotaryDim, l.rope.theta, l.rope.scaling) : null)),
    owned,
  };
}

/** The LoRA intermediate S [maxT, r] of module `path` in the map `s` (a layer set's, or topS), made on first use. */
/**
 * The (IA)³ tensor a module's forward writes: an output vector's base output [maxT, outF], kept in
 * the layer set `s` (backward reads it for the vector's gradient); an input vector's scaled input
 * [maxT, inF], used at once and never read again, so one workspace buffer per width serves all.
 */
export function ia3Scratch(
  st: RunnerState,
  s: Map<string, Tensor>,
  m: { path: string; inF: number; outF: number },
  input: boolean,
): Tensor {
  if (input) return st.ws.get(`ia3.xs`, [st.opts.maxTokens, m.inF]);
  const key = `${m.path}#ia3`;
  let t = s.get(key);
  if (!t) {
    const kind = st.opts.mode === 'train' ? 'activations' : 'scratch';
    t = st.gpu.tensor(`${m.path}.ia3_base`, [st.opts.maxTokens, m.outF], 'f32', kind);
    st.owned.push(t);
    s.set(key, t);
  }
  return t;
}

export function loraScratch(st: RunnerState, s: Map<string, Tensor>, path: string, r: number): Tensor {
  const key = `${path}#${r}`;
  let t = s.get(key);
  if (!t) {
    t = st.gpu.tensor(`${path}.S`, [st.opts.maxTokens, r], 'f32', st.opts.mode === 'train' ? 'activations' : 'scratch');
    st.owned.push(t);
    s.set(key, t);
  }
  return t;
}

/** DoRA's saved Z [maxT, outF] of module `path` (src/kernels/linear.ts), made on first use like loraScratch. */
export function doraScratch(st: RunnerState, s: Map<string, Tensor>, path: string, outF: number): Tensor {
  const key = `${path}#dora`;
  let t = s.get(key);
  if (!t) {
    t = st.gpu.tensor(
      `${path}.Z`,
      [st.opts.maxTokens, outF],
      'f32',
      st.opts.mode === 'train' ? 'activations' : 'scratch',
    );
    st.owned.push(t);
    s.set(key, t);
  }
  return t;
}
