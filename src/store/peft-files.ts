/**
 * PEFT adapter files as the library handles them: checking files a user imports (the two files,
 * or a zip of them, e.g. trained with Python's peft), summarising adapter_config.json, and packing
 * an adapter as a zip (fflate) for download. Loading onto a model (shapes against its modules)
 * happens in the engine (src/lora/peft-import.ts importPeft); this only checks what can be checked
 * without the model.
 */
import { strToU8, unzipSync, zipSync } from 'fflate';
import type { PeftFiles } from '../engine/types';
import { isAllLinear, loraRank } from '../lora/config';
import { type MethodSpec, MethodError, methodOfAdapterConfig, requireImplemented } from '../lora/methods';
import { patternProblem } from '../lora/pattern';
import { ADAPTER_CONFIG_NAME, ADAPTER_MODEL_NAME, PEFT_KEY_PREFIX } from '../lora/peft';
import { SafetensorsError, parseSafetensors } from '../model/safetensors';
import type { AdapterConfigSummary } from './types';

export { ADAPTER_CONFIG_NAME, ADAPTER_MODEL_NAME };

export class PeftFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PeftFileError';
  }
}

export interface PeftInspection {
  config: AdapterConfigSummary;
  baseModel: string | null;
  /** LoRA modules (A/B pairs) in the safetensors file. */
  modules: number;
  tensors: number;
  sizeBytes: number;
}

const LORA_KEY = /^(.+)\.lora_([AB])(?:\.[A-Za-z0-9_-]+)?\.weight$/;

