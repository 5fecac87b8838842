#!/usr/bin/env python3
"""Hugging Face's side of the PEFT interop check (test/python/peft-interop.py-test.ts drives it).

  peft_interop.py eval --model DIR [--adapter DIR] --data FILE.jsonl
      Loads the model with transformers (float32) and, with --adapter, the adapter with
      peft.PeftModel.from_pretrained, then prints {"loss": ..., "tokens": ...}: the mean next-token
      cross-entropy over every token of every {"text"} record, each encoded with the tokenizer's
      special tokens and followed by its EOS token unless it already ends with one (Tabtune's text
      format), token-weighted across records.

  peft_interop.py make-adapter --model DIR --out DIR --r R --alpha A --targets a,b|all-linear [--rslora] [--dora] [--seed S]
      Writes a PEFT LoRA adapter with save_pretrained. init_lora_weights=False leaves A and B at
      their random layer initialisation, so the adapter changes the outputs (B = 0 would not).
      fan_in_fan_out is set for models with Conv1D layers (GPT-2), as PEFT asks. --dora makes a
      DoRA adapter (use_dora=True) and moves each lora_magnitude_vector off the weight norm PEFT
      initialises it to (times 1 + N(0, 0.2)), so the magnitude matters.

  peft_interop.py make-method-adapter --model DIR --out DIR --method ia3|prompt-tuning|prefix-tuning
                  [--num-virtual-tokens N] [--prefix-projection] [--seed S]
      Writes a PEFT adapter of another method with save_pretrained, with values that change the
      outputs: IA3 (PEFT's default targets) with every ia3_l at 1 + N(0, 0.3); prompt tuning with
      RANDOM init; prefix tuning with its default init, through the projection MLP with
      --prefix-projection (PEFT then saves the MLP's output as prompt_embeddings).

  peft_interop.py make-model --model DIR [--seed S] [--wrap-gemma3]
      Replaces the model in DIR with transformers' own: the config.json there is read with
      AutoConfig (so it must mean to transformers what the test wrote), the model is built with
      AutoModelForCausalLM.from_config, every parameter gets N(0, 0.1) noise added (so norms,
      biases and Gemma's zero-initialised (1 + w) weights all matter), and save_pretrained writes
      config.json and model.safetensors as this transformers version does. --wrap-gemma3 makes the
      multimodal Gemma 3 checkpoint (Gemma3ForConditionalGeneration, a tiny vision tower) around
      the text config.

  peft_interop.py eval-examples --model DIR [--adapter DIR] --data FILE.jsonl
      The same loss over pre-tokenized examples (a recipe's data/*.jsonl: input_ids and
      completion_mask), counting the tokens whose mask is 1: the recipe's own view of the loss.

  peft_interop.py update-diff --init DIR --a DIR --b DIR
      Two adapters trained from the same init adapter: the size of each update (b - init, a - init,
      as one vector over every tensor, in float64) and the size of their difference, overall and
      for the worst tensor: {"update_norm", "diff_norm", "rel", "worst_rel", "worst_tensor"}.

  peft_interop.py tokenize --model DIR --texts FILE.json
      Encodes each string of the JSON array with AutoTokenizer (special tokens added) and saves the
      tokenizer with save_pretrained: prints {"ids": [[...], ...], "saved": <its tokenizer.json>}.

  peft_interop.py generate --model DIR [--adapter DIR] --prompt TEXT --max-new-tokens N [--repetition-penalty P]
      Greedy generation with transformers' generate (through PeftModel with --adapter: PEFT's own
      prompt / prefix handling of the KV cache): prints {"text": prompt and continuation}.

  peft_interop.py chat-ids --model DIR --messages FILE.json
      The ids of apply_chat_template(messages, add_generation_prompt=True): prints {"ids": [...]}.

  peft_interop.py warp --cases FILE.json
      Each case {"logits", "seen", "temperature", "top_k", "top_p", "repetition_penalty"} through
      transformers' logits processors as generate(do_sample=True) orders them (repetition penalty
      over `seen`, then temperature, top-k, top-p): prints {"probs": [[softmax of the result], ...]}.

Models run with attn_implementation="eager", each modeling file's reference attention: the SDPA
path of Gemma 2 silently drops attn_logit_softcapping, which is part of the model. The one exception
is Falcon's ALiBi form, which runs with "sdpa", the implementation from_pretrained picks by default:
transformers 5.x folds alibi / sqrt(head_dim) into the causal mask for every implementation, and its
eager path then adds the bias again ((scores + alibi) * inv_norm_factor + mask), so eager applies
ALiBi twice; SDPA applies it once, as Falcon-RW was trained and as transformers 4.x's eager path did.

The last stdout line is JSON.
"""
import argparse
import json
import sys
import tempfile

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer


