#!/usr/bin/env python3
"""The Python side of the QLoRA interop check (test/python/qlora-interop.py-test.ts drives it).

bitsandbytes is not installable here, so its 4-bit NF4 rule is implemented below from its source
(csrc/kernels.cu kQuantizeBlockwise with NF4 and General8bit, bitsandbytes/functional.py
quantize_4bit / create_dynamic_map / QuantState.as_dict, transformers' integrations/bitsandbytes.py),
independently of Tabtune's TypeScript:
  - a weight in nn.Linear's [out, in] order (GPT-2's Conv1D transposed first), flattened, in blocks
    of 64; absmax = max |w| per block; x = f32(w * f32(1 / absmax)); the 4-bit index is the number
    of the 15 float32 decision thresholds of dQuantizeNF4 that lie strictly below x (NaN -> 0);
    byte j = idx[2j] << 4 | idx[2j + 1] (an odd count pads a zero);
  - double quantization: offset = mean(absmax) (exact mean rounded to float32), v = f32(absmax -
    offset), blocks of 256, absmax2 = max |v|, s = f32(v * f32(1 / absmax2)), then dQuantize's
    binary search over the 256-value signed dynamic map (create_dynamic_map(signed=True));
  - dequantization in float32: absmax = f32(f32(map[q] * absmax2) + offset), w = f32(code[idx] * absmax).

  qlora_interop.py compare-nf4 --model DIR --tabtune FILE [--no-double-quant]
      Quantizes every linear weight of the model and compares with Tabtune's (FILE: per weight key W,
      W.packed U8, W.absmax F32 or U8, W.nested_absmax F32, W.offset F32[1], W.dequantized F32
      [out, in], as Tabtune's GPU holds them). Prints counts of differing bytes/values and the
      largest difference of the dequantized weights relative to the float32 spacing at each value.
  qlora_interop.py quantize --model DIR --out DIR [--no-double-quant]
      Writes the model as a bitsandbytes 4-bit checkpoint laid out as transformers saves one
      (packed uint8 weights with absmax, quant_map, nested_absmax, nested_quant_map and
      quant_state.bitsandbytes__nf4; quantization_config in config.json; tokenizer files copied).
  qlora_interop.py eval --model DIR [--adapter DIR] --data FILE [--dequantize-nf4 [--no-double-quant]]
      The loss as scripts/peft_interop.py eval computes it, with --dequantize-nf4 on the model whose
      linear weights are replaced by their NF4 dequantization (what a QLoRA base computes with,
      before bitsandbytes casts to its compute dtype).
  qlora_interop.py dynamic-map
      The 256 values of create_dynamic_map(signed=True), as torch computes them in float32.

The last stdout line is JSON.
"""
import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM
from transformers.pytorch_utils import Conv1D

sys.path.insert(0, str(Path(__file__).parent))
from peft_interop import cmd_eval  # noqa: E402

F32 = np.float32
NF4 = np.array(
    [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
        -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
        0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
        0.7229568362236023, 1.0,
    ],
    dtype=F32,
)
# dQuantizeNF4's decision tree, as float32 constants, sorted.
THRESHOLDS = np.array(
    [
        -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
        -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
        0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
        0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
    ],
    dtype=F32,
)


def dynamic_map():
    """create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), with torch's float32 arithmetic."""
    data = []
    for i in range(7):
        n = 2 ** i + 1
        b = torch.linspace(0.1, 1, n, dtype=torch.float32)
        means = (b[:-1] + b[1:]) / 2.0
        scale = 10 ** (-6 + i)
        data += (scale * means).tolist()
        data += (-scale * means).tolist()
    data += [0, 1.0]
    data.sort()
    return np.array(data, dtype=F32)


def nf4_indices(x):
    """The 4-bit index of each value already divided by its block's absmax (NaN -> 0)."""
    with np.errstate(invalid="ignore"):
        return (x[:, None] > THRESHOLDS[None, :]).sum(axis=1).astype(np.uint8)


