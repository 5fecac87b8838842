/** `tabtune selftest`: every kernel against the float64 reference on this machine's WebGPU. */

export async function selftest(): Promise<number> {
  const [{ createNodeGpu }, { runSelfTest }] = await Promise.all([import('../gpu/node'), import('../selftest')]);
  const gpu = await createNodeGpu();
  try {
    const report = await runSelfTest(gpu);
    let ok = true;
    for (const c of report.checks) {
      ok &&= c.ok;
      process.stdout.write(
        `${c.ok ? 'ok  ' : 'FAIL'} ${c.name} (max abs err ${c.maxAbsErr.toExponential(2)}, ${c.ms.toFixed(1)} ms)\n`,
      );
    }
    return ok ? 0 : 1;
  } finally {
    gpu.destroy();
  }
}