def attention_of(cfg):
    """The attention implementation to run a model with (see the module's docstring)."""
    if getattr(cfg, "model_type", "") == "falcon" and getattr(cfg, "alibi", False):
        return "sdpa"
    return "eager"


def load(model_dir):
    cfg = AutoConfig.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attention_of(cfg))
    model.eval()
    return model


def cmd_eval(a, model=None):
    """`model`: the base model already loaded (scripts/qlora_interop.py passes one with NF4 weights)."""
    tok = AutoTokenizer.from_pretrained(a.model)
    model = model if model is not None else load(a.model)
    model.eval()
    virtual = 0
    if a.adapter:
        model = PeftModel.from_pretrained(model, a.adapter)
        model.eval()
        cfg = model.active_peft_config
        # prompt tuning: the logits include the virtual tokens' positions, which predict nothing
        if cfg.peft_type == "PROMPT_TUNING":
            virtual = cfg.num_virtual_tokens
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
                logits = model(input_ids=x).logits[0, virtual:-1].double()
            nll = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum")
            total += float(nll)
            count += len(ids) - 1
    print(json.dumps({"loss": total / count, "tokens": count}))


def cmd_eval_examples(a):
    model = load(a.model)
    if a.adapter:
        model = PeftModel.from_pretrained(model, a.adapter)
        model.eval()
    total = 0.0
    count = 0
    with open(a.data, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            x = torch.tensor([r["input_ids"]])
            mask = torch.tensor(r["completion_mask"][1:], dtype=torch.bool)
            with torch.no_grad():
                logits = model(input_ids=x).logits[0, :-1].double()
            nll = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="none")
            total += float(nll[mask].sum())
            count += int(mask.sum())
    print(json.dumps({"loss": total / count, "tokens": count}))


def cmd_update_diff(a):
    from safetensors.torch import load_file

    def tensors(d):
        return {k: v.double() for k, v in load_file(f"{d}/adapter_model.safetensors").items()}

    init, ta, tb = tensors(a.init), tensors(a.a), tensors(a.b)
    if set(ta) != set(init) or set(tb) != set(init):
        raise SystemExit(f"different tensors: {sorted(set(ta) ^ set(init))} {sorted(set(tb) ^ set(init))}")
    upd = 0.0
    diff = 0.0
    worst = (0.0, "")
    for k in sorted(init):
        ua, ub = ta[k] - init[k], tb[k] - init[k]
        n, d = float((ua**2).sum()), float(((ua - ub) ** 2).sum())
        upd += n
        diff += d
        if n > 0 and (d / n) ** 0.5 > worst[0]:
            worst = ((d / n) ** 0.5, k)
    print(
        json.dumps(
            {
                "update_norm": upd**0.5,
                "diff_norm": diff**0.5,
                "rel": (diff / upd) ** 0.5 if upd > 0 else float("inf"),
                "worst_rel": worst[0],
                "worst_tensor": worst[1],
            }
        )
    )


def cmd_make_model(a):
    torch.manual_seed(a.seed)
    cfg = AutoConfig.from_pretrained(a.model)
    if a.wrap_gemma3:
        from transformers import Gemma3Config, SiglipVisionConfig

        vision = SiglipVisionConfig(
            hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14
        )
        cfg = Gemma3Config(text_config=cfg.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation=attention_of(cfg))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(a.model, safe_serialization=True)
    print(json.dumps({"saved": a.model, "class": type(model).__name__}))


def cmd_make_adapter(a):
    torch.manual_seed(a.seed)
    model = load(a.model)
    conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())
    targets = a.targets if a.targets == "all-linear" else a.targets.split(",")
    cfg = LoraConfig(
        r=a.r,
        lora_alpha=a.alpha,
        target_modules=targets,
        lora_dropout=0.0,
        use_rslora=a.rslora,
        fan_in_fan_out=conv1d,
        bias="none",
        task_type="CAUSAL_LM",
        init_lora_weights=False,
        use_dora=a.dora,
    )
    peft_model = get_peft_model(model, cfg)
    if a.dora:
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_magnitude_vector" in name:
                    p.mul_(1 + 0.2 * torch.randn_like(p))
    peft_model.save_pretrained(a.out)
    print(json.dumps({"saved": a.out}))


def cmd_make_method_adapter(a):
    from peft import IA3Config, PrefixTuningConfig, PromptTuningConfig

    torch.manual_seed(a.seed)
    model = load(a.model)
    if a.method == "ia3":
        cfg = IA3Config(task_type="CAUSAL_LM")
    elif a.method == "prompt-tuning":
        cfg = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=a.num_virtual_tokens)
    else:
        cfg = PrefixTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=a.num_virtual_tokens, prefix_projection=a.prefix_projection
        )
    peft_model = get_peft_model(model, cfg)
    if a.method == "ia3":
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "ia3_l" in name:
                    p.copy_(1 + 0.3 * torch.randn_like(p))
    peft_model.save_pretrained(a.out)
    print(json.dumps({"saved": a.out}))


