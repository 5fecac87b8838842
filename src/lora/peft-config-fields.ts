/**
 * Reading adapter_config.json's fields, for every method's import (LoRA, IA3, prompt and prefix
 * tuning): the JSON itself (with Python's NaN/Infinity) and typed fields whose errors name the
 * field, what was expected and what was found.
 */

import { isAllLinear } from './config';
import { ADAPTER_CONFIG_NAME, PeftError } from './peft';
import { patternProblem } from './pattern';

export function parseConfigJson(raw: string | Uint8Array): Record<string, unknown> {
  const text = typeof raw === 'string' ? raw : new TextDecoder().decode(raw);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    // Python's json writes NaN / Infinity for such floats; read them as null before giving up.
    try {
      json = JSON.parse(text.replace(/(?<=[:,[]\s*)-?(?:NaN|Infinity)(?=\s*[,}\]])/g, 'null'));
    } catch {
      throw new PeftError(`${ADAPTER_CONFIG_NAME} is not valid JSON (${(e as Error).message}).`);
    }
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new PeftError(
      `${ADAPTER_CONFIG_NAME} should hold a JSON object, got ${Array.isArray(json) ? 'an array' : JSON.stringify(json)}.`,
    );
  }
  return json as Record<string, unknown>;
}

export function numberField(
  cfg: Record<string, unknown>,
  field: string,
  fallback: number,
  warnings: string[],
  missingNote?: string,
): number {
  const v = cfg[field];
  if (v === undefined || v === null) {
    if (missingNote) warnings.push(missingNote);
    return fallback;
  }
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new PeftError(`${ADAPTER_CONFIG_NAME}: ${field} should be a number, got ${JSON.stringify(v)}.`);
  return v;
}

export function boolField(cfg: Record<string, unknown>, field: string, fallback: boolean): boolean {
  const v = cfg[field];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean')
    throw new PeftError(`${ADAPTER_CONFIG_NAME}: ${field} should be true or false, got ${JSON.stringify(v)}.`);
  return v;
}

export function patternField(cfg: Record<string, unknown>, field: string): Record<string, number> {
  const v = cfg[field];
  if (v == null) return {};
  if (typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'number')) {
    throw new PeftError(
      `${ADAPTER_CONFIG_NAME}: ${field} should map module-name patterns to numbers, got ${JSON.stringify(v)}.`,
    );
  }
  for (const key of Object.keys(v)) {
    // Matched as a dotted suffix of each module path, as PEFT's get_pattern_key does.
    const bad = patternProblem(key) ?? patternProblem(`(?:.*\\.)?(?:${key})`);
    if (bad) throw new PeftError(`${ADAPTER_CONFIG_NAME}: ${field} key ${JSON.stringify(key)} cannot be used: ${bad}.`);
  }
  return { ...(v as Record<string, number>) };
}

export function moduleSpecField(cfg: Record<string, unknown>, field: string): string[] | string | null {
  const v = cfg[field];
  if (v == null) return null;
  if (typeof v === 'string') {
    const bad = isAllLinear(v) ? null : patternProblem(v);
    if (bad) throw new PeftError(`${ADAPTER_CONFIG_NAME}: ${field} ${JSON.stringify(v)} cannot be used: ${bad}.`);
    return v;
  }
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return [...(v as string[])];
  throw new PeftError(
    `${ADAPTER_CONFIG_NAME}: ${field} should be a list of module names or a regex string, got ${JSON.stringify(v)}.`,
  );
}

/** The method of an adapter_config.json, refused as a PeftError naming the file and field unless Tabtune runs it. */
