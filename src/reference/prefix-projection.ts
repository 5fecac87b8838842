/**
 * Float64 spec of PEFT 0.21's PrefixEncoder with prefix_projection=True (peft/tuners/prefix_tuning/
 * model.py), the reparameterisation a prefix is trained through:
 *   X = embedding [P, D]                        (D = token_dim)
 *   H = tanh(X·W1ᵀ + b1)                        W1 [E, D] (nn.Linear(D, E)), b1 [E]; E = encoder_hidden_size
 *   T = H·W2ᵀ + b2                              W2 [O, E] (nn.Linear(E, O)), b2 [O]; O = num_layers·2·D
 * T is the prefix table (what PEFT saves as `prompt_embeddings`). The backward takes dT and returns
 * the gradients of all five parameters: dW2 = dTᵀ·H, db2 = Σ_p dT, dZ = (dT·W2) ∘ (1 - H²),
 * dW1 = dZᵀ·X, db1 = Σ_p dZ, dX = dZ·W1.
 */

export interface PrefixMlpRef {
  P: number;
  D: number;
  E: number;
  O: number;
  x: Float64Array; // [P, D]
  w1: Float64Array; // [E, D]
  b1: Float64Array; // [E]
  w2: Float64Array; // [O, E]
  b2: Float64Array; // [O]
}

/** H [P, E] and the table T [P, O]. */
export function prefixMlpForwardRef(m: PrefixMlpRef): { h: Float64Array; table: Float64Array } {
  const { P, D, E, O } = m;
  const h = new Float64Array(P * E);
  const table = new Float64Array(P * O);
  for (let p = 0; p < P; p++) {
    for (let e = 0; e < E; e++) {
      let z = m.b1[e]!;
      for (let d = 0; d < D; d++) z += m.x[p * D + d]! * m.w1[e * D + d]!;
      h[p * E + e] = Math.tanh(z);
    }
    for (let o = 0; o < O; o++) {
      let t = m.b2[o]!;
      for (let e = 0; e < E; e++) t += h[p * E + e]! * m.w2[o * E + e]!;
      table[p * O + o] = t;
    }
  }
  return { h, table };
}

/** The five parameter gradients from dT [P, O] (H from the forward). */
export function prefixMlpBackwardRef(
  m: PrefixMlpRef,
  h: Float64Array,
  dT: ArrayLike<number>,
): { dx: Float64Array; dw1: Float64Array; db1: Float64Array; dw2: Float64Array; db2: Float64Array } {
  const { P, D, E, O } = m;
  const dw2 = new Float64Array(O * E);
  const db2 = new Float64Array(O);
  const dz = new Float64Array(P * E);
  for (let p = 0; p < P; p++) {
    for (let o = 0; o < O; o++) {
      const g = dT[p * O + o]!;
      db2[o]! += g;
      for (let e = 0; e < E; e++) {
        dw2[o * E + e]! += g * h[p * E + e]!;
        dz[p * E + e]! += g * m.w2[o * E + e]!;
      }
    }
    for (let e = 0; e < E; e++) dz[p * E + e]! *= 1 - h[p * E + e]! ** 2;
  }
  const dw1 = new Float64Array(E * D);
  const db1 = new Float64Array(E);
  const dx = new Float64Array(P * D);
  for (let p = 0; p < P; p++) {
    for (let e = 0; e < E; e++) {
      const g = dz[p * E + e]!;
      db1[e]! += g;
      for (let d = 0; d < D; d++) {
        dw1[e * D + d]! += g * m.x[p * D + d]!;
        dx[p * D + d]! += g * m.w1[e * D + d]!;
      }
    }
  }
  return { dx, dw1, db1, dw2, db2 };
}
