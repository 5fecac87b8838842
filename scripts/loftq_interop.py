#!/usr/bin/env python3
"""The Python side of the LoftQ interop check (test/python/peft-loftq.py-test.ts drives it).

PEFT 0.21's LoftQ (utils/loftq_utils.loftq_init, run by get_peft_model for
LoraConfig(init_lora_weights="loftq", loftq_config=LoftQConfig(...))) needs bitsandbytes and a CUDA
device, neither of which exists here. So that PEFT's own code runs unchanged, this script supplies:
  - a `bitsandbytes` module whose nn.Params4bit / functional.dequantize_4bit quantize and dequantize
    with bitsandbytes' NF4 rule as scripts/qlora_interop.py implements it from bitsandbytes' source
    (blocks of 64; compress_statistics=False, as loftq_init asks, so no double quantization);
  - "cuda" as a device name that means the CPU while loftq_init runs;
  - LoraConfig's scipy presence check skipped (LoftQ itself does not use scipy): the config is made
    with init_lora_weights="loftq" and loftq_config set after construction.

  loftq_interop.py init --model DIR --targets a,b --r R --alpha A --iter N --out FILE [--save DIR]
      get_peft_model with LoftQ on the float32 model; FILE (safetensors) holds per module PATH:
      PATH.q (the base weight after LoftQ), PATH.lora_A, PATH.lora_B. With --save, the LoftQ
      workflow of PEFT's examples/loftq_finetuning: DIR/base holds the quantized backbone, DIR/adapter
      the adapter with init_lora_weights True and base_model_name_or_path DIR/base.

  loftq_interop.py train-py RECIPE/train.py --output_dir OUT
      a recipe's train.py as exported (LoraConfig with LoftQConfig), run with the same stand-ins.

The last stdout line is JSON.
"""
import argparse
import contextlib
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from peft_interop import load  # noqa: E402
from qlora_interop import dequantize, quantize  # noqa: E402


class _Params4bit:
    """bnb.nn.Params4bit(data, requires_grad=False, compress_statistics=False, quant_type="nf4")."""

    def __init__(self, data, requires_grad=False, compress_statistics=True, quant_type="fp4", **_):
        assert quant_type == "nf4" and not compress_statistics, "LoftQ asks for NF4 without double quantization"
        w = data.detach().to(torch.float32).numpy()
        self.shape = tuple(w.shape)
        self.quant_state = quantize(w, False)
        self.data = self

    def to(self, *_, **__):
        return self


def _dequantize_4bit(qweight, quant_state):
    return torch.from_numpy(dequantize(quant_state).reshape(qweight.shape).copy())


@contextlib.contextmanager
def _loftq_shims():
    """The fake bitsandbytes and "cuda" = CPU, only while one layer's loftq_init runs (elsewhere PEFT
    would take the fake module for a real bitsandbytes and pick its quantized layer classes)."""
    bnb = types.ModuleType("bitsandbytes")
    bnb.nn = types.SimpleNamespace(Params4bit=_Params4bit)
    bnb.functional = types.SimpleNamespace(dequantize_4bit=_dequantize_4bit)
    sys.modules["bitsandbytes"] = bnb
    original = torch.Tensor.to

    def to(self, *args, **kwargs):
        args = tuple("cpu" if a in ("cuda", "xpu") else a for a in args)
        if kwargs.get("device") in ("cuda", "xpu"):
            kwargs["device"] = "cpu"
        return original(self, *args, **kwargs)

    torch.Tensor.to = to
    try:
        yield
    finally:
        torch.Tensor.to = original
        del sys.modules["bitsandbytes"]


def cmd_init(a):
    from peft import LoraConfig, get_peft_model

    model = load(a.model)
    cfg = LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=0.0, target_modules=a.targets.split(","))
    cfg.init_lora_weights = "loftq"
    cfg.loftq_config = {"loftq_bits": 4, "loftq_iter": a.iter}
    with _peft_loftq_here():
        peft_model = get_peft_model(model, cfg)
    out = {}
    for name, mod in peft_model.named_modules():
        if not hasattr(mod, "lora_A") or "default" not in getattr(mod, "lora_A", {}):
            continue
        path = name.removeprefix("base_model.model.")
        out[f"{path}.q"] = mod.get_base_layer().weight.detach().clone().contiguous()
        out[f"{path}.lora_A"] = mod.lora_A["default"].weight.detach().clone().contiguous()
        out[f"{path}.lora_B"] = mod.lora_B["default"].weight.detach().clone().contiguous()
    save_file(out, a.out)
    if a.save:
        base = Path(a.save) / "base"
        adapter = Path(a.save) / "adapter"
        peft_model.peft_config["default"].base_model_name_or_path = str(base)
        peft_model.peft_config["default"].init_lora_weights = True  # don't apply LoftQ when loading again
        # move B off its init so the adapter's effect is more than LoftQ's error correction
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.mul_(1.5)
        peft_model.save_pretrained(str(adapter))
        backbone = peft_model.unload()
        backbone.save_pretrained(str(base), safe_serialization=True)
        for f in Path(a.model).iterdir():
            if f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "vocab.json", "merges.txt"):
                shutil.copy(f, base / f.name)
    print(json.dumps({"modules": len(out) // 3, "q_dtype": str(np.dtype("float32"))}))


@contextlib.contextmanager
def _peft_loftq_here():
    """PEFT's LoftQ runnable on this CPU machine: each layer's loftq_init under the shims, and
    LoraConfig's scipy presence check satisfied while a config is made (LoftQ does not use scipy)."""
    import importlib.machinery

    from peft import LoraConfig
    from peft.tuners.lora.layer import LoraLayer
    from peft.utils import loftq_utils

    loftq_utils.is_bnb_available = lambda: True
    loftq_utils.is_bnb_4bit_available = lambda: True
    layer_init = LoraLayer.loftq_init
    post_init = LoraConfig.__post_init__

    def shimmed(self, *args, **kwargs):
        with _loftq_shims():
            return layer_init(self, *args, **kwargs)

    def config_post_init(self):
        had = "scipy" in sys.modules
        if not had:
            stub = types.ModuleType("scipy")
            stub.__spec__ = importlib.machinery.ModuleSpec("scipy", None)
            sys.modules["scipy"] = stub
        try:
            post_init(self)
        finally:
            if not had:
                del sys.modules["scipy"]

    LoraLayer.loftq_init = shimmed
    LoraConfig.__post_init__ = config_post_init
    try:
        yield
    finally:
        LoraLayer.loftq_init = layer_init
        LoraConfig.__post_init__ = post_init


def cmd_train_py(a, rest):
    """Runs a recipe's train.py unchanged (its own argv) with PEFT's LoftQ made runnable here."""
    import runpy

    sys.argv = [a.train_py, *rest]
    with _peft_loftq_here():
        runpy.run_path(a.train_py, run_name="__main__")


def main(argv):
    if argv and argv[0] == "train-py":
        t = argparse.ArgumentParser()
        t.add_argument("train_py")
        a, rest = t.parse_known_args(argv[1:])
        return cmd_train_py(a, rest)
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("init")
    i.add_argument("--model", required=True)
    i.add_argument("--targets", required=True)
    i.add_argument("--r", type=int, required=True)
    i.add_argument("--alpha", type=float, required=True)
    i.add_argument("--iter", type=int, default=1)
    i.add_argument("--out", required=True)
    i.add_argument("--save")
    a = p.parse_args(argv)
    {"init": cmd_init}[a.cmd](a)


if __name__ == "__main__":
    main(sys.argv[1:])
