import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));
const port = Number(process.env.PORT) || 5173;

// The app is index.html -> src/ui/main.tsx. WGSL kernels live in shaders/ at the repository root
// and are imported with `?raw`; fs.allow names the root so they are always served.
export default defineConfig({
  root,
  plugins: [react()],
  server: {
    host: '127.0.0.1',
    port,
    fs: { allow: [root] },
    // Never watch the Python interop venv (torch alone is tens of thousands of files: it exhausts
    // the machine's inotify watches) or what the tests and benches write.
    watch: { ignored: ['**/.venv-peft/**', '**/test-artifacts/**', '**/.tmp/**', '**/dist/**'] },
  },
  preview: { host: '127.0.0.1', port },
  build: { target: 'es2022' },
  worker: { format: 'es' },
  optimizeDeps: {
    // Pre-bundle the CommonJS entry points up front so the first page load never triggers a
    // "new dependencies optimized, reloading" round.
    include: ['react', 'react/jsx-runtime', 'react/jsx-dev-runtime', 'react-dom/client'],
    // The pages to scan for dependencies. By default Vite crawls every .html under the root,
    // which includes a Python venv linked into it for `npm run test:peft` (.venv-peft: torch's
    // thousands of files), and the first page load then takes minutes.
    entries: ['index.html', 'test/browser/kernel.html'],
  },
});
