/**
 * LoftQ's backbone kept as its recipe (src/lora/loftq-backbone.ts): the previous iteration's
 * factors and a fingerprint of W rebuild the quantized base Q of loftqInit bit for bit (odd shapes,
 * partial NF4 blocks, 1 to 3 iterations), through an encode/decode round trip of the file; a
 * different W is refused by its fingerprint; a float32 copy of a bf16-trained weight is accepted
 * after rounding to bf16 (as a base saved in another precision), and gives the same Q.
 */
import { describe, expect, it } from 'vitest';
import { roundThroughHalf } from '../../src/gpu/half';
import { loftqInit } from '../../src/lora/loftq';
import {
  type LoftqBackboneModule,
  backboneWeight,
  decodeLoftqBackbone,
  encodeLoftqBackbone,
  weightFingerprint,
} from '../../src/lora/loftq-backbone';
import { randArray } from '../helpers/close';

function bits(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length);
}

describe('LoftQ backbone recipe', () => {
  const shapes: [outF: number, inF: number, r: number][] = [
    [37, 29, 3],
    [9, 23, 2],
  ];
  for (const [outF, inF, r] of shapes) {
    for (const iters of [1, 2, 3]) {
      it(`rebuilds Q bit for bit: W ${outF}x${inF}, r ${r}, loftq_iter ${iters}`, () => {
        const w = Float32Array.from(randArray(outF * inF, outF * 31 + inF + iters, 0.4));
        const init = loftqInit(w, outF, inF, r, iters);
        expect(init.prev === null).toBe(iters === 1);
        const m: LoftqBackboneModule = {
          path: 'model.layers.0.mlp.up_proj',
          key: 'model.layers.0.mlp.up_proj.weight',
          outF,
          inF,
          r,
          dtype: 'f32',
          fingerprint: weightFingerprint(w),
          prev: init.prev,
        };
        const spec = decodeLoftqBackbone(encodeLoftqBackbone({ baseModel: 'o/m', loftqIter: iters, modules: [m] }));
        expect(spec.baseModel).toBe('o/m');
        expect(spec.loftqIter).toBe(iters);
        const q = backboneWeight(spec.modules[0]!, w.slice(), 'test');
        expect(bits(q)).toEqual(bits(init.q));
        // what is stored is r·(in + out) values per module after the first iteration, nothing before
        const bytes = encodeLoftqBackbone({ baseModel: 'o/m', loftqIter: iters, modules: [m] }).byteLength;
        expect(bytes).toBeLessThan(iters === 1 ? 600 : 600 + 8 * r * (inF + outF));
      });
    }
  }

  it('refuses a different W, and accepts a float32 copy of the bf16 weight it was made from', () => {
    const [outF, inF, r] = [11, 70, 2];
    const w = Float32Array.from(roundThroughHalf(randArray(outF * inF, 5, 0.3), 'bf16'));
    const init = loftqInit(w, outF, inF, r, 2);
    const m: LoftqBackboneModule = {
      path: 'p',
      key: 'p.weight',
      outF,
      inF,
      r,
      dtype: 'bf16',
      fingerprint: weightFingerprint(w),
      prev: init.prev,
    };
    const other = w.slice();
    other[17] = other[17]! + 0.5;
    expect(() => backboneWeight(m, other, 'model.safetensors')).toThrow(
      /model.safetensors: "p.weight" is not the weight/,
    );
    expect(() => backboneWeight(m, w.subarray(1), 'x')).toThrow(/expects 11 x 70/);
    // the same values before rounding to bf16 (a float32 file of the model it was trained on in bf16)
    const fine = Float32Array.from(w, (v, k) => v + (k % 3 === 0 ? v * 2 ** -12 : 0));
    expect(weightFingerprint(fine)).not.toBe(m.fingerprint);
    expect(bits(backboneWeight(m, fine, 'x'))).toEqual(bits(init.q));
  });

  it('refuses a file that is not a backbone recipe', () => {
    expect(() => decodeLoftqBackbone(new Uint8Array(16), 'x.safetensors')).toThrow(/x.safetensors/);
  });
});
