/** Storage failures turned into errors that say what happened and what the user can do. */

export class StorageFullError extends Error {
  constructor(what: string, detail?: string) {
    super(
      `The browser's storage for this site is full, so ${what} could not be saved${detail ? ` (${detail})` : ''}. ` +
        'Nothing saved before was lost. Free space by deleting adapters or cached models in the Adapters view ' +
        "(or raise the site's storage in the browser settings), then try again.",
    );
    this.name = 'StorageFullError';
  }
}

export function isQuotaError(e: unknown): boolean {
  if (!e || typeof e !== 'object') return false;
  const name = (e as { name?: string }).name;
  const inner = (e as { inner?: { name?: string } }).inner?.name;
  return name === 'QuotaExceededError' || inner === 'QuotaExceededError' || name === 'NS_ERROR_DOM_QUOTA_REACHED';
}

/** Runs a write; a quota failure becomes a StorageFullError naming `what`. */
export async function guardQuota<T>(what: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (e) {
    if (isQuotaError(e)) throw new StorageFullError(what, await usageText());
    throw e;
  }
}

async function usageText(): Promise<string | undefined> {
  try {
    const est = await globalThis.navigator?.storage?.estimate?.();
    if (!est?.quota) return undefined;
    const mb = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
    return `${mb(est.usage ?? 0)} used of ${mb(est.quota)}`;
  } catch {
    return undefined;
  }
}
