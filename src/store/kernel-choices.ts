/**
 * The matmul kernels tuned for each GPU (src/kernels/matmul/tune.ts), kept in their own IndexedDB
 * database ("tabtune-kernels", opened by the GPU worker, so the page's database never has to be
 * upgraded for it):
 *
 *   choices  { deviceKey, choices, savedAt }   per device key (adapter, driver, features used):
 *                                              { shape class: member }, and when it was saved
 *
 * A few hundred bytes per device. A failed read or write only means tuning again.
 */
import { type DBSchema, type IDBPDatabase, openDB } from 'idb';
import type { KernelChoiceStore, SavedKernelChoices } from '../engine/types';

export const KERNEL_DB_NAME = 'tabtune-kernels';
const KERNEL_DB_VERSION = 1;

interface KernelSchema extends DBSchema {
  choices: { key: string; value: SavedKernelChoices };
}

export class IndexedDbKernelStore implements KernelChoiceStore {
  private constructor(
    private readonly db: IDBPDatabase<KernelSchema>,
    private readonly now: () => number,
  ) {}

  static async open(name = KERNEL_DB_NAME, now: () => number = () => Date.now()): Promise<IndexedDbKernelStore> {
    const db = await openDB<KernelSchema>(name, KERNEL_DB_VERSION, {
      upgrade(d, oldVersion) {
        if (oldVersion < 1) d.createObjectStore('choices', { keyPath: 'deviceKey' });
      },
    });
    return new IndexedDbKernelStore(db, now);
  }

  async load(deviceKey: string): Promise<Record<string, string> | null> {
    return (await this.db.get('choices', deviceKey))?.choices ?? null;
  }

  async save(deviceKey: string, choices: Record<string, string>): Promise<void> {
    await this.db.put('choices', { deviceKey, choices: { ...choices }, savedAt: this.now() });
  }

  async list(): Promise<SavedKernelChoices[]> {
    return (await this.db.getAll('choices')).sort((a, b) => b.savedAt - a.savedAt);
  }

  async forget(deviceKey: string): Promise<void> {
    await this.db.delete('choices', deviceKey);
  }

  close(): void {
    this.db.close();
  }
}
