/**
 * The prelude of the register-blocked direct-load matmul (shaders/matmul_direct.wgsl): constants,
 * bindings, the operand loaders and the block functions init / step4 / scalar_step / out_drop /
 * store. Every register index is a constant in the generated text, so the TM x TN
 * accumulators (module-private vec4s) stay in registers.
 *
 * Loaders read an operand at its stored (row, col): `<x>_at(r, c)` one element, `<x>_v(r, c)` the
 * four elements (r, c .. c+3) along the stored row, one 16-byte load (8 bytes for 16-bit B) when
 * the variant's `vecA` / `vecB` say the strides, offsets and window starts are 4-aligned, else four
 * scalar loads. Operand dropout multiplies each element by the mask of its stored (row, col).
 */
import { type MatmulBType, type WeightDType, weightArrayType, weightLoader } from '../common';

/**
 * The fields of a matmul variant its operand bindings and loaders depend on (operandPrelude).
 * Segment 2's layout, the bias' dtype and the output dropout are not among them: the
 * register-block kernels read them from uniforms, so one compiled shader serves every LoRA
 * layout, bias dtype and dropout setting (lavapipe takes most of a second of CPU per shader).
 */
export interface OperandSpec {
  transA: boolean;
  transB: boolean;
  /** 'nf4': a 4-bit weight, scalar loads through shaders/nf4.wgsl (vecB is then false). */
  bType: MatmulBType;
  nf4DoubleQuant?: boolean;
  /** A, B read with vector loads along their stored rows. */
  vecA: boolean;
  vecB: boolean;
  dropA: boolean;
  dropB: boolean;
  /** A2 and B2 are bound (the LoRA segment; its layout is uniforms). */
  seg2: boolean;
  /** A bias is bound (its dtype is a uniform), and whether it may be f16 (else f32 or bf16). */
  bias: boolean;
  biasF16: boolean;
  /** f16 B read natively (shader-f16). */
  nativeB: boolean;
}

