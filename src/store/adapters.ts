/**
 * The adapter library in IndexedDB: metadata in `adapters`, PEFT files in `adapterFiles`, always
 * written and deleted together in one transaction so a record never points at missing files.
 */
import type { PeftFiles } from '../engine/types';
import { type TabtuneDb, newId } from './db';
import { guardQuota } from './errors';
import { inspectPeft } from './peft-files';
import type { AdapterFilesRecord, AdapterRecord } from './types';

export type NewAdapter = Omit<AdapterRecord, 'id' | 'sizeBytes' | 'createdAt' | 'config'> & {
  id?: string;
  createdAt?: string;
};

export class AdapterLibrary {
  constructor(readonly db: TabtuneDb) {}

  /** Newest first. */
  async list(): Promise<AdapterRecord[]> {
    const all = await this.db.getAllFromIndex('adapters', 'createdAt');
    return all.reverse();
  }

  get(id: string): Promise<AdapterRecord | undefined> {
    return this.db.get('adapters', id);
  }

  async files(id: string): Promise<PeftFiles> {
    const f = await this.db.get('adapterFiles', id);
    if (!f) throw new Error(`The files of adapter ${id} are missing from the browser's storage.`);
    return {
      adapterConfig: f.adapterConfig,
      adapterModel: f.adapterModel,
      ...(f.loftqBackbone ? { loftqBackbone: f.loftqBackbone } : {}),
    };
  }

  /** Builds the record for files (config summary and size from the files themselves). */
  static record(meta: NewAdapter, files: PeftFiles): { record: AdapterRecord; filesRecord: AdapterFilesRecord } {
    const info = inspectPeft(files);
    const id = meta.id ?? newId();
    const record: AdapterRecord = {
      ...meta,
      id,
      createdAt: meta.createdAt ?? new Date().toISOString(),
      config: info.config,
      sizeBytes: info.sizeBytes,
    };
    const filesRecord: AdapterFilesRecord = {
      id,
      adapterConfig: files.adapterConfig,
      adapterModel: files.adapterModel,
    };
    if (files.loftqBackbone) filesRecord.loftqBackbone = files.loftqBackbone;
    return { record, filesRecord };
  }

  async save(meta: NewAdapter, files: PeftFiles): Promise<AdapterRecord> {
    const { record, filesRecord } = AdapterLibrary.record(meta, files);
    await guardQuota(`adapter "${record.name}"`, async () => {
      const tx = this.db.transaction(['adapters', 'adapterFiles'], 'readwrite');
      await Promise.all([
        tx.objectStore('adapterFiles').put(filesRecord),
        tx.objectStore('adapters').put(record),
        tx.done,
      ]);
    });
    return record;
  }

  /** Imports PEFT files made elsewhere (e.g. with Python's peft). */
  async import(files: PeftFiles, name: string): Promise<AdapterRecord> {
    const info = inspectPeft(files);
    return this.save(
      {
        name,
        baseModel: info.baseModel ?? 'unknown',
        baseSource: null,
        train: null,
        datasetName: null,
        finalLoss: null,
        finalValLoss: null,
        steps: null,
        origin: 'imported',
        runId: null,
        stoppedEarly: false,
        history: [],
      },
      files,
    );
  }

  async rename(id: string, name: string): Promise<AdapterRecord> {
    const clean = name.trim();
    if (!clean) throw new Error('An adapter name cannot be empty.');
    const tx = this.db.transaction('adapters', 'readwrite');
    const rec = await tx.store.get(id);
    if (!rec) throw new Error(`Adapter ${id} no longer exists (deleted in another tab?).`);
    // Names tell adapters apart in Compare's columns and in downloads: keep them unique.
    const taken = (await tx.store.getAll()).some((o) => o.id !== id && o.name.toLowerCase() === clean.toLowerCase());
    if (taken) throw new Error(`An adapter named "${clean}" is already in the library; choose another name.`);
    const next = { ...rec, name: clean };
    await Promise.all([tx.store.put(next), tx.done]);
    return next;
  }

  async remove(id: string): Promise<void> {
    const tx = this.db.transaction(['adapters', 'adapterFiles'], 'readwrite');
    await Promise.all([tx.objectStore('adapters').delete(id), tx.objectStore('adapterFiles').delete(id), tx.done]);
  }
}