def cmd_tokenize(a):
    tok = AutoTokenizer.from_pretrained(a.model)
    with open(a.texts, encoding="utf-8") as f:
        texts = json.load(f)
    ids = [tok(t, add_special_tokens=True)["input_ids"] for t in texts]
    with tempfile.TemporaryDirectory() as d:
        tok.save_pretrained(d)
        with open(f"{d}/tokenizer.json", encoding="utf-8") as f:
            saved = json.load(f)
    print(json.dumps({"ids": ids, "saved": saved}))


def cmd_generate(a):
    tok = AutoTokenizer.from_pretrained(a.model)
    model = load(a.model)
    if a.adapter:
        model = PeftModel.from_pretrained(model, a.adapter)
        model.eval()
    x = tok(a.prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(
            input_ids=x, max_new_tokens=a.max_new_tokens, do_sample=False, repetition_penalty=a.repetition_penalty
        )
    print(json.dumps({"text": tok.decode(out[0], skip_special_tokens=True)}))


def cmd_chat_ids(a):
    tok = AutoTokenizer.from_pretrained(a.model)
    with open(a.messages, encoding="utf-8") as f:
        messages = json.load(f)
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    print(json.dumps({"ids": list(ids)}))


def cmd_warp(a):
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    with open(a.cases, encoding="utf-8") as f:
        cases = json.load(f)
    out = []
    for c in cases:
        procs = LogitsProcessorList()
        if c["repetition_penalty"] != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(float(c["repetition_penalty"])))
        procs.append(TemperatureLogitsWarper(float(c["temperature"])))
        if c["top_k"] > 0:
            procs.append(TopKLogitsWarper(int(c["top_k"])))
        if c["top_p"] < 1.0:
            procs.append(TopPLogitsWarper(float(c["top_p"])))
        scores = torch.tensor([c["logits"]], dtype=torch.float64)
        seen = torch.tensor([c["seen"]], dtype=torch.long)
        probs = torch.softmax(procs(seen, scores), dim=-1)[0]
        out.append(probs.tolist())
    print(json.dumps({"probs": out}))


def main(argv):
    p = argparse.ArgumentParser(prog="peft_interop.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval")
    e.add_argument("--model", required=True)
    e.add_argument("--adapter")
    e.add_argument("--data", required=True)
    ee = sub.add_parser("eval-examples")
    ee.add_argument("--model", required=True)
    ee.add_argument("--adapter")
    ee.add_argument("--data", required=True)
    u = sub.add_parser("update-diff")
    u.add_argument("--init", required=True)
    u.add_argument("--a", required=True)
    u.add_argument("--b", required=True)
    m = sub.add_parser("make-adapter")
    m.add_argument("--model", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--r", type=int, required=True)
    m.add_argument("--alpha", type=float, required=True)
    m.add_argument("--targets", required=True)
    m.add_argument("--rslora", action="store_true")
    m.add_argument("--dora", action="store_true")
    m.add_argument("--seed", type=int, default=0)
    mma = sub.add_parser("make-method-adapter")
    mma.add_argument("--model", required=True)
    mma.add_argument("--out", required=True)
    mma.add_argument("--method", required=True, choices=["ia3", "prompt-tuning", "prefix-tuning"])
    mma.add_argument("--num-virtual-tokens", type=int, default=4)
    mma.add_argument("--prefix-projection", action="store_true")
    mma.add_argument("--seed", type=int, default=0)
    mm = sub.add_parser("make-model")
    mm.add_argument("--model", required=True)
    mm.add_argument("--seed", type=int, default=0)
    mm.add_argument("--wrap-gemma3", action="store_true")
    t = sub.add_parser("tokenize")
    t.add_argument("--model", required=True)
    t.add_argument("--texts", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--model", required=True)
    g.add_argument("--adapter")
    g.add_argument("--prompt", required=True)
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    ci = sub.add_parser("chat-ids")
    ci.add_argument("--model", required=True)
    ci.add_argument("--messages", required=True)
    w = sub.add_parser("warp")
    w.add_argument("--cases", required=True)
    a = p.parse_args(argv)
    commands = {
        "eval": cmd_eval,
        "make-adapter": cmd_make_adapter,
        "eval-examples": cmd_eval_examples,
        "update-diff": cmd_update_diff,
        "make-method-adapter": cmd_make_method_adapter,
        "make-model": cmd_make_model,
        "tokenize": cmd_tokenize,
        "generate": cmd_generate,
        "chat-ids": cmd_chat_ids,
        "warp": cmd_warp,
    }
    commands[a.cmd](a)


if __name__ == "__main__":
    main(sys.argv[1:])
