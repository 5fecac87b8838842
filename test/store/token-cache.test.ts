/** The worker's store of tokenized dataset chunks, on fake-indexeddb. */
import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { beforeEach, describe, expect, it } from 'vitest';
import { IndexedDbTokenStore, KEEP_SETS } from '../../src/store/token-cache';

beforeEach(() => {
  globalThis.indexedDB = new IDBFactory();
});

describe('IndexedDbTokenStore', () => {
  it('keeps chunks by set and index, and only the sets used most recently', async () => {
    let clock = 1000;
    const store = await IndexedDbTokenStore.open('t', () => clock++);
    const bytes = (n: number) => Uint8Array.from({ length: 8 }, (_, i) => n + i);
    await store.use('a');
    await store.put('a', 0, bytes(1));
    await store.put('a', 1, bytes(2));
    expect(await store.get('a', 1)).toEqual(bytes(2));
    expect(await store.get('a', 2)).toBeUndefined();
    expect(await store.get('b', 0)).toBeUndefined();
    expect(KEEP_SETS).toBe(2);
    for (const s of ['b', 'c']) {
      await store.use(s);
      await store.put(s, 0, bytes(9));
    }
    expect(await store.sets()).toEqual(['c', 'b']);
    expect(await store.get('a', 0)).toBeUndefined();
    expect(await store.get('b', 0)).toEqual(bytes(9));
    // Using a set again makes it the most recent; the reopened database still has it.
    await store.use('b');
    store.close();
    const again = await IndexedDbTokenStore.open('t', () => clock++);
    expect(await again.sets()).toEqual(['b', 'c']);
    expect(await again.get('c', 0)).toEqual(bytes(9));
    again.close();
  });
});