/** Checks both files and summarises them; throws PeftFileError naming the file and the problem. */
export function inspectPeft(files: PeftFiles): PeftInspection {
  let cfg: unknown;
  try {
    cfg = JSON.parse(files.adapterConfig);
  } catch (e) {
    throw new PeftFileError(`${ADAPTER_CONFIG_NAME} is not valid JSON (${(e as Error).message}).`);
  }
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) {
    throw new PeftFileError(`${ADAPTER_CONFIG_NAME} should hold a JSON object.`);
  }
  const c = cfg as Record<string, unknown>;
  let method: MethodSpec;
  try {
    method = methodOfAdapterConfig(c, ADAPTER_CONFIG_NAME);
    requireImplemented(method, `${ADAPTER_CONFIG_NAME} (peft_type${method.useDora ? ', use_dora' : ''})`);
  } catch (e) {
    if (e instanceof MethodError) throw new PeftFileError(e.message);
    throw e;
  }
  if (!method.lowRank) return inspectOther(files, c, method);
  const num = (k: string, def: number) => (typeof c[k] === 'number' ? (c[k] as number) : def);
  const targets = c.target_modules;
  const config: AdapterConfigSummary = {
    method: method.id,
    r: num('r', 8),
    lora_alpha: num('lora_alpha', 8),
    lora_dropout: num('lora_dropout', 0),
    target_modules: Array.isArray(targets)
      ? targets.filter((t): t is string => typeof t === 'string')
      : typeof targets === 'string'
        ? targets
        : [],
    use_rslora: c.use_rslora === true,
  };
  const loftq = c.loftq_config as { loftq_iter?: unknown } | undefined;
  if (loftq && typeof loftq === 'object' && Object.keys(loftq).length > 0) {
    const iter = typeof loftq.loftq_iter === 'number' ? loftq.loftq_iter : 1;
    config.loftq = { loftq_iter: iter, backbone: files.loftqBackbone !== undefined };
  }
  let parsed;
  try {
    parsed = parseSafetensors(files.adapterModel, ADAPTER_MODEL_NAME);
  } catch (e) {
    const msg = e instanceof SafetensorsError ? e.message : (e as Error).message;
    throw new PeftFileError(`${ADAPTER_MODEL_NAME} is not a valid safetensors file: ${msg}`);
  }
  /** module path -> 'A' | 'B' -> tensor key */
  const pairs = new Map<string, Map<string, string>>();
  for (const key of parsed.tensors.keys()) {
    const m = LORA_KEY.exec(key);
    if (!m) continue;
    const set = pairs.get(m[1]!) ?? new Map<string, string>();
    set.set(m[2]!, key);
    pairs.set(m[1]!, set);
  }
  if (pairs.size === 0) {
    const some = [...parsed.tensors.keys()].slice(0, 3).join(', ') || '(no tensors)';
    throw new PeftFileError(
      `${ADAPTER_MODEL_NAME} holds no LoRA tensors (expected keys like "${PEFT_KEY_PREFIX}model.layers.0.self_attn.q_proj.lora_A.weight"; found ${some}).`,
    );
  }
  const rankPattern =
    c.rank_pattern && typeof c.rank_pattern === 'object' && !Array.isArray(c.rank_pattern)
      ? (c.rank_pattern as Record<string, number>)
      : undefined;
  for (const [field, spec] of [
    ['target_modules', typeof targets === 'string' && !isAllLinear(targets) ? [targets] : []],
    ['rank_pattern', Object.keys(rankPattern ?? {}).map((k) => `(?:.*\\.)?(?:${k})`)],
  ] as const) {
    for (const pattern of spec) {
      const bad = patternProblem(pattern);
      if (bad)
        throw new PeftFileError(`${ADAPTER_CONFIG_NAME}: ${field} ${JSON.stringify(pattern)} cannot be used: ${bad}.`);
    }
  }
  for (const [path, set] of pairs) {
    if (set.size !== 2) {
      throw new PeftFileError(
        `${ADAPTER_MODEL_NAME}: module "${path}" has lora_${[...set.keys()][0]} but no lora_${set.has('A') ? 'B' : 'A'}.`,
      );
    }
    // The rank the config gives this module must be the one its tensors have (A is [r, in], B [out, r]),
    // or the two files do not belong together.
    const aKey = set.get('A')!;
    const bKey = set.get('B')!;
    const a = parsed.tensors.get(aKey)!;
    const b = parsed.tensors.get(bKey)!;
    const want = loraRank({ r: config.r, rank_pattern: rankPattern }, path);
    if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[0] !== b.shape[1]) {
      throw new PeftFileError(
        `${ADAPTER_MODEL_NAME}: "${aKey}" [${a.shape.join(', ')}] and "${bKey}" [${b.shape.join(', ')}] do not make a LoRA pair.`,
      );
    }
    if (a.shape[0] !== want) {
      throw new PeftFileError(
        `${ADAPTER_CONFIG_NAME} and ${ADAPTER_MODEL_NAME} do not belong together: the config gives "${path}" rank ${want}, its tensors have rank ${a.shape[0]}.`,
      );
    }
  }
  return {
    config,
    baseModel: typeof c.base_model_name_or_path === 'string' ? c.base_model_name_or_path : null,
    modules: pairs.size,
    tensors: parsed.tensors.size,
    sizeBytes:
      files.adapterModel.byteLength + strToU8(files.adapterConfig).byteLength + (files.loftqBackbone?.byteLength ?? 0),
  };
}

/**
 * The files of an (IA)³, prompt- or prefix-tuning adapter: the tensors PEFT saves for it must be
 * there (`ia3_l` per module, or `prompt_embeddings`); shapes are checked against the model on load.
 */
function inspectOther(files: PeftFiles, c: Record<string, unknown>, method: MethodSpec): PeftInspection {
  let parsed;
  try {
    parsed = parseSafetensors(files.adapterModel, ADAPTER_MODEL_NAME);
  } catch (e) {
    const msg = e instanceof SafetensorsError ? e.message : (e as Error).message;
    throw new PeftFileError(`${ADAPTER_MODEL_NAME} is not a valid safetensors file: ${msg}`);
  }
  const keys = [...parsed.tensors.keys()];
  const ia3 = method.id === 'ia3';
  const found = ia3
    ? keys.filter((k) => /\.ia3_l(?:\.[A-Za-z0-9_-]+)?$/.test(k)).length
    : keys.includes('prompt_embeddings')
      ? 1
      : 0;
  if (found === 0) {
    throw new PeftFileError(
      `${ADAPTER_MODEL_NAME} holds no ${ia3 ? '(IA)³ vectors (keys ending in "ia3_l")' : '"prompt_embeddings" tensor'} for this ${method.label} adapter (peft_type "${method.peftType}") ` +
        `(found ${keys.slice(0, 3).join(', ') || 'no tensors'}).`,
    );
  }
  const targets = c.target_modules;
  return {
    config: {
      method: method.id,
      r: 0,
      lora_alpha: 0,
      lora_dropout: 0,
      target_modules: Array.isArray(targets) ? targets.filter((t): t is string => typeof t === 'string') : [],
      use_rslora: false,
      ...(typeof c.num_virtual_tokens === 'number' ? { num_virtual_tokens: c.num_virtual_tokens } : {}),
    },
    baseModel: typeof c.base_model_name_or_path === 'string' ? c.base_model_name_or_path : null,
    modules: found,
    tensors: parsed.tensors.size,
    sizeBytes: files.adapterModel.byteLength + strToU8(files.adapterConfig).byteLength,
  };
}

