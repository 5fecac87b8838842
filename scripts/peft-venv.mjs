#!/usr/bin/env node
// Makes .venv-peft, the Python of the interop tests (test/python, run by `npm test` after the
// vitest suite and alone by `npm run test:peft`): CPU torch, transformers, peft, trl, accelerate,
// datasets and safetensors at the versions src/recipe/docs.ts's TESTED_VERSIONS names (the recipe's
// requirements.txt pins the same), plus numpy.
//
// Fast and silent when .venv-peft already has those versions. TABTUNE_PEFT_PYTHON names another
// Python to use as it is (checked, never installed into).
//
// pip runs with your pip configuration. When that configuration names a package index (index-url or
// extra-index-url, e.g. a local mirror), the first one is passed as --index-url, so pip does not
// also try the public index it may not reach (slow retries), and torch comes from what the
// configuration provides; with no index configured, the public index and PyTorch's CPU index (so no
// CUDA stack is pulled in) are used. As root on Debian, a missing python3-venv is installed with apt.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tsImport } from 'tsx/esm/api';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const VENV = join(ROOT, '.venv-peft');
const PY = process.env.TABTUNE_PEFT_PYTHON ?? join(VENV, 'bin', 'python');
const { TESTED_VERSIONS } = await tsImport('../src/recipe/docs.ts', import.meta.url);
const PINS = Object.entries(TESTED_VERSIONS);
const TORCH_CPU_INDEX = 'https://download.pytorch.org/whl/cpu';

function say(msg) {
  console.log(`[tabtune] ${msg}`);
}

function fail(msg) {
  console.error(`[tabtune] ${msg}`);
  process.exit(1);
}

/** The installed versions of the pinned packages (null when one is missing), or null without a Python. */
function installed() {
  if (!existsSync(PY)) return null;
  // Distribution metadata, not imports: importing trl and datasets takes seconds.
  const code =
    'import json, sys\n' +
    'from importlib.metadata import version, PackageNotFoundError\n' +
    'def v(n):\n' +
    '    try: return version(n).split("+")[0]\n' +
    '    except PackageNotFoundError: return None\n' +
    'print(json.dumps({n: v(n) for n in sys.argv[1:] + ["numpy"]}))';
  const r = spawnSync(PY, ['-c', code, ...PINS.map(([n]) => n)], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

/** The pins the Python lacks, as "name==version (has X)". */
function missing(have) {
  if (!have) return [...PINS.map(([n, v]) => `${n}==${v}`), 'numpy'];
  const lack = PINS.filter(([n, v]) => have[n] !== v).map(([n, v]) => `${n}==${v} (has ${have[n] ?? 'none'})`);
  return have.numpy ? lack : [...lack, 'numpy'];
}

/** Index URLs the pip configuration names (index-url first, then extra-index-url), in order. */
function configuredIndexes(pip) {
  const r = spawnSync(pip, ['config', 'list'], { encoding: 'utf8' });
  if (r.status !== 0) return [];
  const main = [];
  const extra = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^[^=]*\.(index-url|extra-index-url)='(.*)'$/.exec(line.trim());
    if (m) (m[1] === 'index-url' ? main : extra).push(...m[2].split(/\s+/).filter(Boolean));
  }
  return [...main, ...extra];
}

function makeVenv() {
  const python = ['python3', 'python'].find((p) => spawnSync(p, ['--version']).status === 0);
  if (!python) fail('the interop tests need Python 3.10+ with venv (Debian: apt-get install python3 python3-venv).');
  say(`creating ${VENV}`);
  let v = spawnSync(python, ['-m', 'venv', VENV], { stdio: 'inherit' });
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (v.status !== 0 && root && existsSync('/etc/debian_version')) {
    say('python -m venv failed: installing python3-venv with apt-get');
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
    spawnSync('apt-get', ['install', '-y', '-qq', 'python3-venv'], { stdio: 'inherit' });
    v = spawnSync(python, ['-m', 'venv', '--clear', VENV], { stdio: 'inherit' });
  }
  if (v.status !== 0) fail('python -m venv failed (Debian: apt-get install python3-venv).');
}

let have = installed();
let lack = missing(have);
if (lack.length && !process.env.TABTUNE_PEFT_PYTHON) {
  if (!existsSync(PY)) makeVenv();
  const pip = join(VENV, 'bin', 'pip');
  const indexes = configuredIndexes(pip);
  const where = indexes.length ? ['--index-url', indexes[0]] : ['--extra-index-url', TORCH_CPU_INDEX];
  const args = ['install', '--progress-bar', 'off', ...where, ...PINS.map(([n, v]) => `${n}==${v}`), 'numpy'];
  say(`installing the interop tests' Python packages (once): pip ${args.join(' ')}`);
  const t0 = Date.now();
  const r = spawnSync(pip, args, { stdio: 'inherit' });
  if (r.status !== 0) {
    fail(
      `pip ${args.join(' ')} failed. Install ${PINS.map(([n, v]) => `${n}==${v}`).join(' ')} (CPU torch) into ` +
        `${VENV} by hand, or set TABTUNE_PEFT_PYTHON to a Python that has them.`,
    );
  }
  say(`installed in ${Math.round((Date.now() - t0) / 1000)} s`);
  have = installed();
  lack = missing(have);
}
if (lack.length) fail(`${PY} lacks ${lack.join(', ')} (the versions src/recipe/docs.ts's TESTED_VERSIONS names).`);
say(`Python interop tests with ${PINS.map(([n]) => `${n} ${have[n]}`).join(', ')}`);
