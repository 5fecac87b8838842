/**
 * Entry of test/browser/kernel.html: gets a device through the app's own runtime
 * (src/gpu/browser.ts -> src/gpu/context.ts), runs the engine self-test (runtime recorder, matmul
 * with f32/bf16/f16 weights, fused LoRA linear forward and backward, all on odd shapes against the
 * float64 references) and publishes everything on `window.__tabtune` for the test to assert.
 */
import { createBrowserGpu } from '../../src/gpu/browser';
import { type SelfTestReport, describeAdapter, runSelfTest } from '../../src/selftest';

export interface KernelPageResult {
  done: boolean;
  /** Set when no device could be had or the run threw. */
  error?: string;
  secureContext: boolean;
  hasNavigatorGpu: boolean;
  adapterLine?: string;
  adapter?: { vendor: string; architecture: string; device: string; description: string };
  features?: { f16: boolean; subgroups: boolean; timestampQuery: boolean };
  report?: SelfTestReport;
}

declare global {
  interface Window {
    __tabtune?: KernelPageResult;
  }
}

const statusEl = document.getElementById('status')!;
const outEl = document.getElementById('out')!;

function line(text: string, cls?: string): void {
  const span = document.createElement('span');
  if (cls) span.className = cls;
  span.textContent = `${text}\n`;
  outEl.append(span);
}

async function run(): Promise<KernelPageResult> {
  const result: KernelPageResult = {
    done: false,
    secureContext: window.isSecureContext,
    hasNavigatorGpu: 'gpu' in navigator && !!navigator.gpu,
  };
  window.__tabtune = result;
  const gpu = await createBrowserGpu();
  try {
    result.adapterLine = describeAdapter(gpu);
    result.adapter = {
      vendor: gpu.info.vendor,
      architecture: gpu.info.architecture,
      device: gpu.info.device,
      description: gpu.info.description,
    };
    result.features = { ...gpu.features };
    line(result.adapterLine);
    statusEl.textContent = 'running the self-test…';
    result.report = await runSelfTest(gpu, {
      onCheck: (c) =>
        line(
          `${c.ok ? 'ok  ' : 'FAIL'} ${c.name}  max abs err ${c.maxAbsErr.toExponential(2)}  ${c.ms.toFixed(0)} ms` +
            (c.error ? `\n     ${c.error}` : ''),
          c.ok ? 'ok' : 'fail',
        ),
    });
    statusEl.textContent = result.report.ok ? 'all checks passed' : 'some checks FAILED';
    return result;
  } finally {
    gpu.destroy();
  }
}

run()
  .then((r) => {
    r.done = true;
  })
  .catch((e: unknown) => {
    const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    window.__tabtune = {
      ...(window.__tabtune ?? { secureContext: window.isSecureContext, hasNavigatorGpu: !!navigator.gpu }),
      done: true,
      error: msg,
    };
    statusEl.textContent = 'error';
    line(msg, 'fail');
  });
