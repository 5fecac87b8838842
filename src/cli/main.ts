/**
 * The `tabtune` command line: train, evaluate and generate with LoRA adapters on WebGPU from Node,
 * through the same Engine the browser app runs in its worker.
 *
 *   node bin/tabtune.mjs train --model DIR --data FILE --out DIR [...]
 *   node bin/tabtune.mjs eval --model DIR [--adapter DIR] --data FILE [--json]
 *   node bin/tabtune.mjs generate --model DIR [--adapter DIR] --prompt TEXT
 *   node bin/tabtune.mjs chat --model DIR [--adapter DIR]     (a conversation, line by line)
 *   node bin/tabtune.mjs export-recipe --model DIR|HUB_ID --data FILE|hf:owner/name[:split] --out DIR [train's flags]
 *   node bin/tabtune.mjs push --adapter DIR --repo owner/name [--private]
 *   node bin/tabtune.mjs info | selftest | bench
 *
 * Exit codes: 0 success, 1 runtime failure (bad data, GPU error), 2 usage error.
 *
 * One file per command (train.ts, eval.ts, generate.ts, chat.ts, export-recipe.ts, info.ts, selftest.ts,
 * bench.ts and bench-profile.ts; the measurements they run live in src/bench); common.ts holds the checks of files
 * and folders they share, args.ts the flag parser.
 */

import { UsageError } from './args';
import { chat } from './chat';
import { evaluate } from './eval';
import { exportRecipe } from './export-recipe';
import { generate } from './generate';
import { info } from './info';
import { merge } from './merge';
import { push } from './push';
import { selftest } from './selftest';
import { train } from './train';

const USAGE = `tabtune: LoRA fine-tuning on WebGPU

  tabtune train --model DIR --data FILE --out DIR [--format text|alpaca|chat|auto]
     [--method lora|dora|ia3|prompt-tuning|prefix-tuning] [--init default|gaussian|pissa|olora|loftq]
     [--targets q_proj,v_proj|all-linear] [--r 8] [--alpha 16] [--dropout 0.05] [--rslora]
     [--feedforward-modules a,b (ia3)] [--num-virtual-tokens 20 (prompt/prefix)]
     [--prompt-init text|random] [--prompt-init-text TEXT] (prompt-tuning)
     [--prefix-projection] [--encoder-hidden-size E] (prefix-tuning: train through PEFT's MLP)
     [--loftq-iter 1] [--loftq-bits 4] (--init loftq: the base becomes its NF4 quantization Q;
     the adapter only fits Q, which is saved as OUT/loftq-base: use that as --model, 16-bit or
     --quantize nf4, with the adapter, and as the base in PEFT)
     [--init-from ADAPTER_DIR [--any-base]] [--optimizer adamw|sgd] [--lr 2e-4] [--weight-decay 0]
     [--steps N | --epochs E] [--batch B] [--grad-accum G] [--max-len N]
     [--scheduler constant|linear|cosine] [--warmup N] [--max-grad-norm 1.0 (0 = off)]
     [--no-shuffle] [--seed S] [--val-fraction 0] [--loss-every 1] [--eval-every N]
     [--checkpoint-every N] [--resume] [--activation-checkpointing] [--packing]
     [--quantize nf4|none] [--no-double-quant] [--json]
     --data takes a file or a Hugging Face dataset, hf:owner/name[:split] [--data-file PATH]
     (downloaded once into ~/.cache/tabtune; HF_TOKEN for gated/private sets);
     [--columns instruction=COL,output=COL[,input=COL] | messages=COL | text=COL] names the
     columns that hold the records (Parquet, or files whose fields are named otherwise)
  tabtune export-recipe --model DIR|owner/name --data FILE|hf:owner/name[:split] --out DIR [train's flags]
     the same run as a transformers + PEFT + TRL project (train.py, data, accelerate configs);
     --data, --data-file and --columns as for train
  tabtune eval --model DIR [--adapter DIR [--any-base]] --data FILE [--format ...] [--max-len N]
     [--quantize nf4|none] [--no-double-quant] [--json]
  tabtune generate --model DIR [--adapter DIR [--any-base]] --prompt TEXT [--chat]
     [--max-new-tokens N] [--temperature 0] [--top-k K] [--top-p P] [--repetition-penalty 1]
     [--seed S] [--quantize nf4|none] [--no-double-quant]
  tabtune chat --model DIR [--adapter DIR] [--any-base] [--system TEXT] [--completion]
     [generate's sampling flags]
     a conversation, one message per line (sampling defaults: the model's generation_config.json);
     /system TEXT, /adapter DIR, /base, /regen, /reset, /quit; Ctrl-C stops a reply
     (eval, generate, chat: a LoftQ adapter is checked to be given its backbone, loftq-base,
     unless --any-base)
  tabtune merge --model DIR --adapter DIR --out DIR [--dtype bf16|f16|f32] [--max-shard-size 50GB]
     [--any-base] the adapter folded into the model: a Hugging Face model folder (CPU only);
     a LoftQ adapter is checked to be given its backbone (loftq-base) unless --any-base
  tabtune push --adapter DIR --repo owner/name [--private] [--json]
     the adapter, a model card (settings, losses, loss plot) to a Hugging Face model repo
     (created if new; HF_TOKEN with write access, HF_ENDPOINT for another Hub)
  tabtune info        the WebGPU adapter in use
  tabtune selftest    run the kernels against the float64 reference
  tabtune bench       benchmarks (see README, Performance); subcommands: memory, data, methods,
     kernels, attention, tune, generate, lora-linear, profile
  tabtune bench profile [--config FILE] [--layers N] [--seq 64] [--batch 1] [--r 16]
     [--quantize nf4] [--checkpoint] [--tokens 4] [--no-tune] [--json]
     per-kernel GPU time (timestamp queries) of one training step and of decoded tokens, by
     kernel family: ms, % of the total, dispatches, GFLOP/s of the matmuls
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // `tabtune train --help` prints the usage (it is not an unknown flag); a value "--help" can be given as --prompt=--help.
  if (
    ['train', 'eval', 'generate', 'chat', 'export-recipe', 'merge', 'push'].includes(command ?? '') &&
    rest.some((a) => a === '--help' || a === '-h')
  ) {
    process.stdout.write(USAGE);
    return 0;
  }
  try {
    switch (command) {
      case 'train':
        return await train(rest);
      case 'eval':
        return await evaluate(rest);
      case 'export-recipe':
        return await exportRecipe(rest);
      case 'generate':
        return await generate(rest);
      case 'chat':
        return await chat(rest);
      case 'merge':
        return await merge(rest);
      case 'push':
        return await push(rest);
      case 'info':
        return await info();
      case 'selftest':
        return await selftest();
      case 'bench': {
        const { runBench } = await import('./bench');
        return await runBench(rest);
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(
          `unknown command "${command}". Commands: train, eval, generate, chat, export-recipe, merge, info, selftest, bench.`,
        );
    }
  } catch (e) {
    const err = e as Error;
    process.stderr.write(`tabtune: ${err.message}\n`);
    if (process.env.TABTUNE_DEBUG && err.stack) process.stderr.write(`${err.stack}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}
