/**
 * Tokenized datasets kept between runs, in their own IndexedDB database ("tabtune-tokens", opened
 * only by the GPU worker, so the page's database never has to be upgraded for it):
 *
 *   sets    { set, usedAt }            one entry per tokenized dataset: its name is the SHA-256 of
 *                                      the file's bytes, the tokenizer's hash and the settings
 *                                      (src/train/data/prepared.ts), so a changed file, tokenizer
 *                                      or max length never reads stale tokens
 *   chunks  [set, chunk] -> bytes      CHUNK_RECORDS records each (src/train/data/tokens.ts
 *                                      encodeChunk: compact ids and loss masks)
 *
 * Only the KEEP_SETS sets used most recently are kept: opening another deletes the older ones'
 * chunks. A failed write (a full disk) is dropped by the caller: the tokens are made again next time.
 */
import { type DBSchema, type IDBPDatabase, openDB } from 'idb';
import type { TokenStore } from '../train/data/tokens';

export const TOKEN_DB_NAME = 'tabtune-tokens';
const TOKEN_DB_VERSION = 1;
/** Tokenized datasets kept at once. */
export const KEEP_SETS = 2;

interface TokenSchema extends DBSchema {
  sets: { key: string; value: { set: string; usedAt: number } };
  chunks: { key: [string, number]; value: Uint8Array };
}

export class IndexedDbTokenStore implements TokenStore {
  private constructor(
    private readonly db: IDBPDatabase<TokenSchema>,
    private readonly now: () => number,
  ) {}

  static async open(name = TOKEN_DB_NAME, now: () => number = () => Date.now()): Promise<IndexedDbTokenStore> {
    const db = await openDB<TokenSchema>(name, TOKEN_DB_VERSION, {
      upgrade(d, oldVersion) {
        if (oldVersion < 1) {
          d.createObjectStore('sets', { keyPath: 'set' });
          d.createObjectStore('chunks');
        }
      },
    });
    return new IndexedDbTokenStore(db, now);
  }

  async get(set: string, chunk: number): Promise<Uint8Array | undefined> {
    return this.db.get('chunks', [set, chunk]);
  }

  async put(set: string, chunk: number, bytes: Uint8Array): Promise<void> {
    await this.db.put('chunks', bytes, [set, chunk]);
  }

  async use(set: string): Promise<void> {
    await this.db.put('sets', { set, usedAt: this.now() });
    const sets = (await this.db.getAll('sets')).sort((a, b) => b.usedAt - a.usedAt);
    for (const old of sets.slice(KEEP_SETS)) {
      const tx = this.db.transaction(['sets', 'chunks'], 'readwrite');
      await Promise.all([
        tx.objectStore('chunks').delete(IDBKeyRange.bound([old.set, -Infinity], [old.set, Infinity])),
        tx.objectStore('sets').delete(old.set),
        tx.done,
      ]);
    }
  }

  /** Sets kept now, most recent first (for tests and diagnostics). */
  async sets(): Promise<string[]> {
    return (await this.db.getAll('sets')).sort((a, b) => b.usedAt - a.usedAt).map((s) => s.set);
  }

  close(): void {
    this.db.close();
  }
}
