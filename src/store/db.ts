/**
 * What Tabtune keeps in the browser, and where.
 *
 *   IndexedDB database "tabtune" (schema version DB_VERSION, opened through `idb`):
 *     adapters      AdapterRecord       the adapter library: name, base model, LoRA config, date,
 *                                       final loss, size, loss history (small; listed often)
 *     adapterFiles  AdapterFilesRecord  each adapter's PEFT files (adapter_config.json text and
 *                                       adapter_model.safetensors bytes), keyed like `adapters`
 *     runs          RunRecord           training runs: settings, the dataset (text or file), loss history,
 *                                       status and the lease of the tab that trains it
 *     checkpoints   CheckpointRecord    the latest checkpoint blob of each run (src/train/checkpoint.ts),
 *                                       keyed by run id; deleted when the run's adapter is saved
 *     models        CachedModelRecord   which models have files in the Cache API, their size
 *
 *   IndexedDB database "tabtune-tokens" (token-cache.ts, the GPU worker's own): large datasets
 *     tokenized in chunks, so a resume or a second run on the same data does not tokenize again.
 *
 *   Cache API cache MODEL_CACHE ("tabtune-models-v1"): downloaded model files (config.json,
 *     tokenizer files, safetensors weights), keyed by their URL, so a model is downloaded once.
 *     See model-cache.ts.
 *
 * Nothing here imports React or touches the DOM. Writes that hit the storage quota throw a
 * StorageFullError (errors.ts) and leave what was saved before intact.
 */
import { type DBSchema, type IDBPDatabase, openDB } from 'idb';
import type {
  AdapterFilesRecord,
  AdapterRecord,
  CachedModelRecord,
  CheckpointRecord,
  RunRecord,
  RunStatus,
} from './types';

export const DB_NAME = 'tabtune';
/** Bump with a migration step in `upgrade` whenever a store or index changes. */
export const DB_VERSION = 1;
export const MODEL_CACHE = 'tabtune-models-v1';

export interface TabtuneSchema extends DBSchema {
  adapters: { key: string; value: AdapterRecord; indexes: { createdAt: string } };
  adapterFiles: { key: string; value: AdapterFilesRecord };
  runs: { key: string; value: RunRecord; indexes: { updatedAt: string; status: RunStatus } };
  checkpoints: { key: string; value: CheckpointRecord };
  models: { key: string; value: CachedModelRecord };
}

export type TabtuneDb = IDBPDatabase<TabtuneSchema>;

export class StorageUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StorageUnavailableError';
  }
}

/** Opens (and creates or migrates) the database. `name` lets tests use a fresh one. */
export async function openTabtuneDb(name = DB_NAME): Promise<TabtuneDb> {
  if (typeof indexedDB === 'undefined') {
    throw new StorageUnavailableError(
      'This browser gives the page no IndexedDB (private mode in some browsers disables it), so adapters ' +
        'and checkpoints cannot be saved. Open Tabtune in a normal window.',
    );
  }
  try {
    const db: TabtuneDb = await openDB<TabtuneSchema>(name, DB_VERSION, {
      upgrade(db, oldVersion) {
        // Version 0 -> 1: the initial stores.
        if (oldVersion < 1) {
          const adapters = db.createObjectStore('adapters', { keyPath: 'id' });
          adapters.createIndex('createdAt', 'createdAt');
          db.createObjectStore('adapterFiles', { keyPath: 'id' });
          const runs = db.createObjectStore('runs', { keyPath: 'id' });
          runs.createIndex('updatedAt', 'updatedAt');
          runs.createIndex('status', 'status');
          db.createObjectStore('checkpoints', { keyPath: 'runId' });
          db.createObjectStore('models', { keyPath: 'id' });
        }
      },
      blocking() {
        // A newer version of the app opened in another tab: step aside so it can upgrade.
        db.close();
      },
    });
    return db;
  } catch (e) {
    throw new StorageUnavailableError(
      `The browser refused to open the "${name}" database (${(e as Error).message}). Saved adapters cannot be ` +
        'read or written; check that site data is allowed for this page, or close other Tabtune tabs and reload.',
    );
  }
}

/** A short random id ("a1b2c3d4e5f6"). */
export function newId(): string {
  const bytes = new Uint8Array(8);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
