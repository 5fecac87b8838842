// Hostile chat templates end in seconds with a TokenizerError naming the template, instead of hanging
// the CLI or the worker (range(1000000000), nested loops, strings doubled in a loop).
import { describe, expect, it } from 'vitest';
import { createTokenizer } from '../../src/model/tokenizer';
import { makeTinyModel } from '../fixtures/tiny-model';

async function withTemplate(chat_template: string) {
  const m = makeTinyModel({ modelType: 'llama' });
  return createTokenizer(m.tokenizerJson, { ...m.tokenizerConfig, chat_template });
}

const msgs = [{ role: 'user', content: 'hi' }];

describe('chat template budgets', () => {
  it.each([
    ['range(1000000000)', '{% for i in range(1000000000) %}x{% endfor %}', /asked for range\(\) of 1000000000 numbers/],
    [
      'nested loops',
      '{% for i in range(2000) %}{% for j in range(2000) %}{% endfor %}{% endfor %}',
      /took more than \d+ steps|ran for more than 5 s/,
    ],
    [
      'a string doubled in a loop',
      "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
      /made a string of \d+ characters \(at most \d+ for these messages\)|longer than JavaScript allows/,
    ],
    ['a huge indent', "{{ 'a\\nb' | indent(1000000000) }}", /made a string|longer than JavaScript allows/],
  ])('%s is stopped with an error naming the template', async (_what, template, msg) => {
    const tok = await withTemplate(template);
    let err: Error | null = null;
    try {
      tok.applyChatTemplate(msgs);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(
      /^The chat template \(chat_template in tokenizer_config\.json, or chat_template\.jinja\) /,
    );
    expect(err?.message).toMatch(msg);
  });

  it('a template of megabytes is refused before parsing', async () => {
    const tok = await withTemplate(`{{ messages[0].content }}${' '.repeat(300_000)}`);
    expect(() => tok.applyChatTemplate(msgs)).toThrow(/is 300025 characters long; chat templates are a few kilobytes/);
  });

  it('ordinary templates, ranges and long conversations still render', async () => {
    const tok = await withTemplate(
      '{% for m in messages %}<{{ m.role }}>{{ m.content }}{% for i in range(3) %}.{% endfor %}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}',
    );
    const long = Array.from({ length: 2000 }, (_, i) => ({
      role: i % 2 ? 'assistant' : 'user',
      content: `turn ${i} ${'w'.repeat(200)}`,
    }));
    const out = tok.applyChatTemplate(long, { addGenerationPrompt: true });
    expect(out.startsWith('<user>turn 0')).toBe(true);
    expect(out.endsWith('<assistant>')).toBe(true);
    expect(tok.applyChatTemplate(msgs)).toBe('<user>hi...');
  });
});