export interface NamedBytes {
  name: string;
  bytes: Uint8Array;
}

function baseName(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] ?? path;
}

/** Largest adapter_config.json accepted (real ones are ~1 KB). */
const MAX_CONFIG_BYTES = 4 << 20;
/** Largest adapter_model.safetensors accepted from a zip (a rank-256 adapter of a 7B model is ~1.3 GB; browsers cap one buffer near 2 GB). */
const MAX_WEIGHTS_BYTES = 2 * 2 ** 30;

const isJson = (name: string) => /\.json$/i.test(name);
const isSafetensors = (name: string) => /\.safetensors$/i.test(name);

/**
 * Inflates only the entries of a zip that can be adapter files (`.json`, `.safetensors`), after
 * checking the sizes the zip declares: a small zip that would inflate to gigabytes is refused before
 * anything is inflated (fflate never writes past a declared size, so a lying header only truncates).
 */
function unzipAdapter(zip: NamedBytes): NamedBytes[] {
  let tooBig: string | null = null;
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(zip.bytes, {
      filter: (f) => {
        const name = f.name;
        if (name.endsWith('/') || name.startsWith('__MACOSX/')) return false;
        const max = isJson(name) ? MAX_CONFIG_BYTES : isSafetensors(name) ? MAX_WEIGHTS_BYTES : 0;
        if (max === 0) return false;
        if (f.originalSize > max && !tooBig) {
          tooBig = `${zip.name}: "${name}" would inflate to ${f.originalSize} bytes (from ${f.size}); at most ${max} are accepted for a ${isJson(name) ? '.json' : '.safetensors'} file. This is not an adapter zip (or it is damaged).`;
        }
        return f.originalSize <= max;
      },
    });
  } catch (e) {
    throw new PeftFileError(`${zip.name} is not a readable zip file (${(e as Error).message}).`);
  }
  if (tooBig) throw new PeftFileError(tooBig);
  return Object.entries(entries).map(([name, bytes]) => ({ name, bytes }));
}

/** True when a .json file's bytes look like a PEFT adapter_config.json. */
function looksLikeAdapterConfig(bytes: Uint8Array): boolean {
  if (bytes.byteLength > MAX_CONFIG_BYTES) return false;
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown> | null;
    return !!v && typeof v === 'object' && !Array.isArray(v) && ('peft_type' in v || 'target_modules' in v);
  } catch {
    return false;
  }
}

/**
 * Picks adapter_config.json and adapter_model.safetensors out of what the user chose: the two
 * files (any order, in a folder or not) or one .zip holding them. Files are known by their exact
 * names first, else by content: a browser renames a second download to "adapter_config (1).json",
 * so one `.json` that reads as an adapter config and one `.safetensors` file will do.
 */
