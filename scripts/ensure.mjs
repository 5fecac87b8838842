#!/usr/bin/env node
// Brings a fresh clone up to the point where `npm start`, `npm test` or `npm run bench` can run.
// Uses Node builtins only: it runs before node_modules exists.
//
//   node scripts/ensure.mjs app     npm dependencies
//   node scripts/ensure.mjs test    npm dependencies + system packages for the GPU tests
//   node scripts/ensure.mjs bench   same as test
//
// Fast and silent when everything is already there (no network, no apt-get update).

import { spawnSync } from 'node:child_process';
import { existsSync, statSync, utimesSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const LAVAPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.json';
const CHROMIUM = process.env.TABTUNE_CHROMIUM || '/usr/bin/chromium';
const MIN_MESA = 25;

const mode = process.argv[2] ?? 'app';
if (!['app', 'test', 'bench'].includes(mode)) {
  console.error(`ensure: unknown mode "${mode}" (expected app, test or bench)`);
  process.exit(2);
}

function log(msg) {
  console.log(`[tabtune] ${msg}`);
}

function fail(msg) {
  console.error(`[tabtune] ${msg}`);
  process.exit(1);
}

// ---------------------------------------------------------------- Node itself

{
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 20 || (major === 20 && minor < 6)) {
    fail(`Node ${process.versions.node} is too old: Tabtune needs Node >= 20.6 (module.register).`);
  }
}

// ---------------------------------------------------------------- npm dependencies

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

function npm(args) {
  // Inside `npm run`, npm tells us which npm is running; reuse it rather than whatever is on PATH.
  const execPath = process.env.npm_execpath;
  const [cmd, argv] =
    execPath && /\.(c|m)?js$/.test(execPath) ? [process.execPath, [execPath, ...args]] : ['npm', args];
  log(`npm ${args.join(' ')}`);
  const r = spawnSync(cmd, argv, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], env: process.env });
  if (r.error) fail(`could not run npm: ${r.error.message}`);
  if (r.status !== 0) fail(`npm ${args[0]} failed (exit ${r.status}).`);
}

function ensureNodeModules() {
  const lock = join(ROOT, 'package-lock.json');
  const hidden = join(ROOT, 'node_modules', '.package-lock.json');
  const haveLock = existsSync(lock);
  const haveModules = existsSync(join(ROOT, 'node_modules'));
  let reason = null;
  if (!haveModules) reason = 'node_modules is missing';
  else if (!existsSync(hidden)) reason = 'node_modules was not installed by npm';
  else if (haveLock && mtime(lock) > mtime(hidden)) reason = 'package-lock.json changed since the last install';
  if (!reason) return;
  log(`${reason}: installing dependencies`);
  npm(haveLock ? ['ci', '--no-audit', '--no-fund'] : ['install', '--no-audit', '--no-fund']);
  // `npm install` may write package-lock.json after its hidden lockfile; keep the hidden one newer
  // so the next run does not reinstall.
  if (existsSync(hidden)) {
    const now = new Date();
    utimesSync(hidden, now, now);
  }
}

// ---------------------------------------------------------------- system packages

function dpkgVersion(pkg) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** Why the Vulkan driver for Node WebGPU is not usable, or null when it is. */
function vulkanProblem() {
  // A real GPU (TABTUNE_VK_ICD=system or a path) needs no lavapipe.
  if (process.env.TABTUNE_VK_ICD) return null;
  if (!existsSync(LAVAPIPE_ICD)) return `Mesa lavapipe Vulkan driver >= ${MIN_MESA} (missing ${LAVAPIPE_ICD})`;
  const v = dpkgVersion('mesa-vulkan-drivers');
  if (v === null) return null; // not a dpkg system: trust the ICD file that is there
  const major = Number(v.replace(/^\d+:/, '').split('.')[0]);
  if (!(major >= MIN_MESA)) return `Mesa lavapipe Vulkan driver >= ${MIN_MESA} (installed: mesa-vulkan-drivers ${v})`;
  return null;
}

function chromiumProblem() {
  return existsSync(CHROMIUM) ? null : `Chromium at ${CHROMIUM}`;
}

function isDebian() {
  return existsSync('/etc/debian_version') && existsSync('/usr/bin/apt-get');
}

function ensureSystem() {
  const missing = [vulkanProblem(), chromiumProblem()].filter(Boolean);
  if (missing.length === 0) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (isRoot && isDebian()) {
    log(`missing system packages: ${missing.join('; ')}. Running scripts/setup-system.sh`);
    const r = spawnSync('bash', [join(ROOT, 'scripts', 'setup-system.sh')], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (r.status !== 0) fail(`scripts/setup-system.sh failed (exit ${r.status}).`);
    const still = [vulkanProblem(), chromiumProblem()].filter(Boolean);
    if (still.length) fail(`still missing after setup: ${still.join('; ')}`);
    return;
  }
  const lines = [
    `the GPU tests need system packages that are not installed:`,
    ...missing.map((m) => `  - ${m}`),
    ``,
    `On Debian 12 (bookworm), as root:`,
    `  bash scripts/setup-system.sh`,
    `which enables bookworm-backports and runs`,
    `  apt-get install -t bookworm-backports mesa-vulkan-drivers`,
    `  apt-get install chromium`,
    `Elsewhere: install Mesa's lavapipe (Vulkan) >= ${MIN_MESA} and Chromium; point TABTUNE_CHROMIUM at the`,
    `Chromium binary, or set TABTUNE_VK_ICD=system to use a real GPU's Vulkan driver.`,
  ];
  fail(lines.join('\n'));
}

ensureNodeModules();
if (mode === 'test' || mode === 'bench') ensureSystem();
