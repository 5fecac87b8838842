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

let plain: Promise<Gpu> | null = null;

/**
 * A second device without shader-f16 and subgroups, so the kernels' plain f32 paths run too (the
 * default device takes both wherever the adapter has them, as lavapipe does).
 */
export function getPlainGpu(): Promise<Gpu> {
  if (!plain) {
    plain = createNodeGpu({ wantF16: false, wantSubgroups: false });
    afterAll(async () => {
      const g = await plain;
      plain = null;
      g?.destroy();
    });
  }
  return plain;
}
