/**
 * Float64 dense linear algebra for the LoRA initialisations computed from a frozen weight
 * (src/lora/from-weights.ts): the top-r singular triplets (PiSSA) and the first r columns of a QR
 * factorisation (OLoRA). Row-major Float64Array matrices; W is [rows, cols].
 *
 * - householderQrTop: Householder QR with LAPACK's reflector convention (dlarfg: beta = -sign(alpha)
 *   ·norm, no reflection when the column below the diagonal is zero), the one torch.linalg.qr uses,
 *   stopped after r reflections: Q[:, :r] and R[:r, :] cost O(rows·cols·r).
 * - topSingular: the r largest singular triplets. `exact` runs one-sided Jacobi (Hestenes) on the
 *   whole matrix (O(n³) per sweep, n = min(rows, cols): for the shapes where that is affordable);
 *   otherwise a randomized range finder with `niter` power iterations (Halko et al., what
 *   torch.svd_lowrank does for PEFT's pissa_niter_N), its small projection solved by Jacobi.
 */

/** Deterministic standard normals for the range finder (xorshift + Box-Muller; seeded). */
function normals(n: number, seed: number): Float64Array {
  let x = seed >>> 0 || 0x9e3779b9;
  const u = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return (x + 0.5) / 4294967296;
  };
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

/** Q[:, :r] [rows, r] and R[:r, :] [r, cols] of W = Q·R (see the file comment). */
export function householderQrTop(
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  r: number,
): { q: Float64Array; rTop: Float64Array } {
  if (r > Math.min(rows, cols)) throw new RangeError(`QR: r = ${r} exceeds min(rows, cols) = ${Math.min(rows, cols)}.`);
  const x = Float64Array.from(w);
  const vs: Float64Array[] = [];
  const taus: number[] = [];
  for (let k = 0; k < r; k++) {
    const alpha = x[k * cols + k]!;
    let tail = 0;
    for (let i = k + 1; i < rows; i++) tail += x[i * cols + k]! ** 2;
    const v = new Float64Array(rows - k);
    v[0] = 1;
    let tau = 0;
    if (tail > 0) {
      const beta = -Math.sign(alpha || 1) * Math.sqrt(alpha * alpha + tail);
      tau = (beta - alpha) / beta;
      for (let i = k + 1; i < rows; i++) v[i - k] = x[i * cols + k]! / (alpha - beta);
      // X[k:, k:] = (I - tau·v·vᵀ)·X[k:, k:]
      for (let j = k; j < cols; j++) {
        let d = 0;
        for (let i = k; i < rows; i++) d += v[i - k]! * x[i * cols + j]!;
        d *= tau;
        for (let i = k; i < rows; i++) x[i * cols + j] = x[i * cols + j]! - d * v[i - k]!;
      }
    }
    vs.push(v);
    taus.push(tau);
  }
  const rTop = new Float64Array(r * cols);
  for (let k = 0; k < r; k++) for (let j = k; j < cols; j++) rTop[k * cols + j] = x[k * cols + j]!;
  // Q[:, :r] = H_0·H_1·…·H_{r-1}·I[:, :r], applied from the last reflector.
  const q = new Float64Array(rows * r);
  for (let k = 0; k < r; k++) q[k * r + k] = 1;
  for (let k = r - 1; k >= 0; k--) {
    const v = vs[k]!;
    const tau = taus[k]!;
    if (tau === 0) continue;
    for (let j = 0; j < r; j++) {
      let d = 0;
      for (let i = k; i < rows; i++) d += v[i - k]! * q[i * r + j]!;
      d *= tau;
      for (let i = k; i < rows; i++) q[i * r + j] = q[i * r + j]! - d * v[i - k]!;
    }
  }
  return { q, rTop };
}

/**
 * One-sided Jacobi on the columns of M [m, n] (n small or moderate): returns U [m, n] with
 * orthonormal columns (zero for zero singular values), S [n] and V [n, n] with M = U·diag(S)·Vᵀ,
 * sorted by S descending.
 */
