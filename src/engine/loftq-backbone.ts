/**
 * Which frozen weights the loaded model holds: its own, or a LoftQ adapter's quantized backbone Q
 * (src/lora/loftq-backbone.ts). A LoftQ adapter only means something on Q, so evaluation and
 * generation with it first put Q in place (rebuilt from the GPU's own weights, checked by
 * fingerprint), and the base model, another adapter or a training run put the original bytes back.
 * One backbone is held at a time, with the original bytes of the weights it replaced, so going back
 * and forth in Compare costs GPU writes, not a new NF4 pass; each switch makes generation's KV cache
 * start over (`onChange`).
 */
import type { Gpu } from '../gpu/context';
import { loftqBackboneOnGpu } from '../lora/from-weights';
import { decodeLoftqBackbone } from '../lora/loftq-backbone';
import type { GpuModel } from '../model/gpu-model';
import type { AdapterRef } from './types';

export class BackboneSwitch {
  private current: { key: string; state: { apply(): void; restore(): void } } | null = null;
  private held: { key: string; state: { apply(): void; restore(): void } } | null = null;

  constructor(private readonly onChange: () => void) {}

  /** Puts `adapter`'s LoftQ backbone in place, or the model's own weights for none or any other adapter. */
  async use(gpu: Gpu, model: GpuModel, adapter: AdapterRef | null): Promise<void> {
    const bytes = adapter?.files.loftqBackbone;
    const wanted = bytes ? adapter.key : null;
    if ((this.current?.key ?? null) === wanted) return;
    this.original();
    if (!bytes || !wanted) return;
    if (this.held?.key !== wanted) {
      this.held = null; // the previous backbone's bytes can go before the next is built
      this.held = { key: wanted, state: await loftqBackboneOnGpu(gpu, model, decodeLoftqBackbone(bytes)) };
    }
    this.held.state.apply();
    this.current = this.held;
    this.onChange();
  }

  /** The model's own weights back in place (before training, or for the base model). */
  original(): void {
    if (!this.current) return;
    this.current.state.restore();
    this.current = null;
    this.onChange();
  }

  /**
   * Drops what is held for adapter `key` (freed; the engine keys backbones by adapterIdentity), or
   * everything (`null`: the model was unloaded).
   */
  forget(key: string | null): void {
    if (key !== null && this.held?.key !== key) return;
    if (key !== null) this.original();
    this.current = null;
    this.held = null;
  }
}
