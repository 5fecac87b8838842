#!/usr/bin/env node
// Makes .venv-peft (Python with CPU torch, transformers, peft, safetensors) for `npm run test:peft`,
// the interop check against Hugging Face's own PEFT. Skipped when it already imports them, or when
// TABTUNE_PEFT_PYTHON names a Python that has them. pip uses your pip configuration (index, proxy,
// local wheel folders); torch's CPU wheel is asked for so no CUDA stack is pulled in.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const VENV = join(ROOT, '.venv-peft');
const PY = process.env.TABTUNE_PEFT_PYTHON ?? join(VENV, 'bin', 'python');
const PROBE =
  'import torch, transformers, peft, safetensors; print(torch.__version__, transformers.__version__, peft.__version__)';

function say(msg) {
  console.log(`[tabtune] ${msg}`);
}

function probe() {
  if (!existsSync(PY)) return null;
  const r = spawnSync(PY, ['-c', PROBE], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

let have = probe();
if (!have && !process.env.TABTUNE_PEFT_PYTHON) {
  const python = ['python3', 'python'].find((p) => spawnSync(p, ['--version']).status === 0);
  if (!python) {
    console.error('[tabtune] test:peft needs Python 3.10+ with venv (Debian: apt-get install python3 python3-venv).');
    process.exit(1);
  }
  if (!existsSync(PY)) {
    say(`creating ${VENV}`);
    const v = spawnSync(python, ['-m', 'venv', VENV], { stdio: 'inherit' });
    if (v.status !== 0) {
      console.error('[tabtune] python -m venv failed (Debian: apt-get install python3-venv).');
      process.exit(1);
    }
  }
  const pip = join(VENV, 'bin', 'pip');
  const steps = [
    // The CPU build first: the default torch wheel depends on the CUDA libraries (gigabytes).
    ['install', '--quiet', 'torch', '--extra-index-url', 'https://download.pytorch.org/whl/cpu'],
    ['install', '--quiet', 'transformers', 'peft', 'safetensors', 'numpy'],
  ];
  for (const args of steps) {
    say(`pip ${args.join(' ')}`);
    const r = spawnSync(pip, args, { stdio: 'inherit' });
    if (r.status !== 0) {
      console.error(
        `[tabtune] pip ${args.join(' ')} failed. Install torch (CPU), transformers and peft into ${VENV} by hand, ` +
          'or set TABTUNE_PEFT_PYTHON to a Python that has them.',
      );
      process.exit(1);
    }
  }
  have = probe();
}
if (!have) {
  console.error(`[tabtune] ${PY} cannot import torch, transformers, peft and safetensors.`);
  process.exit(1);
}
say(`Python PEFT check with torch / transformers / peft ${have}`);
