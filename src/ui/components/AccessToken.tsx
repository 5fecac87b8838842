/**
 * The Hugging Face access token for gated and private models (Model view): entered once, kept in
 * this browser, sent only to huggingface.co, removable. The page never shows it again.
 */
import { useState } from 'react';
import { useController } from '../hooks';

export function AccessToken() {
  const c = useController();
  const [kept, setKept] = useState(() => c.hasHubToken());
  const [token, setToken] = useState('');
  const [problem, setProblem] = useState<string | null>(null);
  return (
    <details className="advanced" data-testid="access-token" open={kept || undefined}>
      <summary>Access token for gated and private models</summary>
      {kept ? (
        <div className="inline-form">
          <p className="hint" id="token-state">
            A token is kept in this browser and sent only to huggingface.co.
          </p>
          <button
            type="button"
            className="secondary danger"
            onClick={() => {
              c.setHubToken(null);
              setKept(false);
            }}
          >
            Remove token
          </button>
        </div>
      ) : (
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            const p = c.setHubToken(token);
            setProblem(p);
            if (!p) {
              setToken('');
              setKept(true);
            }
          }}
        >
          <label htmlFor="hf-token">Access token</label>
          <input
            id="hf-token"
            type="password"
            autoComplete="off"
            spellCheck={false}
            placeholder="hf_…"
            value={token}
            aria-invalid={problem ? true : undefined}
            aria-describedby="token-hint"
            onChange={(e) => setToken(e.target.value)}
          />
          <button type="submit" className="secondary" disabled={!token.trim()}>
            Save token
          </button>
        </form>
      )}
      <p className="hint" id="token-hint">
        {problem ??
          'For Llama, Gemma and other gated models: accept the license on the model’s page on huggingface.co, then paste a read token (huggingface.co → Settings → Access Tokens). It stays in this browser and goes only to huggingface.co.'}
      </p>
    </details>
  );
}
