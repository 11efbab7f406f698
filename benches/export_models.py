#!/usr/bin/env python3
"""Export the large models the benchmarks and memory measurements use.

They are too large to commit (GPT-2 small is about 500 MB of weights), so they
are written to a scratch folder, by default /tmp/nnlint-bench:

    /tmp/fx/bin/python benches/export_models.py [OUT_DIR]

Weights come from random init (no download): `GPT2LMHeadModel(GPT2Config())`.
Both exporters are used: `gpt2_dynamo.onnx` (+ external `gpt2_dynamo.onnx.data`)
and `gpt2_torchscript.onnx` (weights inline, one 500 MB file).
"""

import copy
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
        # Two checkpoints one Adam step apart, exported the same way, for `nnlint
        # diff` on two 500 MB checkpoints.
        step0 = os.path.join(out, "gpt2_step0.onnx")
        step1 = os.path.join(out, "gpt2_step1.onnx")
        if not os.path.exists(step1):
            torch.onnx.export(w, (ids, mask), step0, dynamo=True, verbose=False, input_names=["input_ids", "attention_mask"], output_names=["logits"])
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            logits = w(ids, mask)
            torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).backward()
            opt.step()
            opt.zero_grad()
            torch.onnx.export(w, (ids, mask), step1, dynamo=True, verbose=False, input_names=["input_ids", "attention_mask"], output_names=["logits"])


class WithLoss(torch.nn.Module):
    """`F.cross_entropy` inside forward, as training scripts that export the loss write it."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x, y):
        return torch.nn.functional.cross_entropy(self.m(x), y)


class TransformerLM(torch.nn.Module):
    """A small `torch.nn.TransformerEncoder` language model."""

    def __init__(self, vocab=1000, d=128, layers=2):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        layer = torch.nn.TransformerEncoderLayer(d, 4, 256, dropout=0.1, batch_first=True)
        self.enc = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = torch.nn.Linear(d, vocab)

    def forward(self, ids):
        return self.head(self.enc(self.emb(ids)))


def export_or_raise(model, args, path, dynamo, train):
    """One export, dynamo or TorchScript, in training or eval mode; raises what the exporter raises."""
    model.train(train)
    kwargs = {"dynamo": dynamo}
    if dynamo:
        kwargs["verbose"] = False
    else:
        kwargs["training"] = torch.onnx.TrainingMode.TRAINING if train else torch.onnx.TrainingMode.EVAL
        kwargs["do_constant_folding"] = not train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, path, **kwargs)


def export(model, args, path, dynamo, train):
    try:
        export_or_raise(model, args, path, dynamo, train)
    except Exception as e:  # an exporter limitation is a fact to report, not a crash
        print(f"FAILED {os.path.basename(path)}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")


def architectures(out):
    """The clean architectures that must lint without warnings (issue: no false alarms)."""
    import torchvision

    d = os.path.join(out, "arch")
    os.makedirs(d, exist_ok=True)
    y = torch.randint(0, 1000, (2,))
    for name in ("resnet18", "mobilenet_v2", "vgg11_bn", "efficientnet_b0"):
        # VGG's adaptive pool to 7x7 exports (TorchScript) only from a multiple of 7.
        side = 224 if name.startswith("vgg") else 64
        x = torch.randn(2, 3, side, side)
        torch.manual_seed(0)
        net = getattr(torchvision.models, name)(weights=None)
        for dynamo in (True, False):
            for train in (True, False):
                for loss in (False, True):
                    tag = f"{name}_{'dynamo' if dynamo else 'torchscript'}_{'train' if train else 'eval'}{'_ce' if loss else ''}"
                    path = os.path.join(d, tag + ".onnx")
                    if os.path.exists(path):
                        continue
                    # Each export from a pristine copy: a training-mode export runs
                    # forward passes that move BatchNorm's running statistics, and
                    # the eval exports after it would fold moved statistics.
                    fresh = copy.deepcopy(net)
                    model = WithLoss(fresh) if loss else fresh
                    export(model, (x, y) if loss else (x,), path, dynamo, train)
    torch.manual_seed(0)
    lm = TransformerLM()
    ids = torch.randint(0, 1000, (2, 16))
    for dynamo in (True, False):
        for train in (True, False):
            tag = f"transformer_lm_{'dynamo' if dynamo else 'torchscript'}_{'train' if train else 'eval'}"
            path = os.path.join(d, tag + ".onnx")
            if not os.path.exists(path):
                export(copy.deepcopy(lm), (ids,), path, dynamo, train)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/nnlint-bench"
    os.makedirs(out, exist_ok=True)
    gpt2(out)
    architectures(out)
    for root, _, files in os.walk(out):
        for f in sorted(files):
            print(os.path.join(root, f), os.path.getsize(os.path.join(root, f)))


if __name__ == "__main__":
    main()