/** The fields of a matmul variant the direct kernel needs. */
export interface DirectSpec extends OperandSpec {
  tm: number;
  tn: number;
  wx: number;
  wy: number;
  /** step1 is compiled in (a depth range may end off a multiple of 4); else it is empty. */
  kTail: boolean;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const LANE = ['x', 'y', 'z', 'w'];

/** WGSL of the four elements (r, c+l) of an operand read one at a time by `at`. */
function vecOfScalars(at: string): string {
  return `vec4<f32>(${range(4)
    .map((l) => `${at}(r, c + ${l}u)`)
    .join(', ')})`;
}

function maskVec(seed: string): string {
  return `vec4<f32>(${range(4)
    .map((l) => `dropout_mul(p.${seed}, p.thrIn, p.scaleIn, r, c + ${l}u)`)
    .join(', ')})`;
}

/** Loaders of A: bound as array<vec4<f32>> for vector loads, else array<f32>. */
function loadersA(s: OperandSpec): string[] {
  const drop = s.dropA ? ' * dropout_mul(p.seedIn, p.thrIn, p.scaleIn, r, c)' : '';
  const L: string[] = [];
  if (s.vecA) {
    const mask = s.dropA ? ` * ${maskVec('seedIn')}` : '';
    L.push(`fn a_at(r: u32, c: u32) -> f32 { let i = r * p.lda + c + p.aAdj; return A[i >> 2u][i & 3u]${drop}; }`);
    L.push(`fn a_v(r: u32, c: u32) -> vec4<f32> { return A[(r * p.lda + c + p.aAdj) >> 2u]${mask}; }`);
  } else {
    L.push(`fn a_at(r: u32, c: u32) -> f32 { return A[r * p.lda + c + p.aAdj]${drop}; }`);
    L.push(`fn a_v(r: u32, c: u32) -> vec4<f32> { return ${vecOfScalars('a_at')}; }`);
  }
  L.push(
    s.transA
      ? 'fn a_s(m: u32, k: u32) -> f32 { return a_at(k, m); }'
      : 'fn a_s(m: u32, k: u32) -> f32 { return a_at(m, k); }',
  );
  return L;
}

/**
 * The WGSL array type of B: with vector loads array<vec4<f32>>, array<vec2<u32>> (four 16-bit
 * values) or array<vec4<f16>> (shader-f16); else weightArrayType's scalar binding.
 */
function directBArray(s: { bType: WeightDType; vecB: boolean; nativeB: boolean }): string {
  if (!s.vecB) return weightArrayType(s.bType, { typedF32: true, nativeF16: s.nativeB });
  return s.bType === 'f32' ? 'array<vec4<f32>>' : s.nativeB ? 'array<vec4<f16>>' : 'array<vec2<u32>>';
}

/** Loaders of B (see directBArray for its binding). */
function loadersB(s: OperandSpec): string[] {
  const drop = s.dropB ? ' * dropout_mul(p.seedIn, p.thrIn, p.scaleIn, r, c)' : '';
  const L: string[] = [];
  const idx = 'r * p.ldb + c + p.bAdj';
  if (s.bType === 'nf4') {
    if (s.vecB) throw new Error('matmul direct: a 4-bit NF4 B is read with scalar loads.');
    L.push('fn b_elem(i: u32) -> f32 { return nf4_load(i, p.nf4Abs, p.nf4Abs2); }');
    L.push(`fn b_at(r: u32, c: u32) -> f32 { return b_elem(${idx}); }`);
    L.push(`fn b_v(r: u32, c: u32) -> vec4<f32> { return ${vecOfScalars('b_at')}; }`);
  } else if (!s.vecB) {
    L.push(weightLoader('b_elem', 'B', s.bType, { typedF32: true, nativeF16: s.nativeB }));
    L.push(`fn b_at(r: u32, c: u32) -> f32 { return b_elem(${idx})${drop}; }`);
    L.push(`fn b_v(r: u32, c: u32) -> vec4<f32> { return ${vecOfScalars('b_at')}; }`);
  } else {
    const at = `(${idx}) >> 2u`;
    let v: string;
    if (s.bType === 'f32') v = `B[${at}]${s.dropB ? ` * ${maskVec('seedIn')}` : ''}`;
    else if (s.nativeB) v = `vec4<f32>(B[${at}])`;
    else if (s.bType === 'f16') v = `vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y))`;
    else {
      v =
        'vec4<f32>(bitcast<f32>(w.x << 16u), bitcast<f32>(w.x & 0xffff0000u), ' +
        'bitcast<f32>(w.y << 16u), bitcast<f32>(w.y & 0xffff0000u))';
    }
    const pre = s.bType !== 'f32' && !s.nativeB ? `let w = B[${at}]; ` : '';
    L.push(`fn b_v(r: u32, c: u32) -> vec4<f32> { ${pre}return ${v}; }`);
    // One element (the tail depths): the lane of its vector (dropout included for f32).
    L.push(`fn b_at(r: u32, c: u32) -> f32 { let i = ${idx}; return b_v(r, c - (i & 3u))[i & 3u]; }`);
  }
  L.push(
    s.transB
      ? 'fn b_s(k: u32, n: u32) -> f32 { return b_at(n, k); }'
      : 'fn b_s(k: u32, n: u32) -> f32 { return b_at(k, n); }',
  );
  return L;
}

/**
 * The bindings of a variant's operands and their loaders, shared by the direct kernel and the
 * workgroup-tile kernel (shaders/matmul_wg.wgsl): A, B (or NF4W / NF4S), [A2, B2], [BIAS], C;
 * a_at / a_v / a_s, b_at / b_v / b_s, a2 / b2 (strides from uniforms) and bias_at (its dtype
 * from P.biasType; BIAS bound as u32 words), with the constants HAS_SEG2 and HAS_BIAS (the
 * bodies name a2 / b2 / bias_at in branches these turn off).
 */
export function operandPrelude(s: OperandSpec): string[] {
  const b = (x: boolean) => (x ? 'true' : 'false');
  const L: string[] = [];
  let slot = 1;
  L.push(`@group(0) @binding(${slot++}) var<storage, read> A: array<${s.vecA ? 'vec4<f32>' : 'f32'}>;`);
  if (s.bType === 'nf4') {
    L.push(`const NF4_DQ = ${b(!!s.nf4DoubleQuant)};`);
    L.push(`@group(0) @binding(${slot++}) var<storage, read> NF4W: array<u32>;`);
    L.push(`@group(0) @binding(${slot++}) var<storage, read> NF4S: array<u32>;`);
  } else {
    const bt = s.bType;
    L.push(`@group(0) @binding(${slot++}) var<storage, read> B: ${directBArray({ ...s, bType: bt })};`);
  }
  if (s.seg2) {
    L.push(`@group(0) @binding(${slot++}) var<storage, read> A2: array<f32>;`);
    L.push(`@group(0) @binding(${slot++}) var<storage, read> B2: array<f32>;`);
  }
  if (s.bias) L.push(`@group(0) @binding(${slot++}) var<storage, read> BIAS: array<u32>;`);
  L.push(`@group(0) @binding(${slot}) var<storage, read_write> C: array<f32>;`);
  L.push(`const HAS_SEG2 = ${b(s.seg2)};`, `const HAS_BIAS = ${b(s.bias)};`);
  L.push(...loadersA(s), ...loadersB(s));
  if (s.seg2) {
    L.push(
      'fn a2(m: u32, k: u32) -> f32 { return A2[m * p.a2Sm + k * p.a2Sk + p.a2Adj]; }',
      'fn b2(k: u32, n: u32) -> f32 { return p.alpha2 * B2[k * p.b2Sk + n * p.b2Sn + p.b2Adj]; }',
    );
  } else L.push('fn a2(m: u32, k: u32) -> f32 { return 0.0; }', 'fn b2(k: u32, n: u32) -> f32 { return 0.0; }');
  if (!s.bias) L.push('fn bias_at(n: u32) -> f32 { return 0.0; }');
  else {
    // f32 words, or two 16-bit halves per word (element 2j in the low half), widened; one load
    // site. The f16 widening only where the variant says so (biasF16): it costs lavapipe a tenth
    // of a second of compile time, and f16 biases come only with f16 models.
    L.push(
      'fn bias_at(n: u32) -> f32 {',
      '  let i = n + p.biasAdj;',
      '  let half = p.biasType != 0u;',
      '  let w = BIAS[select(i, i >> 1u, half)];',
      '  if (!half) { return bitcast<f32>(w); }',
      '  let h = (w >> (16u * (i & 1u))) & 0xffffu;',
      s.biasF16
        ? '  return select(bitcast<f32>(h << 16u), unpack2x16float(h).x, p.biasType == 1u);'
        : '  return bitcast<f32>(h << 16u);',
      '}',
    );
  }
  return L;
}

/** The prelude of a direct variant (see the file comment and shaders/matmul_direct.wgsl). */
export function directPrelude(s: DirectSpec): string[] {
  const { tm, tn } = s;
  if (tn % 4) throw new Error(`matmul direct: the block's ${tn} columns must be a multiple of 4.`);
  // Rows of a transposed A are read 4 at a time (one vector along M) when the block has 4k rows.
  const aGroups = s.transA && tm % 4 === 0;
  const tn4 = tn / 4;
  const acc = (i: number, j4: number) => `acc[${i * tn4 + j4}]`;
  const L: string[] = [
    `const TM = ${tm}u;`,
    `const TN = ${tn}u;`,
    `const WX = ${s.wx}u;`,
    `const WY = ${s.wy}u;`,
    `const BM = ${s.wy * tm}u;`,
    `const BN = ${s.wx * tn}u;`,
  ];
  L.push(...operandPrelude(s));
  // Per-invocation state: accumulators, clamped rows / columns, vector starts along M / N.
  L.push(`var<private> acc: array<vec4<f32>, ${tm * tn4}>;`);
  L.push('var<private> mb: u32;', 'var<private> nb: u32;');
  for (const i of range(tm)) L.push(`var<private> r${i}: u32;`);
  for (const j of range(tn)) L.push(`var<private> c${j}: u32;`);
  if (aGroups) for (const g of range(tm / 4)) L.push(`var<private> va${g}: u32;`);
  if (!s.transB) for (const g of range(tn4)) L.push(`var<private> vb${g}: u32;`);
  const init = ['fn init(mBase: u32, nBase: u32) {', '  mb = mBase;', '  nb = nBase;'];
  for (const i of range(tm)) init.push(`  r${i} = min(mBase + ${i}u, p.mEnd - 1u);`);
  for (const j of range(tn)) init.push(`  c${j} = min(nBase + ${j}u, p.nEnd - 1u);`);
  // A group past the end only feeds outputs that are never stored; it is clamped to stay inside the
  // binding, to a 4-aligned start for vector loads (whose chunks start 4-aligned), else to the last
  // row / column (chunks of scalar-loaded operands may start anywhere).
  const lastA = s.vecA ? '(p.mEnd - 1u) & ~3u' : 'p.mEnd - 1u';
  const lastB = s.vecB ? '(p.nEnd - 1u) & ~3u' : 'p.nEnd - 1u';
  if (aGroups) for (const g of range(tm / 4)) init.push(`  va${g} = min(mBase + ${4 * g}u, ${lastA});`);
  if (!s.transB) for (const g of range(tn4)) init.push(`  vb${g} = min(nBase + ${4 * g}u, ${lastB});`);
  init.push('}');
  L.push(...init);

  // step4: depths k .. k+3. a{i}: row i over the 4 depths; b{kk}_{g}: depth kk over columns 4g..4g+3.
  const st = ['fn step4(k: u32) {'];
  if (!s.transA) for (const i of range(tm)) st.push(`  let a${i} = a_v(r${i}, k);`);
  else if (!aGroups) {
    for (const i of range(tm))
      st.push(
        `  let a${i} = vec4<f32>(${range(4)
          .map((kk) => `a_s(r${i}, k + ${kk}u)`)
          .join(', ')});`,
      );
  } else {
    for (const g of range(tm / 4)) for (const kk of range(4)) st.push(`  let ta${g}_${kk} = a_v(k + ${kk}u, va${g});`);
    for (const i of range(tm)) {
      const g = Math.floor(i / 4);
      const l = LANE[i % 4];
      st.push(
        `  let a${i} = vec4<f32>(${range(4)
          .map((kk) => `ta${g}_${kk}.${l}`)
          .join(', ')});`,
      );
    }
  }
  if (!s.transB) {
    for (const kk of range(4)) for (const g of range(tn4)) st.push(`  let b${kk}_${g} = b_v(k + ${kk}u, vb${g});`);
  } else {
    for (const j of range(tn)) st.push(`  let q${j} = b_v(c${j}, k);`);
    for (const kk of range(4)) {
      for (const g of range(tn4)) {
        st.push(
          `  let b${kk}_${g} = vec4<f32>(${range(4)
            .map((l) => `q${4 * g + l}.${LANE[kk]}`)
            .join(', ')});`,
        );
      }
    }
  }
  for (const kk of range(4)) {
    for (const i of range(tm))
      for (const g of range(tn4)) st.push(`  ${acc(i, g)} += a${i}.${LANE[kk]} * b${kk}_${g};`);
  }
  st.push('}');
  L.push(...st);

  // step1 / seg2: one depth with scalar loads (seg2: the LoRA rank); out_drop: the output dropout
  // mask on the block (holding segment 2 alone; run when P.outDrop says so); store: alpha, bias,
  // accumulate, bounds. Measured on lavapipe against loops that compile faster: a store as one
  // flat loop compiled in 40% less time but ran nn GEMMs 6% slower, and out_drop as a loop over a
  // local mask array slowed the whole kernel by 10% even when not run; so these stay as they are.
  const one = (name: string, aFn: string, bFn: string) => {
    const f = [`fn ${name}(k: u32) {`];
    for (const i of range(tm)) f.push(`  let s${i} = ${aFn}(r${i}, k);`);
    for (const g of range(tn4)) {
      const cols = range(4).map((l) => `${bFn}(k, c${4 * g + l})`);
      f.push(`  let u${g} = vec4<f32>(${cols.join(', ')});`);
    }
    for (const i of range(tm)) for (const g of range(tn4)) f.push(`  ${acc(i, g)} += s${i} * u${g};`);
    f.push('}');
    return f;
  };
  // step1 only where a depth range can end off a multiple of 4 (a K chunk of such a length):
  // on lavapipe it is about a third of the shader's compile time, and never runs otherwise.
  L.push(...(s.kTail ? one('step1', 'a_s', 'b_s') : ['fn step1(k: u32) {}']));
  L.push(...(s.seg2 ? one('seg2', 'a2', 'b2') : ['fn seg2(k: u32) {}']));
  const od = ['fn out_drop() {'];
  for (const i of range(s.seg2 ? tm : 0)) {
    for (const g of range(tn4)) {
      const m = range(4).map((l) => `dropout_mul(p.seedOut, p.thrOut, p.scaleOut, mb + ${i}u, nb + ${4 * g + l}u)`);
      od.push(`  ${acc(i, g)} *= vec4<f32>(${m.join(', ')});`);
    }
  }
  L.push(...od, '}');
  L.push(
    'fn store(z: u32) {',
    '  var blk = acc;',
    '  let rows = min(TM, p.mEnd - mb);',
    '  let cols = min(TN, p.nEnd - nb);',
    '  for (var i = 0u; i < rows; i++) {',
    '    for (var j = 0u; j < cols; j++) {',
    `      var v = blk[i * ${tn4}u + (j >> 2u)][j & 3u] * p.alpha;`,
    '      if (HAS_BIAS && p.useBias != 0u) { v += bias_at(nb + j); }',
    '      let ci = (mb + i) * p.ldc + nb + j + p.cAdj + z * p.cStrideZ;',
    '      if (p.accumulate != 0u) { v += C[ci]; }',
    '      C[ci] = v;',
    '    }',
    '  }',
    '}',
  );
  return L;
}
