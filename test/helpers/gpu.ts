/**
 * One Gpu per test worker, created on first use. If no adapter can be obtained the test fails with
 * the install hint (GPU tests never skip).
 */
import { afterAll } from 'vitest';
import type { Gpu } from '../../src/gpu';
import { createNodeGpu } from '../../src/gpu/node';

let shared: Promise<Gpu> | null = null;

export function getGpu(): Promise<Gpu> {
  if (!shared) {
    shared = createNodeGpu();
    afterAll(async () => {
      const g = await shared;
      shared = null;
      g?.destroy();
    });
  }
  return shared;
}
