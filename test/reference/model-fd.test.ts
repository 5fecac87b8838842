/**
 * Finite-difference checks of the float64 references the GPU kernels and the runner are tested
 * against: attention with a sliding window, soft-capping and ALiBi (dQ, dK, dV), and, for every
 * family, the whole model's LoRA gradients (all-linear, every block form) against central
 * differences of the token-mean loss.
 */
import { describe, expect, it } from 'vitest';
import { initLoraModules } from '../../src/lora/init';
import { loraConfigFromSettings, resolveTargets } from '../../src/lora/targets';
import { alibiSlopes } from '../../src/reference/alibi';
import { attentionBackwardRef, attentionRef } from '../../src/reference/attention';
import { type RefLoraModule, modelBackwardRef, modelForwardRef } from '../../src/reference/model';
import { FAMILY_CASES } from '../fixtures/family-cases';
import { randArray, rng } from '../helpers/close';
import { dot, numericGrad } from '../helpers/fd';
import { tinyRefModel } from '../helpers/tiny-gpu-model';

describe('attention reference: finite differences', () => {
  const shape = { batch: 2, seq: 7, heads: 4, kvHeads: 2, headDim: 5 };
  const variants = {
    plain: {},
    'window 3': { window: 3 },
    'soft-cap 0.7 and scale 0.9': { softcap: 0.7, scale: 0.9 },
    ALiBi: { alibi: { slopes: alibiSlopes(4), bf16: false, mul: 1 } },
    'ALiBi in bfloat16 (Falcon), window 2': { alibi: { slopes: alibiSlopes(4), bf16: true, mul: 0.4 }, window: 2 },
  };
  for (const [name, v] of Object.entries(variants)) {
    it(`dQ, dK, dV: ${name}`, () => {
      const n = 2 * 7;
      const f64 = (len: number, seed: number) => Float64Array.from(randArray(len, seed, 1));
      const q = f64(n * 4 * 5, 1);
      const k = f64(n * 2 * 5, 2);
      const vv = f64(n * 2 * 5, 3);
      const g = f64(n * 4 * 5, 4);
      const loss = () => dot(attentionRef({ q, k, v: vv, ...shape, ...v }).o, g);
      const an = attentionBackwardRef({ q, k, v: vv, dO: g, ...shape, ...v });
      for (const [label, p, d] of [
        ['dq', q, an.dq],
        ['dk', k, an.dk],
        ['dv', vv, an.dv],
      ] as const) {
        const num = numericGrad(p, loss);
        for (let i = 0; i < num.length; i++)
          expect(Math.abs(num[i]! - d[i]!), `${label}[${i}]`).toBeLessThan(1e-7 * Math.max(1, Math.abs(num[i]!)));
      }
    });
  }

  it('a window masks exactly the keys transformers masks (kv > q - window)', () => {
    const q = randArray(7 * 5, 5, 1);
    const k = randArray(7 * 5, 6, 1);
    const v = randArray(7 * 5, 7, 1);
    const one = { batch: 1, seq: 7, heads: 1, kvHeads: 1, headDim: 5 };
    const w = attentionRef({ q, k, v, ...one, window: 3 }).o;
    // row 5 sees keys 3, 4, 5: changing key 2 must not change it, changing key 3 must
    const k2 = Float64Array.from(k);
    k2.fill(9, 2 * 5, 3 * 5);
    expect(attentionRef({ q, k: k2, v, ...one, window: 3 }).o.slice(25, 30)).toEqual(w.slice(25, 30));
    k2.fill(9, 3 * 5, 4 * 5);
    expect(attentionRef({ q, k: k2, v, ...one, window: 3 }).o.slice(25, 30)).not.toEqual(w.slice(25, 30));
  });
});