function jacobiSvd(mIn: Float64Array, m: number, n: number): { u: Float64Array; s: Float64Array; v: Float64Array } {
  const a = Float64Array.from(mIn);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 60; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < m; i++) {
          const ap = a[i * n + p]!;
          const aq = a[i * n + q]!;
          alpha += ap * ap;
          beta += aq * aq;
          gamma += ap * aq;
        }
        if (Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta) || gamma === 0) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const ap = a[i * n + p]!;
          const aq = a[i * n + q]!;
          a[i * n + p] = c * ap - s * aq;
          a[i * n + q] = s * ap + c * aq;
        }
        for (let i = 0; i < n; i++) {
          const vp = v[i * n + p]!;
          const vq = v[i * n + q]!;
          v[i * n + p] = c * vp - s * vq;
          v[i * n + q] = s * vp + c * vq;
        }
      }
    }
    if (!rotated) break;
  }
  const norms = Array.from({ length: n }, (_, j) => {
    let acc = 0;
    for (let i = 0; i < m; i++) acc += a[i * n + j]! ** 2;
    return Math.sqrt(acc);
  });
  const order = norms.map((_, j) => j).sort((x, y) => norms[y]! - norms[x]!);
  const u = new Float64Array(m * n);
  const s = new Float64Array(n);
  const vs = new Float64Array(n * n);
  order.forEach((j, k) => {
    s[k] = norms[j]!;
    for (let i = 0; i < m; i++) u[i * n + k] = norms[j]! > 0 ? a[i * n + j]! / norms[j]! : 0;
    for (let i = 0; i < n; i++) vs[i * n + k] = v[i * n + j]!;
  });
  return { u, s, v: vs };
}

function transpose(a: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j]!;
  return t;
}

/** C [m, n] = A [m, k] · B [k, n]. */
function mul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let l = 0; l < k; l++) {
      const x = a[i * k + l]!;
      if (x === 0) continue;
      for (let j = 0; j < n; j++) c[i * n + j] = c[i * n + j]! + x * b[l * n + j]!;
    }
  }
  return c;
}

/** Orthonormalises the columns of Y [m, k] in place (modified Gram-Schmidt, twice). */
function orthonormalize(y: Float64Array, m: number, k: number): void {
  for (let pass = 0; pass < 2; pass++) {
    for (let j = 0; j < k; j++) {
      for (let p = 0; p < j; p++) {
        let d = 0;
        for (let i = 0; i < m; i++) d += y[i * k + p]! * y[i * k + j]!;
        for (let i = 0; i < m; i++) y[i * k + j] = y[i * k + j]! - d * y[i * k + p]!;
      }
      let nrm = 0;
      for (let i = 0; i < m; i++) nrm += y[i * k + j]! ** 2;
      nrm = Math.sqrt(nrm);
      for (let i = 0; i < m; i++) y[i * k + j] = nrm > 0 ? y[i * k + j]! / nrm : 0;
    }
  }
}

export interface TopSingular {
  u: Float64Array; // [rows, r] left singular vectors
  s: Float64Array; // [r] descending
  vt: Float64Array; // [r, cols] right singular vectors, as rows
}

/** The r largest singular triplets of W [rows, cols] (see the file comment). */
export function topSingular(
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  r: number,
  o: { exact: true } | { exact: false; niter: number; seed: number },
): TopSingular {
  const n = Math.min(rows, cols);
  if (r > n) throw new RangeError(`SVD: r = ${r} exceeds min(rows, cols) = ${n}.`);
  const wd = Float64Array.from(w);
  let uFull: Float64Array; // [rows, k]
  let s: Float64Array; // [k]
  let vFull: Float64Array; // [cols, k]
  let k: number;
  if (o.exact) {
    k = n;
    if (cols <= rows) {
      const j = jacobiSvd(wd, rows, cols); // W = U·S·Vᵀ
      [uFull, s, vFull] = [j.u, j.s, j.v];
    } else {
      const j = jacobiSvd(transpose(wd, rows, cols), cols, rows); // Wᵀ = U'·S·V'ᵀ: W = V'·S·U'ᵀ
      [uFull, s, vFull] = [j.v, j.s, j.u];
    }
  } else {
    // Range finder: Q spans W·Ω, refined by niter rounds of (W·Wᵀ); then W ≈ Q·(Qᵀ·W).
    k = r;
    let q = mul(wd, normals(cols * k, o.seed), rows, cols, k);
    orthonormalize(q, rows, k);
    const wt = transpose(wd, rows, cols);
    for (let it = 0; it < o.niter; it++) {
      const z = mul(wt, q, cols, rows, k);
      orthonormalize(z, cols, k);
      q = mul(wd, z, rows, cols, k);
      orthonormalize(q, rows, k);
    }
    const bt = mul(wt, q, cols, rows, k); // (Qᵀ·W)ᵀ [cols, k] = U'·S·V'ᵀ, so Qᵀ·W = V'·S·U'ᵀ
    const j = jacobiSvd(bt, cols, k);
    uFull = mul(q, j.v, rows, k, k);
    s = j.s;
    vFull = j.u;
  }
  const u = new Float64Array(rows * r);
  const vt = new Float64Array(r * cols);
  for (let i = 0; i < rows; i++) for (let c = 0; c < r; c++) u[i * r + c] = uFull[i * k + c]!;
  for (let c = 0; c < r; c++) for (let j = 0; j < cols; j++) vt[c * cols + j] = vFull[j * k + c]!;
  return { u, s: s.slice(0, r), vt };
}
