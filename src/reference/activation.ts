/**
 * Float64 references of src/kernels/activation.ts, in transformers' terms:
 *   silu        = nn.SiLU: x·sigmoid(x)
 *   gelu_tanh   = "gelu_new" / gelu(approximate="tanh"): 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))
 *   gelu        = nn.GELU() / "gelu": 0.5·x·(1 + erf(x/√2))      (GPT-NeoX, Falcon)
 *   relu        = nn.ReLU: max(x, 0), gradient 1 where x > 0      (OPT)
 *   tanh        = nn.Tanh, gradient 1 - tanh²                      (PEFT's prefix projection MLP)
 *   SwiGLU MLP  = down(act(gate(x)) · up(x)): the product h = act(g)·u is what is referenced here.
 */

export type ActivationRef = 'silu' | 'gelu_tanh' | 'gelu' | 'relu' | 'tanh';

const K = Math.sqrt(2 / Math.PI);
const C = 0.044715;

/**
 * erf(x) in float64 (JavaScript has none): the series erf(x) = 2/√π · e^(-x²) · Σ 2ⁿx^(2n+1)/(1·3·…·(2n+1)),
 * whose terms are all positive (no cancellation), to full double precision for |x| ≤ 6; ±1 beyond
 * (1 - erf(6) ≈ 2e-17).
 */
export function erfRef(x: number): number {
  const a = Math.abs(x);
  if (a > 6) return Math.sign(x);
  let term = a;
  let sum = a;
  for (let n = 1; term > 1e-17 * sum; n++) {
    term *= (2 * a * a) / (2 * n + 1);
    sum += term;
  }
  return Math.sign(x) * Math.min(1, (2 / Math.sqrt(Math.PI)) * Math.exp(-a * a) * sum);
}

export function actRef(x: number, act: ActivationRef): number {
  if (act === 'silu') return x / (1 + Math.exp(-x));
  if (act === 'gelu') return 0.5 * x * (1 + erfRef(x / Math.SQRT2));
  if (act === 'relu') return Math.max(x, 0);
  if (act === 'tanh') return Math.tanh(x);
  return 0.5 * x * (1 + Math.tanh(K * (x + C * x * x * x)));
}

/** d act(x) / dx. */
export function actGradRef(x: number, act: ActivationRef): number {
  if (act === 'silu') {
    const s = 1 / (1 + Math.exp(-x));
    return s * (1 + x * (1 - s));
  }
  if (act === 'gelu') return 0.5 * (1 + erfRef(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
  if (act === 'relu') return x > 0 ? 1 : 0;
  if (act === 'tanh') return 1 - Math.tanh(x) ** 2;
  const t = Math.tanh(K * (x + C * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * K * (1 + 3 * C * x * x);
}

export function activationRef(x: ArrayLike<number>, act: ActivationRef): Float64Array {
  return Float64Array.from(x, (v) => actRef(v, act));
}

/** dx = dy·act'(x), added into `dx` when given with accumulate. */
export function activationBackwardRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  act: ActivationRef,
  dx?: Float64Array,
  accumulate = false,
): Float64Array {
  const out = dx ?? new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const d = dy[i]! * actGradRef(x[i]!, act);
    out[i] = accumulate ? out[i]! + d : d;
  }
  return out;
}

/** h = act(g)·u elementwise (separate g, u of equal length). */
export function swiGluRef(g: ArrayLike<number>, u: ArrayLike<number>, act: ActivationRef = 'silu'): Float64Array {
  const h = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) h[i] = actRef(g[i]!, act) * u[i]!;
  return h;
}

/** dg = dh·u·act'(g), du = dh·act(g). */
export function swiGluBackwardRef(
  dh: ArrayLike<number>,
  g: ArrayLike<number>,
  u: ArrayLike<number>,
  act: ActivationRef = 'silu',
): { dg: Float64Array; du: Float64Array } {
  const dg = new Float64Array(g.length);
  const du = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) {
    dg[i] = dh[i]! * u[i]! * actGradRef(g[i]!, act);
    du[i] = dh[i]! * actRef(g[i]!, act);
  }
  return { dg, du };
}

/** Splits a fused [rows, 2·cols] gate-up matrix into g, u [rows, cols] (gate columns first). */
export function splitGateUp(gu: ArrayLike<number>, rows: number, cols: number): { g: Float64Array; u: Float64Array } {
  const g = new Float64Array(rows * cols);
  const u = new Float64Array(rows * cols);
  for (let t = 0; t < rows; t++) {
    for (let j = 0; j < cols; j++) {
      g[t * cols + j] = gu[t * 2 * cols + j]!;
      u[t * cols + j] = gu[t * 2 * cols + cols + j]!;
    }
  }
  return { g, u };
}
