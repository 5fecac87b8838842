#!/usr/bin/env python3
"""Hugging Face's side of the merge check (test/python/merge.py-test.ts drives it).

  peft_merge_check.py --model BASE_DIR --adapter ADAPTER_DIR --merged MERGED_DIR --data FILE.jsonl

Loads MERGED_DIR with AutoModelForCausalLM and AutoTokenizer (float32) as any user would, BASE_DIR
with the adapter through peft.PeftModel.from_pretrained, and PEFT's own merge_and_unload() of
that; prints the three losses on the {"text"} records (the mean next-token cross-entropy, each
record encoded with special tokens and followed by EOS, token-weighted) and the largest absolute
difference between the merged folder's weights and PEFT's merged state dict:
{"merged": ..., "peft": ..., "peft_merged": ..., "tokens": ..., "max_weight_diff": ..., "weight": ...}.
The last stdout line is JSON.
"""
import argparse
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


def load(path):
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    m.eval()
    return m


def loss(model, tok, data):
    eos = tok.eos_token_id
    total, count = 0.0, 0
    with open(data, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            ids = tok(json.loads(line)["text"], add_special_tokens=True)["input_ids"]
            if eos is not None and (not ids or ids[-1] != eos):
                ids = ids + [eos]
            if len(ids) < 2:
                continue
            x = torch.tensor([ids])
            with torch.no_grad():
                logits = model(input_ids=x).logits[0, :-1].double()
            total += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
            count += len(ids) - 1
    return total / count, count


def main(argv):
    p = argparse.ArgumentParser(prog="peft_merge_check.py")
    p.add_argument("--model", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--merged", required=True)
    p.add_argument("--data", required=True)
    a = p.parse_args(argv)

    tok = AutoTokenizer.from_pretrained(a.merged)
    merged = load(a.merged)
    merged_loss, tokens = loss(merged, tok, a.data)
    peft = PeftModel.from_pretrained(load(a.model), a.adapter)
    peft.eval()
    peft_loss, _ = loss(peft, tok, a.data)
    unloaded = peft.merge_and_unload()
    unloaded_loss, _ = loss(unloaded, tok, a.data)

    ours = merged.state_dict()
    worst, where = 0.0, ""
    for k, v in unloaded.state_dict().items():
        if k not in ours:
            raise SystemExit(f"the merged folder has no {k}")
        d = float((ours[k].double() - v.double()).abs().max()) if v.numel() else 0.0
        if d > worst:
            worst, where = d, k
    print(
        json.dumps(
            {
                "merged": merged_loss,
                "peft": peft_loss,
                "peft_merged": unloaded_loss,
                "tokens": tokens,
                "max_weight_diff": worst,
                "weight": where,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