describe('whole-model reference: LoRA gradients match finite differences', () => {
  for (const fc of FAMILY_CASES) {
    it(fc.name, async () => {
      const { loaded, ref } = await tinyRefModel({ ...fc.o, seed: 4 });
      const modules = [...loaded.arch.top, ...loaded.arch.layers.flatMap((l) => l.linears)];
      const cfg = loraConfigFromSettings(
        { r: 2, lora_alpha: 4, lora_dropout: 0, target_modules: 'all-linear', use_rslora: false },
        loaded.config.modelType,
      );
      const init = initLoraModules(cfg, resolveTargets(cfg, modules), 21);
      const lora = new Map<string, RefLoraModule>();
      init.forEach((m, i) =>
        lora.set(m.path, {
          a: Float64Array.from(m.a),
          b: Float64Array.from(randArray(m.b.length, 97 + i, 0.3)),
          r: 2,
          scale: 2,
          dropout: 0,
          seed: 0,
        }),
      );
      const r = rng(9);
      const B = 2;
      const S = 6;
      const ids = Array.from({ length: B * S }, () => Math.floor(r() * 200));
      const positions = Array.from({ length: B * S }, (_, t) => t % S);
      const targets = ids.map((_, t) => (t % S === S - 1 ? 0xffffffff : ids[t + 1]!));
      const batch = { B, S, ids, positions, targets };
      const loss = () => {
        const f = modelForwardRef(ref, lora, batch);
        return f.lossSum / f.count;
      };
      const fwd = modelForwardRef(ref, lora, batch);
      const grads = modelBackwardRef(ref, lora, batch, fwd, 1 / fwd.count);
      expect(grads.dA.size).toBe(modules.length);
      const pick = rng(3);
      const eps = 1e-5;
      for (const m of [modules[0]!, modules[modules.length - 1]!, modules[Math.floor(modules.length / 2)]!]) {
        for (const which of ['a', 'b'] as const) {
          const arr = lora.get(m.path)![which] as Float64Array;
          const i = Math.floor(pick() * arr.length);
          const orig = arr[i]!;
          arr[i] = orig + eps;
          const lp = loss();
          arr[i] = orig - eps;
          const lm = loss();
          arr[i] = orig;
          const fd = (lp - lm) / (2 * eps);
          const an = (which === 'a' ? grads.dA : grads.dB).get(m.path)![i]!;
          expect(Math.abs(fd - an), `${m.path}.${which}[${i}]: fd ${fd} vs analytic ${an}`).toBeLessThan(
            1e-6 + 1e-4 * Math.abs(fd),
          );
        }
      }
    });
  }
});

describe('whole-model reference: prompt and prefix tuning gradients match finite differences', () => {
  const names = ['llama', 'gpt2', 'gemma2', 'bloom', 'falcon (ALiBi, sequential)', 'mistral (sliding window)', 'qwen3'];
  for (const fc of FAMILY_CASES.filter((f) => names.includes(f.name))) {
    for (const kind of ['prompt', 'prefix'] as const) {
      it(`${fc.name}, ${kind} tuning`, async () => {
        const { loaded, ref } = await tinyRefModel({ ...fc.o, seed: 4 });
        const c = loaded.config;
        const P = 3;
        const width = kind === 'prompt' ? c.hiddenSize : 2 * c.numLayers * c.numKvHeads * c.headDim;
        const table = Float64Array.from(randArray(P * width, 31, 0.5));
        const r = rng(9);
        const B = 2;
        const S = P + 5;
        // rows p < P are virtual: any id, positions 0..P-1, no target
        const ids = Array.from({ length: B * S }, (_, t) => (t % S < P ? 0 : Math.floor(r() * 200)));
        const positions = Array.from({ length: B * S }, (_, t) => t % S);
        const targets = ids.map((_, t) => (t % S < P || t % S === S - 1 ? 0xffffffff : ids[t + 1]!));
        const batch = { B, S, ids, positions, targets, virtual: { kind, P, table } };
        const none = new Map<string, RefLoraModule>();
        const loss = (b = batch) => {
          const f = modelForwardRef(ref, none, b);
          return f.lossSum / f.count;
        };
        const fwd = modelForwardRef(ref, none, batch);
        const grads = modelBackwardRef(ref, none, batch, fwd, 1 / fwd.count);
        const d = grads.dVirtual!;
        const pick = rng(5);
        const eps = 1e-5;
        for (let n = 0; n < 6; n++) {
          const i = Math.floor(pick() * table.length);
          const orig = table[i]!;
          table[i] = orig + eps;
          const lp = loss();
          table[i] = orig - eps;
          const lm = loss();
          table[i] = orig;
          const fd = (lp - lm) / (2 * eps);
          expect(Math.abs(fd - d[i]!), `table[${i}]: fd ${fd} vs analytic ${d[i]}`).toBeLessThan(
            1e-6 + 1e-4 * Math.abs(fd),
          );
        }
        expect(d.some((x) => x !== 0)).toBe(true);
        // The virtual rows' own ids do not matter (their embeddings, or keys and values, are replaced).
        const other = { ...batch, ids: ids.map((id, t) => (t % S < P ? 7 + (t % S) : id)) };
        expect(loss(other)).toBeCloseTo(loss(), 12);
      });
    }
  }
});