def dquantize(code, x):
    """dQuantize<0> of csrc/kernels.cu: binary search over a sorted 256-value code, float32 midpoints."""
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = F32(-1.0), F32(1.0)
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot, lower = pivot, val
            pivot += i
        else:
            upper_pivot, upper = pivot, val
            pivot -= i
        val = code[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        return upper_pivot if x > F32((upper + val) * F32(0.5)) else pivot
    return lower_pivot if x < F32((lower + val) * F32(0.5)) else pivot


def quantize(w, double_quant):
    """A float32 [out, in] weight -> the parts bitsandbytes stores (see the module doc)."""
    flat = w.astype(F32).reshape(-1)
    n = flat.size
    nb = math.ceil(n / 64)
    blocks = np.zeros(nb * 64, dtype=F32)
    blocks[:n] = flat
    blocks = blocks.reshape(nb, 64)
    absmax = np.abs(blocks).max(axis=1).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = (F32(1.0) / absmax).astype(F32)
        scaled = (blocks * inv[:, None]).astype(F32).reshape(-1)
    idx = nf4_indices(scaled)[: n + n % 2]
    packed = ((idx[0::2] << 4) | idx[1::2]).astype(np.uint8)
    out = {"n": n, "packed": packed, "absmax": absmax}
    if not double_quant:
        return out
    offset = F32(absmax.astype(np.float64).mean())
    v = (absmax - offset).astype(F32)
    code = dynamic_map()
    nb2 = math.ceil(nb / 256)
    q = np.zeros(nb, dtype=np.uint8)
    absmax2 = np.zeros(nb2, dtype=F32)
    for c in range(nb2):
        part = v[c * 256 : (c + 1) * 256]
        m = F32(np.abs(part).max())
        absmax2[c] = m
        with np.errstate(divide="ignore", invalid="ignore"):
            inv2 = F32(F32(1.0) / m)
            s = (part * inv2).astype(F32)
        for j, x in enumerate(s):
            q[c * 256 + j] = dquantize(code, x)
    out.update({"qabsmax": q, "absmax2": absmax2, "offset": offset, "code": code})
    return out


def block_absmax(qz):
    if "qabsmax" not in qz:
        return qz["absmax"]
    a2 = np.repeat(qz["absmax2"], 256)[: qz["qabsmax"].size]
    return ((qz["code"][qz["qabsmax"]] * a2).astype(F32) + qz["offset"]).astype(F32)


def dequantize(qz):
    """bitsandbytes' float32 dequantization (before its cast to the compute dtype), flat."""
    n = qz["n"]
    idx = np.empty(qz["packed"].size * 2, dtype=np.uint8)
    idx[0::2] = qz["packed"] >> 4
    idx[1::2] = qz["packed"] & 15
    scale = np.repeat(block_absmax(qz), 64)[:n]
    return (NF4[idx[:n]] * scale).astype(F32)


def linear_weights(model_dir):
    """(file key, module, [out, in] float32 weight) of every linear module but the LM head."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tensors = load_file(str(Path(model_dir) / "model.safetensors"))
    out = []
    for name, mod in model.named_modules():
        if name == "lm_head" or not isinstance(mod, (torch.nn.Linear, Conv1D)):
            continue
        full = f"{name}.weight"
        key = next(k for k in tensors if full == k or full.endswith("." + k))
        w = mod.weight.detach().numpy().astype(F32)
        out.append((key, mod, w.T.copy() if isinstance(mod, Conv1D) else w))
    return model, tensors, out


def cmd_compare(a):
    ours = {k: v.numpy() for k, v in load_file(a.tabtune).items()}
    _, _, weights = linear_weights(a.model)
    dq = not a.no_double_quant
    bad_bytes = bad_stats = 0
    worst_ulps = 0.0
    for key, _, w in weights:
        qz = quantize(w, dq)
        bad_bytes += int((ours[f"{key}.packed"] != qz["packed"]).sum())
        if dq:
            bad_stats += int((ours[f"{key}.absmax"] != qz["qabsmax"]).sum())
            bad_stats += int((ours[f"{key}.nested_absmax"] != qz["absmax2"]).sum())
            bad_stats += int(ours[f"{key}.offset"][0] != qz["offset"])
        else:
            bad_stats += int((ours[f"{key}.absmax"] != qz["absmax"]).sum())
        mine = dequantize(qz)
        got = ours[f"{key}.dequantized"].reshape(-1)
        ulp = np.spacing(np.abs(mine)).astype(np.float64)
        ulp[ulp == 0] = np.finfo(F32).tiny
        worst_ulps = max(worst_ulps, float((np.abs(got.astype(np.float64) - mine) / ulp).max()))
    print(json.dumps({"modules": len(weights), "bad_bytes": bad_bytes, "bad_stats": bad_stats, "worst_ulps": worst_ulps}))


def cmd_quantize(a):
    src, out = Path(a.model), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    _, tensors, weights = linear_weights(a.model)
    dq = not a.no_double_quant
    dtype = json.loads((src / "config.json").read_text()).get("torch_dtype", "float32")
    t = torch.from_numpy
    for key, _, w in weights:
        qz = quantize(w, dq)
        del tensors[key]
        tensors[key] = t(qz["packed"].reshape(-1, 1))
        tensors[f"{key}.quant_map"] = t(NF4.copy())
        state = {"quant_type": "nf4", "blocksize": 64, "dtype": dtype, "shape": list(w.shape)}
        if dq:
            tensors[f"{key}.absmax"] = t(qz["qabsmax"])
            tensors[f"{key}.nested_absmax"] = t(qz["absmax2"])
            tensors[f"{key}.nested_quant_map"] = t(qz["code"])
            state.update({"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": float(qz["offset"])})
        else:
            tensors[f"{key}.absmax"] = t(qz["absmax"])
        state_bytes = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8).copy()
        tensors[f"{key}.quant_state.bitsandbytes__nf4"] = t(state_bytes)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "bitsandbytes",
        "_load_in_4bit": True,
        "_load_in_8bit": False,
        "load_in_4bit": True,
        "load_in_8bit": False,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": dq,
        "bnb_4bit_compute_dtype": "float32",
        "bnb_4bit_quant_storage": "uint8",
        "llm_int8_enable_fp32_cpu_offload": False,
        "llm_int8_has_fp16_weight": False,
        "llm_int8_skip_modules": None,
        "llm_int8_threshold": 6.0,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for f in src.iterdir():
        if f.name not in ("config.json", "model.safetensors") and f.is_file():
            shutil.copy(f, out / f.name)
    print(json.dumps({"saved": str(out), "modules": len(weights)}))


def cmd_eval_nf4(a):
    if not a.dequantize_nf4:
        return cmd_eval(a)
    model, _, weights = linear_weights(a.model)
    dq = not a.no_double_quant
    with torch.no_grad():
        for _, mod, w in weights:
            deq = torch.from_numpy(dequantize(quantize(w, dq)).reshape(w.shape))
            mod.weight.copy_(deq.T if isinstance(mod, Conv1D) else deq)
    return cmd_eval(a, model)


def main(argv):
    p = argparse.ArgumentParser(prog="qlora_interop.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare-nf4")
    c.add_argument("--model", required=True)
    c.add_argument("--tabtune", required=True)
    c.add_argument("--no-double-quant", action="store_true")
    q = sub.add_parser("quantize")
    q.add_argument("--model", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--no-double-quant", action="store_true")
    e = sub.add_parser("eval")
    e.add_argument("--model", required=True)
    e.add_argument("--adapter")
    e.add_argument("--data", required=True)
    e.add_argument("--dequantize-nf4", action="store_true")
    e.add_argument("--no-double-quant", action="store_true")
    sub.add_parser("dynamic-map")
    a = p.parse_args(argv)
    if a.cmd == "compare-nf4":
        cmd_compare(a)
    elif a.cmd == "quantize":
        cmd_quantize(a)
    elif a.cmd == "eval":
        cmd_eval_nf4(a)
    else:
        print(json.dumps([float(x) for x in dynamic_map()]))


if __name__ == "__main__":
    main(sys.argv[1:])
