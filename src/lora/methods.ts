/**
 * The parameter-efficient methods Tabtune knows, as data: one row per method with PEFT's
 * `peft_type` (and `use_dora` for DoRA), the CLI flags and settings that belong to it, and whether
 * Tabtune trains and loads it yet. Everything that asks "which method is this?" reads this table:
 * `tabtune train --method`, the app's Settings step, adapter_config.json on load (eval, generate,
 * compare, merge, the library's import), and the library's and Compare's labels.
 *
 *   method          peft_type        adapter_config.json           trainable tensors (PEFT's names)
 *   lora            LORA             use_dora false                lora_A [r, in], lora_B [out, r]
 *   dora            LORA             use_dora true                 + lora_magnitude_vector [out]
 *   ia3             IA3                                            ia3_l [out] (or [in] on feedforward)
 *   prompt-tuning   PROMPT_TUNING    num_virtual_tokens            prompt_embeddings [n, hidden]
 *   prefix-tuning   PREFIX_TUNING    num_virtual_tokens            prompt_embeddings [n, layers·2·hidden]
 *
 * A method whose `implemented` is false is refused by name wherever it is asked for, never trained
 * or loaded as something else.
 */

/** The method as the CLI's --method and the app's Settings name it. */
export type PeftMethod = 'lora' | 'dora' | 'ia3' | 'prompt-tuning' | 'prefix-tuning';

/** PEFT's `peft_type` of each method, as adapter_config.json writes it. */
export type PeftType = 'LORA' | 'IA3' | 'PROMPT_TUNING' | 'PREFIX_TUNING';

export interface MethodSpec {
  id: PeftMethod;
  /** Display name (the library, Compare, Settings). */
  label: string;
  peftType: PeftType;
  /** LoraConfig.use_dora (DoRA is a LoRA with a learned magnitude per output row). */
  useDora: boolean;
  /** Low-rank A/B per targeted linear module: r, lora_alpha, lora_dropout, rsLoRA and --init apply. */
  lowRank: boolean;
  /** Whether Tabtune trains, saves and loads it yet. */
  implemented: boolean;
  /** The CLI flags (src/cli/run-flags.ts) that apply only to this method and its kin. */
  flags: readonly string[];
  /** One line for --help and the Settings step. */
  summary: string;
}

const LOW_RANK_FLAGS = ['r', 'alpha', 'dropout', 'rslora', 'init', 'loftq-iter', 'loftq-bits'] as const;
const VIRTUAL_TOKEN_FLAGS = ['num-virtual-tokens'] as const;

export const PEFT_METHODS: readonly MethodSpec[] = [
  {
    id: 'lora',
    label: 'LoRA',
    peftType: 'LORA',
    useDora: false,
    lowRank: true,
    implemented: true,
    flags: LOW_RANK_FLAGS,
    summary: 'low-rank update B·A added to each targeted linear layer',
  },
  {
    id: 'dora',
    label: 'DoRA',
    peftType: 'LORA',
    useDora: true,
    lowRank: true,
    implemented: true,
    flags: LOW_RANK_FLAGS,
    summary: 'LoRA on the direction of each weight row plus a learned magnitude per row',
  },
  {
    id: 'ia3',
    label: 'IA³',
    peftType: 'IA3',
    useDora: false,
    lowRank: false,
    implemented: true,
    flags: ['feedforward-modules'],
    summary: 'learned scaling vectors on keys, values and feed-forward activations',
  },
  {
    id: 'prompt-tuning',
    label: 'Prompt tuning',
    peftType: 'PROMPT_TUNING',
    useDora: false,
    lowRank: false,
    implemented: true,
    flags: [...VIRTUAL_TOKEN_FLAGS, 'prompt-init', 'prompt-init-text'],
    summary: 'trainable virtual-token embeddings prepended to every sequence',
  },
  {
    id: 'prefix-tuning',
    label: 'Prefix tuning',
    peftType: 'PREFIX_TUNING',
    useDora: false,
    lowRank: false,
    implemented: true,
    flags: [...VIRTUAL_TOKEN_FLAGS, 'prefix-projection', 'encoder-hidden-size'],
    summary: 'trainable key/value prefixes in every attention layer',
  },
];

export const METHOD_IDS: readonly PeftMethod[] = PEFT_METHODS.map((m) => m.id);