export function collectPeftFiles(items: NamedBytes[]): PeftFiles {
  const all: NamedBytes[] = [];
  for (const it of items) {
    if (/\.zip$/i.test(it.name)) all.push(...unzipAdapter(it));
    else all.push(it);
  }
  const exact = (want: string) => all.filter((f) => baseName(f.name) === want);
  let cfgs = exact(ADAPTER_CONFIG_NAME);
  if (cfgs.length === 0) cfgs = all.filter((f) => isJson(f.name) && looksLikeAdapterConfig(f.bytes));
  let models = exact(ADAPTER_MODEL_NAME);
  if (models.length === 0) models = all.filter((f) => isSafetensors(f.name));
  const names = all.map((f) => baseName(f.name)).join(', ') || 'nothing';
  if (cfgs.length === 0 || models.length === 0) {
    const missing = [
      cfgs.length === 0 ? `${ADAPTER_CONFIG_NAME} (or a .json file holding a PEFT config)` : null,
      models.length === 0 ? `${ADAPTER_MODEL_NAME} (or another .safetensors file)` : null,
    ].filter(Boolean);
    const hint = all.some((f) => /adapter_model\.bin$/.test(f.name))
      ? ' adapter_model.bin (a pickled PyTorch file) cannot be read; save the adapter with safe_serialization=True.'
      : '';
    throw new PeftFileError(
      `A PEFT adapter needs ${ADAPTER_CONFIG_NAME} and ${ADAPTER_MODEL_NAME}; missing ${missing.join(' and ')} (got ${names}).${hint}`,
    );
  }
  if (cfgs.length > 1 || models.length > 1) {
    throw new PeftFileError(
      `Choose one adapter at a time: found ${cfgs.length} adapter configs (${cfgs.map((f) => baseName(f.name)).join(', ')}) ` +
        `and ${models.length} weight files (${models.map((f) => baseName(f.name)).join(', ')}).`,
    );
  }
  if (cfgs[0]!.bytes.byteLength > MAX_CONFIG_BYTES) {
    throw new PeftFileError(
      `${baseName(cfgs[0]!.name)} is ${cfgs[0]!.bytes.byteLength} bytes; an adapter config is a few kilobytes (at most ${MAX_CONFIG_BYTES} accepted).`,
    );
  }
  return { adapterConfig: new TextDecoder().decode(cfgs[0]!.bytes), adapterModel: models[0]!.bytes };
}

/** A model card like the README.md PEFT's save_pretrained writes (short). */
export function adapterReadme(
  name: string,
  baseModel: string,
  cfg: AdapterConfigSummary,
  extra: string[] = [],
): string {
  return [
    '---',
    `base_model: ${baseModel}`,
    'library_name: peft',
    'tags:',
    '- lora',
    '- tabtune',
    '---',
    '',
    `# ${name}`,
    '',
    `A LoRA adapter for \`${baseModel}\`, trained in the browser with Tabtune.`,
    '',
    `- r: ${cfg.r}, lora_alpha: ${cfg.lora_alpha}, lora_dropout: ${cfg.lora_dropout}, use_rslora: ${cfg.use_rslora}`,
    `- target_modules: ${Array.isArray(cfg.target_modules) ? cfg.target_modules.join(', ') : cfg.target_modules}`,
    ...extra.map((l) => `- ${l}`),
    '',
    '```python',
    'from transformers import AutoModelForCausalLM',
    'from peft import PeftModel',
    `model = AutoModelForCausalLM.from_pretrained("${baseModel}")`,
    'model = PeftModel.from_pretrained(model, "path/to/this/folder")',
    '```',
    '',
  ].join('\n');
}

/** The adapter as a zip: adapter_config.json, adapter_model.safetensors and README.md at its root. */
export function zipPeft(files: PeftFiles, readme?: string): Uint8Array {
  const entries: Record<string, Uint8Array> = {
    [ADAPTER_CONFIG_NAME]: strToU8(files.adapterConfig),
    // safetensors data is incompressible: store it (level 0) so zipping is instant.
    [ADAPTER_MODEL_NAME]: files.adapterModel,
  };
  if (readme) entries['README.md'] = strToU8(readme);
  return zipSync(
    Object.fromEntries(Object.entries(entries).map(([k, v]) => [k, [v, { level: k === ADAPTER_MODEL_NAME ? 0 : 6 }]])),
  );
}

/** A file-name-safe version of an adapter name. */
export function safeFileName(name: string): string {
  return (
    name
      .trim()
      .replace(/[^\w.-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 80) || 'adapter'
  );
}
