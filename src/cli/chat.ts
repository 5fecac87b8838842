/**
 * `tabtune chat`: a conversation at the terminal with a model and (optionally) an adapter, through
 * the same Engine.chat as the app's Chat view. Each line read is a message (from a terminal or a
 * pipe); replies stream to stdout after the name of who wrote them. Commands:
 *   /system TEXT   set the system prompt (empty: none)     /adapter DIR   answer with that adapter
 *   /base          answer with the base model               /regen         write the last reply again
 *   /reset         start a new conversation                 /quit          leave (or Ctrl-D)
 * Ctrl-C stops a reply being written; at the prompt it leaves.
 */

import { stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { AdapterRef, ChatMessage, PromptMode } from '../engine/types';
import { type FlagSpec, type ParsedFlags, bool, parseFlags, str } from './args';
import { loadModelFrom, openEngine, preflightModel, withAdapterDir } from './common';
import { FROZEN_FLAGS, frozenFromFlags } from './frozen';
import { SAMPLING_FLAGS, samplingFromFlags } from './generate';
import { readAdapterForModel } from './loftq-guard';

const CHAT_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', required: true },
  adapter: { type: 'string' },
  'any-base': { type: 'bool' },
  system: { type: 'string' },
  /** Plain completion even when the model has a chat template. */
  completion: { type: 'bool' },
  ...SAMPLING_FLAGS,
  ...FROZEN_FLAGS,
};

const HELP =
  'Commands: /system TEXT, /adapter DIR, /base, /regen, /reset, /quit. Ctrl-C stops a reply; Ctrl-D leaves.\n';

interface Responder {
  ref: AdapterRef | null;
  label: string;
  dir?: string;
}

/**
 * `/adapter DIR` (or --adapter): a LoftQ adapter is checked to fit --model `modelDir` unless
 * --any-base. The files' modification times and sizes are the ref's version: the folder trained
 * again while the chat lasts is read afresh by the engine, not its kept copy.
 */
async function adapterFrom(f: ParsedFlags, modelDir: string, dir: string, flag: string): Promise<Responder> {
  const files = ['adapter_config.json', 'adapter_model.safetensors'].map((name) => join(resolve(dir), name));
  const stats = await Promise.all(files.map((file) => stat(file).catch(() => null)));
  const version = stats.map((s) => (s ? `${s.mtimeMs}:${s.size}` : '-')).join(',');
  const adapter = await readAdapterForModel(f, { command: 'chat', dir, flag, modelDir });
  return { ref: { key: resolve(dir), files: adapter, version }, label: basename(resolve(dir)), dir };
}

export async function chat(argv: string[]): Promise<number> {
  const f = parseFlags(argv, CHAT_FLAGS, 'chat');
  const model = await preflightModel(str(f, 'model')!);
  const frozen = frozenFromFlags(f, 'chat', model);
  const first = str(f, 'adapter');
  let who: Responder = first ? await adapterFrom(f, model.path, first, '--adapter') : { ref: null, label: 'base' };
  const engine = await openEngine();
  const out = process.stdout;
  const err = (line: string) => process.stderr.write(`tabtune: ${line}\n`);
  try {
    await loadModelFrom(engine, model.path, frozen);
    const info = engine.modelInfo();
    const mode: PromptMode = bool(f, 'completion') || !info.hasChatTemplate ? 'completion' : 'chat';
    const d = info.generationDefaults;
    const sampling = samplingFromFlags(f, { ...d, maxNewTokens: d.maxNewTokens ?? 256 });
    let system = str(f, 'system') ?? '';
    let turns: ChatMessage[] = [];
    let replies = 0;
    let generating = false;
    let failures = 0;

    const interactive = process.stdin.isTTY === true;
    const rl = createInterface({ input: process.stdin, output: interactive ? out : undefined, terminal: interactive });
    const ask = () => interactive && rl.prompt();
    rl.setPrompt('you> ');
    rl.on('SIGINT', () => (generating ? engine.stopGeneration() : rl.close()));
    if (interactive) {
      out.write(
        `${info.id}: ${mode === 'chat' ? 'chat template' : 'plain completion (no chat template)'}; ` +
          `temperature ${sampling.temperature}, max ${sampling.maxNewTokens} new tokens. ${HELP}`,
      );
    }

    const reply = async (): Promise<void> => {
      const messages: ChatMessage[] = system.trim() ? [{ role: 'system', content: system }, ...turns] : turns;
      out.write(`${who.label}> `);
      generating = true;
      try {
        const res = await withAdapterDir(who.dir, () =>
          engine.chat(
            { messages, mode, sampling: { ...sampling, seed: sampling.seed + replies, chat: mode === 'chat' } },
            who.ref,
            (delta) => out.write(delta),
          ),
        );
        replies++;
        out.write('\n');
        if (res.stopReason === 'stopped') err('reply stopped.');
        if (res.stopReason === 'context')
          err(`the model's context (${info.maxPositions} positions) is full: /reset to start again.`);
        turns.push({ role: 'assistant', content: res.text });
      } catch (e) {
        out.write('\n');
        failures++;
        err((e as Error).message);
        // The message that could not be answered is dropped, so the next one is not refused the same way.
        turns.pop();
      } finally {
        generating = false;
      }
    };

    ask();
    for await (const line of rl) {
      const [cmd, ...rest] = line.trim().split(/\s+/);
      const arg = line
        .trim()
        .slice((cmd ?? '').length)
        .trim();
      if (cmd === '/quit' || cmd === '/exit') break;
      else if (cmd === '/help') out.write(HELP);
      else if (cmd === '/reset') turns = [];
      else if (cmd === '/system') system = arg;
      else if (cmd === '/base') who = { ref: null, label: 'base' };
      else if (cmd === '/adapter') {
        if (!rest.length) err('/adapter needs a folder holding adapter_config.json and adapter_model.safetensors.');
        else {
          try {
            who = await adapterFrom(f, model.path, arg, '/adapter');
          } catch (e) {
            failures++;
            err((e as Error).message);
          }
        }
      } else if (cmd === '/regen') {
        while (turns.length && turns[turns.length - 1]!.role === 'assistant') turns.pop();
        if (turns.length) await reply();
        else err('there is no message to answer yet.');
      } else if (cmd?.startsWith('/') && cmd.length > 1) err(`unknown command ${cmd}. ${HELP.trim()}`);
      else if (line.trim()) {
        turns.push({ role: 'user', content: line });
        await reply();
      }
      ask();
    }
    rl.close();
    return failures > 0 ? 1 : 0;
  } finally {
    engine.dispose();
  }
}
