#!/usr/bin/env python3
"""Export the large models the benchmarks and memory measurements use.

They are too large to commit (GPT-2 small is about 500 MB of weights), so they
are written to a scratch folder, by default /tmp/nnlint-bench:

    /tmp/fx/bin/python benches/export_models.py [OUT_DIR]

Weights come from random init (no download): `GPT2LMHeadModel(GPT2Config())`.
Both exporters are used: `gpt2_dynamo.onnx` (+ external `gpt2_dynamo.onnx.data`)
and `gpt2_torchscript.onnx` (weights inline, one 500 MB file).
"""

import os
import sys
import warnings

import torch


def gpt2(out):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(attn_implementation="eager")).eval()
    model.config.use_cache = False
    ids = torch.randint(0, 50257, (2, 64))
    mask = torch.ones(2, 64, dtype=torch.int64)

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            # An explicit mask keeps transformers off `torch.diff`, which the
            # TorchScript exporter cannot export.
            return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, return_dict=False)[0]

    w = Wrapper(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(out, "gpt2_torchscript.onnx")
        if not os.path.exists(path):
            torch.onnx.export(w, (ids, mask), path, dynamo=False, input_names=["input_ids", "attention_mask"], output_names=["logits"])
        path = os.path.join(out, "gpt2_dynamo.onnx")
        if not os.path.exists(path):
            torch.onnx.export(w, (ids, mask), path, dynamo=True, verbose=False, input_names=["input_ids", "attention_mask"], output_names=["logits"])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/nnlint-bench"
    os.makedirs(out, exist_ok=True)
    gpt2(out)
    for f in sorted(os.listdir(out)):
        print(f, os.path.getsize(os.path.join(out, f)))


if __name__ == "__main__":
    main()
