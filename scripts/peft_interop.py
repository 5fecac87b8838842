#!/usr/bin/env python3
"""Hugging Face's side of the PEFT interop check (test/python/peft-interop.py-test.ts drives it).

  peft_interop.py eval --model DIR [--adapter DIR] --data FILE.jsonl
      Loads the model with transformers (float32) and, with --adapter, the adapter with
      peft.PeftModel.from_pretrained, then prints {"loss": ..., "tokens": ...}: the mean next-token
      cross-entropy over every token of every {"text"} record, each encoded with the tokenizer's
      special tokens and followed by its EOS token unless it already ends with one (Tabtune's text
      format), token-weighted across records.

  peft_interop.py make-adapter --model DIR --out DIR --r R --alpha A --targets a,b [--rslora] [--seed S]
      Writes a PEFT LoRA adapter with save_pretrained. init_lora_weights=False leaves A and B at
      their random layer initialisation, so the adapter changes the outputs (B = 0 would not).

The last stdout line is JSON.
"""
import argparse
import json
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def load(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    return model


def cmd_eval(a):
    tok = AutoTokenizer.from_pretrained(a.model)
    model = load(a.model)
    if a.adapter:
        model = PeftModel.from_pretrained(model, a.adapter)
        model.eval()
    eos = tok.eos_token_id
    total = 0.0
    count = 0
    with open(a.data, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            ids = tok(json.loads(line)["text"], add_special_tokens=True)["input_ids"]
            if eos is not None and (not ids or ids[-1] != eos):
                ids = ids + [eos]
            if len(ids) < 2:
                continue
            x = torch.tensor([ids])
            with torch.no_grad():
                logits = model(input_ids=x).logits[0, :-1].double()
            nll = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum")
            total += float(nll)
            count += len(ids) - 1
    print(json.dumps({"loss": total / count, "tokens": count}))


def cmd_make_adapter(a):
    torch.manual_seed(a.seed)
    model = load(a.model)
    is_gpt2 = model.config.model_type == "gpt2"
    cfg = LoraConfig(
        r=a.r,
        lora_alpha=a.alpha,
        target_modules=a.targets.split(","),
        lora_dropout=0.0,
        use_rslora=a.rslora,
        fan_in_fan_out=is_gpt2,
        bias="none",
        task_type="CAUSAL_LM",
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, cfg)
    peft_model.save_pretrained(a.out)
    print(json.dumps({"saved": a.out}))


def main(argv):
    p = argparse.ArgumentParser(prog="peft_interop.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval")
    e.add_argument("--model", required=True)
    e.add_argument("--adapter")
    e.add_argument("--data", required=True)
    m = sub.add_parser("make-adapter")
    m.add_argument("--model", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--r", type=int, required=True)
    m.add_argument("--alpha", type=float, required=True)
    m.add_argument("--targets", required=True)
    m.add_argument("--rslora", action="store_true")
    m.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.cmd == "eval":
        cmd_eval(a)
    else:
        cmd_make_adapter(a)


if __name__ == "__main__":
    main(sys.argv[1:])
