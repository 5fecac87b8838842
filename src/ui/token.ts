/**
 * The user's Hugging Face access token, for gated and private models: entered once, kept in this
 * browser (localStorage), sent only to the Hub (as a Bearer header on huggingface.co requests),
 * removable at any time.
 */
import type { SettingsStorage } from './settings';

const KEY = 'tabtune-hf-token';

/** What a Hub token looks like (hf_ and letters/digits); a pasted one is trimmed first. */
export function tokenProblem(token: string): string | null {
  const t = token.trim();
  if (!t) return 'Paste a token first.';
  if (/\s/.test(t)) return 'A token has no spaces inside.';
  if (!/^hf_[A-Za-z0-9]{20,}$/.test(t))
    return 'Hugging Face access tokens start with "hf_" followed by letters and digits (Settings → Access Tokens on huggingface.co).';
  return null;
}

export function loadHubToken(storage: SettingsStorage | undefined): string | null {
  try {
    return storage?.getItem(KEY) || null;
  } catch {
    return null;
  }
}

export function saveHubToken(storage: SettingsStorage | undefined, token: string | null): void {
  try {
    if (token) storage?.setItem(KEY, token.trim());
    else if (storage && 'removeItem' in storage) (storage as Storage).removeItem(KEY);
    else storage?.setItem(KEY, '');
  } catch {
    /* storage blocked: the token is not kept */
  }
}

/** The Authorization header for Hub requests, or none. */
export function hubHeaders(storage: SettingsStorage | undefined): Record<string, string> {
  const t = loadHubToken(storage);
  return t ? { Authorization: `Bearer ${t}` } : {};
}
