/**
 * The text files of a recipe folder (src/recipe/recipe.ts): requirements.txt pinned to the versions
 * the recipe is tested with (`npm run test:peft` checks the pins against the Python it runs), the
 * accelerate configs (one GPU, DDP, FSDP, DeepSpeed ZeRO-3), a SLURM script and the README.
 */

import type { DatasetFormat } from '../train/data/types';

/** The Python stack test/python/recipe.py-test.ts runs train.py with (and checks it is). */
export const TESTED_VERSIONS = {
  torch: '2.13.0',
  transformers: '5.18.0',
  peft: '0.21.0',
  trl: '1.13.0',
  accelerate: '1.15.0',
  datasets: '5.0.1',
  safetensors: '0.8.0',
} as const;

export interface RecipeDocsInput {
  model: string;
  command?: string;
  quantize: boolean;
  /** The base model is a bitsandbytes 4-bit checkpoint (no bnb_4bit.json: it carries its own config). */
  quantizeStored: boolean;
  trainExamples: number;
  valExamples: number;
  countedTokens: number;
  format: DatasetFormat;
  source: string;
  steps: number;
  epochs: number;
  batch: number;
  gradAccum: number;
  initFrom: boolean;
  /** LoftQ init: train.py also saves the quantized backbone (OUT/loftq-base). */
  loftq?: boolean;
}

export function requirementsTxt(d: RecipeDocsInput): string {
  const pins = Object.entries(TESTED_VERSIONS).map(([name, v]) => `${name}==${v}`);
  const lines = [
    '# The versions this recipe was tested with (CPU torch; on GPUs install the CUDA build of the same',
    '# torch release first, e.g. from the PyTorch index for your CUDA version).',
    ...pins,
  ];
  if (d.loftq) {
    lines.push(
      "# LoftQ init: PEFT's loftq_init quantizes with bitsandbytes on a CUDA GPU and checks for scipy.",
      'bitsandbytes>=0.45',
      'scipy',
    );
  }
  if (d.quantize) {
    lines.push(
      '# --quantize nf4: bitsandbytes (CUDA GPUs). Not part of the tested set: it needs a CUDA GPU.',
      'bitsandbytes>=0.45',
    );
  }
  lines.push('# For accelerate/deepspeed_zero3.yaml only (needs a CUDA toolkit to build): pip install deepspeed');
  return `${lines.join('\n')}\n`;
}

/** accelerate config files: the keys `accelerate config` writes, for one node of 8 GPUs (edit num_processes). */
export function acceleratorConfigs(): Record<string, string> {
  const common = (extra: string[], kind: string, processes: number) =>
    [
      'compute_environment: LOCAL_MACHINE',
      `distributed_type: ${kind}`,
      ...extra,
      'machine_rank: 0',
      'num_machines: 1',
      `num_processes: ${processes}`,
      // train.py --bf16 sets the precision (TrainingArguments.bf16); the launcher adds none of its own.
      "mixed_precision: 'no'",
      'rdzv_backend: static',
      'same_network: true',
      'use_cpu: false',
      '',
    ].join('\n');
  return {
    'single_gpu.yaml': common(["gpu_ids: '0'"], "'NO'", 1),
    'multi_gpu.yaml': common(['gpu_ids: all'], 'MULTI_GPU', 8),
    'fsdp.yaml': common(
      [
        'fsdp_config:',
        '  fsdp_version: 2',
        '  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP',
        '  fsdp_cpu_ram_efficient_loading: true',
        '  fsdp_offload_params: false',
        '  fsdp_reshard_after_forward: true',
        '  fsdp_state_dict_type: FULL_STATE_DICT',
      ],
      'FSDP',
      8,
    ),
    'deepspeed_zero3.yaml': common(
      [
        'deepspeed_config:',
        '  deepspeed_multinode_launcher: standard',
        '  offload_optimizer_device: none',
        '  offload_param_device: none',
        '  zero3_init_flag: true',
        '  zero3_save_16bit_model: true',
        '  zero_stage: 3',
      ],
      'DEEPSPEED',
      8,
    ),
  };
}

export function slurmScript(d: RecipeDocsInput): string {
  return `#!/bin/bash
# SLURM: one task per node; each task starts accelerate, which starts one process per GPU.
# Submit from this folder: sbatch slurm.sbatch   (edit the resources and the environment first)
#SBATCH --job-name=tabtune-recipe
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail
cd "\${SLURM_SUBMIT_DIR:-.}"
# source .venv/bin/activate           # the environment made from requirements.txt

GPUS_PER_NODE=8
CONFIG=accelerate/${d.quantize ? 'multi_gpu.yaml' : 'fsdp.yaml'}   # or deepspeed_zero3.yaml / multi_gpu.yaml
MAIN_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)

srun accelerate launch --config_file "$CONFIG" \\
  --num_machines "$SLURM_NNODES" --num_processes $((SLURM_NNODES * GPUS_PER_NODE)) \\
  --machine_rank "$SLURM_NODEID" --main_process_ip "$MAIN_HOST" --main_process_port 29500 \\
  train.py --output_dir adapter --bf16
`;
}

const FORMAT_LOSS: Record<DatasetFormat, string> = {
  text: 'every token of each text and its EOS',
  alpaca: 'the response and its EOS (not the instruction prompt)',
  chat: "the assistant turns and each turn's end-of-turn token (not the system or user turns)",
};

