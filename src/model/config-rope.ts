/**
 * The RoPE of a config.json, in both the old layout (rope_theta, rope_scaling,
 * partial_rotary_factor at the top level) and the new one (rope_parameters), as transformers reads
 * them; errors name the file and the key (through the Reader).
 */

import type { RopeScaling } from '../numerics/rope';
import type { RopeConfig } from './config-types';
import type { Raw, Reader } from './config-reader';

interface RopeRaw {
  theta: number;
  scaling?: RopeScaling;
  attentionScaling: number;
  partial: number;
}

/**
 * One set of RoPE parameters (`p`, named `label` in errors): rope_theta, partial_rotary_factor and
 * the scaling type. default / linear / llama3 / longrope are supported (Phi-3's "su" and "yarn"
 * are its longrope, as transformers' Phi3Config renames them); others are refused.
 */
function ropeParamsOf(
  r: Reader,
  p: Raw,
  label: string,
  o: { theta: number; partial: number; maxPositions: number; originalMax?: number; longropeAliases?: boolean },
): RopeRaw {
  const theta = r.num('rope_theta', o.theta, p, `${label}.rope_theta`);
  const partial = p.partial_rotary_factor === undefined ? o.partial : r.num('partial_rotary_factor', 1, p, label);
  let type = p.rope_type ?? p.type ?? 'default';
  if (o.longropeAliases && (type === 'su' || type === 'yarn')) type = 'longrope';
  const n = (key: string, def: number) => r.num(key, def, p, `${label}.${key}`);
  const originalMax = () =>
    p.original_max_position_embeddings !== undefined
      ? n('original_max_position_embeddings', 1)
      : (o.originalMax ?? o.maxPositions);
  if (type === 'default') return { theta, partial, attentionScaling: 1 };
  if (type === 'linear')
    return { theta, partial, attentionScaling: 1, scaling: { type: 'linear', factor: n('factor', 1) } };
  if (type === 'llama3') {
    return {
      theta,
      partial,
      attentionScaling: 1,
      scaling: {
        type: 'llama3',
        factor: n('factor', 8),
        lowFreqFactor: n('low_freq_factor', 1),
        highFreqFactor: n('high_freq_factor', 4),
        originalMaxPositionEmbeddings: originalMax(),
      },
    };
  }
  if (type === 'longrope') {
    const orig = originalMax();
    const factors = (key: string): number[] => {
      const v = p[key];
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !(x > 0)))
        r.reject(`"${label}.${key}" must be a list of positive numbers, got ${JSON.stringify(v)}.`);
      return v as number[];
    };
    const factor = p.factor === undefined || p.factor === null ? o.maxPositions / orig : n('factor', 1);
    const attn =
      p.attention_factor === undefined || p.attention_factor === null
        ? factor <= 1
          ? 1
          : Math.sqrt(1 + Math.log(factor) / Math.log(orig))
        : n('attention_factor', 1);
    return {
      theta,
      partial,
      attentionScaling: attn,
      scaling: {
        type: 'longrope',
        shortFactor: factors('short_factor'),
        longFactor: factors('long_factor'),
        originalMaxPositionEmbeddings: orig,
      },
    };
  }
  return r.reject(
    `"${label}" asks for RoPE scaling type ${JSON.stringify(type)}, which Tabtune does not support ` +
      `(supported: none/"default", "linear", "llama3"${o.longropeAliases ? ', "longrope"' : ''}).`,
  );
}

export interface RopeOptions {
  headDim: number;
  maxPositions: number;
  /** Default rope_theta (the config class's default_theta, or its old key's default). */
  theta?: number;
  /** Keys read for theta before rope_parameters (default ['rope_theta']). */
  thetaKeys?: string[];
  /** Default partial_rotary_factor, and older keys that mean it (rotary_pct). */
  partial?: number;
  partialKeys?: string[];
  /** GPT-J: an explicit rotary_dim (null = the whole head) instead of a factor. */
  rotaryDim?: number;
  interleaved?: boolean;
  /** Phi-3: "su" / "yarn" mean longrope, and original_max_position_embeddings is a top-level key. */
  phi3?: boolean;
  /** Gemma 3: the nested set ("sliding_attention" / "full_attention") to read. */
  nestedKey?: string;
  /** Old-style scaling for this set (gemma3's rope_scaling applies to full attention only). */
  scalingKey?: string | null;
}

/**
 * The RoPE of a config, from rope_theta / rope_scaling / partial_rotary_factor or rope_parameters
 * (transformers' convert_rope_params_to_dict: rope_scaling, when given, becomes rope_parameters,
 * with the top-level theta and partial factor filled in).
 */
export function ropeOf(r: Reader, o: RopeOptions): RopeConfig {
  const thetaKeys = o.thetaKeys ?? ['rope_theta'];
  let theta = o.theta ?? 10000;
  for (const k of thetaKeys) if (r.has(k)) theta = r.num(k, theta);
  let partial = o.partial ?? 1;
  for (const k of ['partial_rotary_factor', ...(o.partialKeys ?? [])]) if (r.has(k)) partial = r.num(k, partial);
  const scalingKey = o.scalingKey === undefined ? 'rope_scaling' : o.scalingKey;
  let params: Raw = {};
  let label = 'rope_parameters';
  const rp = r.raw.rope_parameters;
  if (rp !== undefined && rp !== null) {
    if (typeof rp !== 'object' || Array.isArray(rp))
      r.reject(`"${r.scope}rope_parameters" must be an object, got ${JSON.stringify(rp)}.`);
    params = rp as Raw;
    if (o.nestedKey) {
      const inner = params[o.nestedKey];
      params = inner && typeof inner === 'object' ? (inner as Raw) : {};
      label = `rope_parameters.${o.nestedKey}`;
    }
  }
  const sc = scalingKey ? r.raw[scalingKey] : undefined;
  if (sc !== undefined && sc !== null) {
    if (typeof sc !== 'object' || Array.isArray(sc))
      r.reject(`"${r.scope}${scalingKey}" must be an object or null, got ${JSON.stringify(sc)}.`);
    params = { ...(sc as Raw), ...params };
    label = scalingKey!;
  }
  const originalMax =
    o.phi3 && r.has('original_max_position_embeddings') ? r.int('original_max_position_embeddings') : undefined;
  const p = ropeParamsOf(r, params, `${r.scope}${label}`, {
    theta,
    partial,
    maxPositions: o.maxPositions,
    originalMax,
    longropeAliases: o.phi3,
  });
  const rotaryDim = o.rotaryDim ?? Math.trunc(o.headDim * p.partial);
  if (rotaryDim % 2 !== 0 || rotaryDim < 2 || rotaryDim > o.headDim) {
    r.reject(`the rotary dimension ${rotaryDim} (of head dimension ${o.headDim}) must be even and at least 2.`);
  }
  if (p.scaling?.type === 'longrope') {
    for (const key of ['shortFactor', 'longFactor'] as const) {
      if (p.scaling[key].length !== rotaryDim / 2)
        r.reject(
          `"${label}.${key === 'shortFactor' ? 'short_factor' : 'long_factor'}" must have ${rotaryDim / 2} values (rotary dimension ${rotaryDim}), got ${p.scaling[key].length}.`,
        );
    }
  }
  const rope: RopeConfig = {
    theta: p.theta,
    rotaryDim,
    interleaved: o.interleaved ?? false,
    attentionScaling: p.attentionScaling,
  };
  if (p.scaling) rope.scaling = p.scaling;
  return rope;
}
