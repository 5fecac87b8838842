/** Number, size and time formatting for the UI. */
import type { LoraSettings } from '../engine/types';
import { methodSpec } from '../lora/methods';
import { DEFAULT_VIRTUAL_TOKENS } from '../lora/virtual';

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v >= 100 || u === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}

/** 135M, 1.1B, 17.9K */
export function formatCount(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${(n / 1e9).toFixed(abs >= 1e10 ? 0 : 1)}B`;
  if (abs >= 1e6) return `${(n / 1e6).toFixed(abs >= 1e8 ? 0 : 1)}M`;
  if (abs >= 1e3) return `${(n / 1e3).toFixed(abs >= 1e5 ? 0 : 1)}K`;
  return String(Math.round(n));
}

export function formatInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function formatLoss(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  return x.toFixed(x >= 100 ? 1 : 3);
}

/** Perplexity (e^loss) with two decimals, as whole numbers with separators from 1000 up. */
export function formatPerplexity(loss: number | null | undefined): string {
  if (loss === null || loss === undefined || !Number.isFinite(loss)) return '—';
  const p = Math.exp(loss);
  if (!Number.isFinite(p)) return '—';
  return p >= 1000 ? Math.round(p).toLocaleString('en-US') : p.toFixed(2);
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

export function formatDate(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString('en-GB', {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
  });
}

export function formatPercent(x: number): string {
  if (!Number.isFinite(x)) return '—';
  return `${x < 0.1 ? x.toFixed(3) : x < 10 ? x.toFixed(2) : x.toFixed(1)}%`;
}

/** Learning rates and the like: 0.0002 -> "2e-4". */
export function formatSci(x: number): string {
  if (!Number.isFinite(x)) return '—';
  if (x === 0) return '0';
  if (Math.abs(x) >= 0.01 && Math.abs(x) < 1000) return String(Number(x.toPrecision(3)));
  const [m, e] = x.toExponential(2).split('e') as [string, string];
  return `${Number(m)}e${Number(e)}`;
}

/** A setting as typed, for summaries: '—' while it is not a number (the field says why). */
export function formatSetting(x: number): string {
  return Number.isFinite(x) ? String(x) : '—';
}

/** target_modules for display: distinct module names ("q_proj, v_proj"), whatever form they were saved in. */
export function targetsLabel(t: string[] | string): string {
  if (typeof t === 'string') return t;
  const names = [...new Set(t.map((p) => p.slice(p.lastIndexOf('.') + 1)))];
  return names.length === t.length ? names.join(', ') : `${names.join(', ')} (${t.length} modules)`;
}

/**
 * The adapter settings in a few words, by method: "r 8, alpha 16, q_proj, v_proj" for LoRA
 * (DoRA named), the modules of (IA)³, the virtual tokens of prompt and prefix tuning.
 */
export function methodSettingsLabel(lora: LoraSettings): string {
  const m = methodSpec(lora.method ?? 'lora');
  const t = lora.target_modules;
  const targets = Array.isArray(t) ? t.join(', ') : t;
  if (m.lowRank)
    return `${m.useDora ? 'DoRA ' : ''}r ${formatSetting(lora.r)}, alpha ${formatSetting(lora.lora_alpha)}, ${targets || 'no target modules'}`;
  if (m.id === 'ia3') return `${m.label} on ${targets || "PEFT's default modules"}`;
  return `${m.label}, ${formatSetting(lora.num_virtual_tokens ?? DEFAULT_VIRTUAL_TOKENS)} virtual tokens`;
}