export function recipeReadme(d: RecipeDocsInput): string {
  const length = d.steps > 0 ? `${d.steps} optimizer steps` : `${d.epochs} epoch${d.epochs === 1 ? '' : 's'}`;
  const made = d.command ? `\n\nMade with:\n\n\`\`\`sh\n${d.command}\n\`\`\`` : '';
  return `# Tabtune run: LoRA fine-tuning with transformers + PEFT + TRL

This folder runs a Tabtune training run with Hugging Face's own stack, on a CPU, one GPU or many
(one node or several). Base model: \`${d.model}\`. Data: \`${d.source}\` (${d.format}),
${d.trainExamples} training and ${d.valExamples} validation examples, ${d.countedTokens} counted
training tokens; ${length}, batch ${d.batch} x accumulation ${d.gradAccum}.${made}

## Files

- \`train.py\`: the trainer (TRL's \`SFTTrainer\` with a PEFT adapter: LoRA or DoRA, or (IA)³, prompt or prefix
  tuning). Run \`python train.py --help\`.
- \`tabtune_run.json\`: every setting, under the names \`TrainingArguments\` and \`LoraConfig\` use.
- \`data/train.jsonl\`, \`data/validation.jsonl\`: the examples exactly as Tabtune made and split them:
  \`input_ids\` and \`completion_mask\` (1 where predicting the token counts in the loss: ${FORMAT_LOSS[d.format]}),
  with the source line and the decoded \`text\` for reading. train.py does not tokenize again.
${d.initFrom ? '- `init_adapter/`: the adapter the run starts from (`--init-from`).\n' : ''}${
    d.loftq
      ? "- LoftQ init (`lora.loftq_config`): PEFT's LoftQ quantizes the base to 4-bit NF4 as it makes the adapter (bitsandbytes, a CUDA GPU); " +
        'train.py saves that backbone as `OUTPUT_DIR/loftq-base/`, the base the adapter belongs on.\n'
      : ''
  }${
    !d.quantize
      ? ''
      : d.quantizeStored
        ? '- The base model is a bitsandbytes 4-bit NF4 checkpoint: transformers loads it in 4 bits as stored (QLoRA).\n'
        : '- `bnb_4bit.json`: the 4-bit NF4 quantization of the frozen weights (bitsandbytes, QLoRA).\n'
  }- \`requirements.txt\`: the versions this recipe is tested with.
- \`accelerate/\`: launcher configs: \`single_gpu.yaml\`, \`multi_gpu.yaml\` (DDP), \`fsdp.yaml\`,
  \`deepspeed_zero3.yaml\` (set \`num_processes\` to your GPU count).
- \`slurm.sbatch\`: the same on a SLURM cluster.

## Run

\`\`\`sh
python -m venv .venv && . .venv/bin/activate
pip install -r requirements.txt      # on GPUs: install the CUDA build of torch first

# one process (a GPU if there is one, else the CPU): the numerics of Tabtune (float32)
python train.py --output_dir adapter

# one GPU, bfloat16 (less memory, faster; the loss differs from Tabtune's by rounding)
accelerate launch --config_file accelerate/single_gpu.yaml train.py --output_dir adapter --bf16

# several GPUs of one node: DDP, or sharded weights with FSDP or DeepSpeed ZeRO-3
accelerate launch --config_file accelerate/multi_gpu.yaml train.py --output_dir adapter --bf16
accelerate launch --config_file accelerate/fsdp.yaml train.py --output_dir adapter --bf16
accelerate launch --config_file accelerate/deepspeed_zero3.yaml train.py --output_dir adapter --bf16

# SLURM
sbatch slurm.sbatch

# continue after an interruption (with checkpoints: save_steps in tabtune_run.json)
python train.py --output_dir adapter --resume_from_checkpoint
\`\`\`

With several processes the batch per process is divided so that a step still holds ${d.batch} x
${d.gradAccum} examples (\`--no_keep_global_batch\` keeps ${d.batch} per process instead). The base
model can be replaced with \`--model_name_or_path\` (a Hub id or a folder with the same tokenizer).

## The loss, and what matches Tabtune

The loss is Tabtune's: the mean next-token cross-entropy over every counted token of an optimizer
step, token-weighted across sequences, accumulated micro-batches and processes. train.py checks
that the labels SFTTrainer builds count exactly the tokens Tabtune counts (${d.countedTokens}).
The optimizer, learning-rate schedule, warmup, gradient clipping, batching, epochs and, with
\`shuffle: false\`, the record order are Tabtune's. Random draws (a fresh adapter's initial lora_A,
dropout masks, the shuffled order) come from torch, seeded with the same seed.
The last line printed is a JSON summary (steps, first and final training loss, validation loss).

## Bring the adapter back

\`--output_dir\` holds a PEFT adapter (\`adapter_config.json\`, \`adapter_model.safetensors\`). A PiSSA
or OLoRA run (which moves the base weights by the initial adapter) saves it converted to a plain LoRA of
twice the rank on the untouched base model, as PEFT's
\`save_pretrained(path_initial_model_for_weight_conversion=...)\` does:

\`\`\`sh
node bin/tabtune.mjs eval --model BASE_MODEL_DIR --adapter adapter --data DATA.jsonl --json
\`\`\`

or import the two files (or a zip of them) in the app's Adapters view to compare it with others.
`;
}
