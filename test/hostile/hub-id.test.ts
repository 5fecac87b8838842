// Hub ids and revisions with "." or ".." would make the download URL resolve to another path
// (".../../config.json"); they are refused, with the Hub's own rules for the rest.
import { describe, expect, it } from 'vitest';
import { UrlSource, hubIdProblem } from '../../src/model/source';
import { isHubId } from '../../src/ui/catalog';

describe('Hub ids', () => {
  it.each([
    '../x',
    'x/..',
    './x',
    'x/.',
    '..',
    '.',
    'a/b/c',
    'a..b/c',
    'a/b--c',
    '-a/b',
    'a/b.',
    'a/' + 'b'.repeat(99),
  ])('%s is refused by the app and the loader', (id) => {
    expect(isHubId(id)).toBe(false);
    expect(hubIdProblem(id)).toMatch(/./);
    expect(() => UrlSource.hub(id)).toThrow(/is not a Hugging Face repo id/);
  });

  it.each(['HuggingFaceTB/SmolLM2-135M', 'Qwen/Qwen2.5-0.5B-Instruct', 'openai-community/gpt2', 'a_b/c.d'])(
    '%s is accepted',
    (id) => {
      expect(isHubId(id)).toBe(true);
      expect(UrlSource.hub(id).urlOf('config.json')).toBe(`https://huggingface.co/${id}/resolve/main/config.json`);
    },
  );

  it('a bare name is a repo id for the loader (the Hub resolves gpt2), but the app asks for owner/name', () => {
    expect(UrlSource.hub('gpt2').baseUrl).toBe('https://huggingface.co/gpt2/resolve/main/');
    expect(isHubId('gpt2')).toBe(false);
  });

  it.each(['..', '.', 'refs/../main', '../x'])('revision %s is refused', (rev) => {
    expect(() => UrlSource.hub('org/model', rev)).toThrow(/is not a revision of org\/model/);
  });
});