/** The row of a method (throws on a name not in the table). */
export function methodSpec(id: PeftMethod): MethodSpec {
  const m = PEFT_METHODS.find((x) => x.id === id);
  if (!m) throw new MethodError(`Unknown PEFT method ${JSON.stringify(id)}; expected one of ${METHOD_IDS.join(', ')}.`);
  return m;
}

export class MethodError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MethodError';
  }
}

/** The implemented methods' ids, for messages. */
export function implementedMethods(): string {
  return PEFT_METHODS.filter((m) => m.implemented)
    .map((m) => m.id)
    .join(', ');
}

/**
 * The method an adapter_config.json describes: `peft_type` (absent = LORA, as older files), and
 * `use_dora` for LoRA. `file` names the file in errors. Throws a MethodError for a peft_type
 * PEFT has but Tabtune does not know (e.g. "BOFT").
 */
export function methodOfAdapterConfig(cfg: Record<string, unknown>, file = 'adapter_config.json'): MethodSpec {
  const t = cfg.peft_type ?? 'LORA';
  const rows = PEFT_METHODS.filter((m) => m.peftType === t);
  if (rows.length === 0) {
    throw new MethodError(
      `${file}: peft_type ${JSON.stringify(t)} is not a method Tabtune knows; it reads ` +
        `${[...new Set(PEFT_METHODS.map((m) => m.peftType))].join(', ')} adapters.`,
    );
  }
  if (t === 'LORA') return methodSpec(cfg.use_dora === true ? 'dora' : 'lora');
  return rows[0]!;
}

/** Throws a MethodError naming the method and `where` it was asked for when Tabtune cannot run it yet. */
export function requireImplemented(m: MethodSpec, where: string): void {
  if (m.implemented) return;
  throw new MethodError(
    `${where}: ${m.label} (${m.id}, peft_type "${m.peftType}"${m.useDora ? ', use_dora true' : ''}) is not implemented ` +
      `in Tabtune yet; it is not trained or loaded as anything else. Implemented: ${implementedMethods()}.`,
  );
}

/**
 * `init_lora_weights` as PEFT names it: true (kaiming-uniform A, B = 0), 'gaussian' (A ~ N(0, 1/r)),
 * 'pissa' / 'pissa_niter_N' (A, B from the top-r singular vectors of W, W moved by them), 'olora'
 * (A, B from a QR of W), 'loftq' (A, B fitted to the 4-bit quantisation error). The CLI's --init
 * says 'default' for true.
 */
export type LoraInit = true | 'gaussian' | 'pissa' | `pissa_niter_${number}` | 'olora' | 'loftq';

export const INIT_CHOICES = ['default', 'gaussian', 'pissa', 'olora', 'loftq'] as const;

/** Parses --init (or a stored value): 'default' | 'gaussian' | 'pissa' | 'pissa_niter_N' | 'olora' | 'loftq'. */
export function parseLoraInit(v: string | true): LoraInit | null {
  if (v === true || v === 'default' || v === 'true') return true;
  if (v === 'gaussian' || v === 'pissa' || v === 'olora' || v === 'loftq') return v;
  const m = /^pissa_niter_(\d+)$/.exec(v);
  if (m && Number(m[1]) >= 1) return v as `pissa_niter_${number}`;
  return null;
}

/** The inits Tabtune computes yet (the others are refused by name, never replaced by the default). */
const IMPLEMENTED_INITS: readonly string[] = ['default', 'gaussian', 'pissa', 'olora', 'loftq'];

/** The --init name of an init ('default' for true, 'pissa' for every pissa_niter_N). */
export function initName(init: LoraInit): (typeof INIT_CHOICES)[number] {
  if (init === true) return 'default';
  return init.startsWith('pissa') ? 'pissa' : (init as (typeof INIT_CHOICES)[number]);
}

/** Throws a MethodError when Tabtune cannot compute `init` yet; `where` names the flag or field. */
export function requireInitImplemented(init: LoraInit, where: string): void {
  if (IMPLEMENTED_INITS.includes(initName(init))) return;
  throw new MethodError(
    `${where}: init_lora_weights ${JSON.stringify(init)} is not implemented in Tabtune yet (implemented: ${IMPLEMENTED_INITS.join(', ')}).`,
  );
}

/** Inits whose A, B are computed from the base weight W (the saved adapter is converted to apply to the untouched W). */
export function initUsesWeights(init: LoraInit | undefined): boolean {
  return init !== undefined && init !== true && init !== 'gaussian';
}
