#!/usr/bin/env python3
"""The real-architecture corpus: models as people build them, linted before their first step.

    /tmp/fx/bin/python benches/real_architectures.py export [OUT_DIR]   # once (~20 min)
    cargo build --release --locked
    /tmp/fx/bin/python benches/real_architectures.py lint [OUT_DIR]

`export` builds every architecture below from its library's own config with
the library's own initialization (transformers' `_init_weights`, timm's and
torchvision's constructors; no hub, no download), attaches a fitting loss in
`forward`, and exports it with torch's dynamo exporter in training mode; some
also with TorchScript and in eval mode. Narrow configs (widths 32 to 64) sit
beside real ones. It also writes models initialized with scales nobody uses
(`bad_*`), which must be decided `untrained` and must fire the init rules.

`lint` runs target/release/nnlint on each and prints, per model, its decided
state and every finding at warning level or above, then one summary line:

    real architectures: N models, W with warnings, S not untrained; bad inits: B of K untrained and firing
    probes: N files; forward skipped on F, backward skipped on B; one-batch fit run on R (P%), cut by its budget on C; slowest T s (FILE)

The second line counts every file (bad inits included): a file whose probe,
backward pass or fit did not run has a `probe-skipped` note saying why.

It exits 1 when a healthy architecture warns or is not `untrained`, or a bad
init is not `untrained` or fires none of the rules it must.

Versions used for the committed table (benches/real_architectures.md):
torch 2.15.0, torchvision 0.29.2, transformers 5.23.0, timm 1.0.31,
onnx 1.23.2, onnxscript 0.7.2, numpy 2.4.6.
"""

import copy
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

# The exporter call the other benchmark shares (this folder is on sys.path
# when the script runs).
from export_models import export_or_raise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 4


class ClassifierLoss(torch.nn.Module):
    """`F.cross_entropy` on a classifier's logits, inside forward."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x, y):
        out = self.m(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if hasattr(out, "logits"):
            out = out.logits
        return F.cross_entropy(out, y)


class HFLoss(torch.nn.Module):
    """A transformers model given its labels: the library computes its own loss."""

    def __init__(self, m, names):
        super().__init__()
        self.m = m
        self.names = names

    def forward(self, *args):
        out = self.m(**dict(zip(self.names, args)), return_dict=True)
        return out.loss


class Seq2SeqLoss(torch.nn.Module):
    """Token cross-entropy on a seq2seq model's logits, written out in forward."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, ids, mask, dec, labels):
        logits = self.m(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, use_cache=False, return_dict=True).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


# Image classifiers keep the class count they ship with: several draw their
# head by its fan-out (torchvision's MNASNet and EfficientNet, timm's DLA),
# so at 10 classes the head starts 10x larger and the initial loss is 2.5x
# -ln(1/10) in torch too, a true finding about that config, not the
# architecture's.
CLASSES = 1000


def image(side=64, classes=CLASSES):
    return (torch.randn(BATCH, 3, side, side), torch.randint(0, classes, (BATCH,)))


def torchvision_models():
    import torchvision.models as tv
    from torchvision.models.vision_transformer import VisionTransformer

    def build(ctor, side=64, **kw):
        return lambda: (ClassifierLoss(ctor(num_classes=CLASSES, **kw)), image(side))

    yield "tv_resnet18", build(tv.resnet18)
    yield "tv_resnet50_zero_init_residual", build(tv.resnet50, zero_init_residual=True)
    yield "tv_mobilenet_v3_small", build(tv.mobilenet_v3_small)
    yield "tv_efficientnet_b0", build(tv.efficientnet_b0)
    yield "tv_convnext_tiny", build(tv.convnext_tiny)
    yield "tv_regnet_y_400mf", build(tv.regnet_y_400mf)
    yield "tv_shufflenet_v2_x0_5", build(tv.shufflenet_v2_x0_5)
    yield "tv_squeezenet1_1", build(tv.squeezenet1_1, side=224)
    yield "tv_densenet121", build(tv.densenet121)
    yield "tv_mnasnet0_5", build(tv.mnasnet0_5)
    yield "tv_swin_t", build(tv.swin_t)
    yield "tv_vgg11", build(tv.vgg11, side=32)
    yield "tv_vit_narrow", lambda: (
        ClassifierLoss(VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, num_classes=10)),
        image(32, 10),
    )


def timm_models():
    import timm

    def build(name, side=64, **kw):
        return lambda: (ClassifierLoss(timm.create_model(name, pretrained=False, num_classes=CLASSES, **kw)), image(side))

    yield "timm_resnet26d", build("resnet26d")
    yield "timm_vit_tiny", build("vit_tiny_patch16_224", side=64, img_size=64)
    yield "timm_deit_tiny", build("deit_tiny_patch16_224", side=64, img_size=64)
    yield "timm_convnext_atto", build("convnext_atto")
    yield "timm_efficientnet_b0", build("efficientnet_b0")
    yield "timm_mobilenetv3_small", build("mobilenetv3_small_100")
    yield "timm_regnetx_002", build("regnetx_002")
    yield "timm_mixer_s16", build("mixer_s16_224", side=64, img_size=64)
    yield "timm_resmlp_12", build("resmlp_12_224", side=64, img_size=64)
    yield "timm_poolformer_s12", build("poolformer_s12")
    yield "timm_cait_xxs24", build("cait_xxs24_224", side=64, img_size=64)
    yield "timm_ghostnet", build("ghostnet_100")
    yield "timm_dla34", build("dla34")
    # At its shipped 256 x 256: at 64 x 64 its last stage attends over one
    # patch, a softmax of one element (`softmax-single-class`, rightly).
    yield "timm_mobilevit_xxs", build("mobilevit_xxs", side=256)
    yield "timm_edgenext_xx_small", build("edgenext_xx_small")
    yield "timm_vit_small_layerscale", build("vit_small_patch16_224", side=64, img_size=64, init_values=1e-5)


def transformers_models():
    import transformers as T

    def text(vocab, seq=16, labels="tokens", classes=3):
        ids = torch.randint(5, vocab, (BATCH, seq))
        mask = torch.ones(BATCH, seq, dtype=torch.int64)
        if labels == "tokens":
            y = ids.clone()
        else:
            y = torch.randint(0, classes, (BATCH,))
        return ids, mask, y

    def lm(cls, cfg, labels="tokens", **extra):
        def make():
            torch.manual_seed(0)
            m = cls(cfg(**extra) if callable(cfg) else cfg)
            m.config.use_cache = False
            ids, mask, y = text(m.config.vocab_size, labels=labels)
            return HFLoss(m, ["input_ids", "attention_mask", "labels"]), (ids, mask, y)

        return make

    def seq2seq(cls, cfg):
        def make():
            torch.manual_seed(0)
            m = cls(cfg)
            m.config.use_cache = False
            ids, mask, y = text(m.config.vocab_size)
            # Decoder inputs given, not shifted from the labels inside: the
            # shift's in-place writes are what torch.export cannot trace.
            dec = torch.cat([torch.zeros(BATCH, 1, dtype=torch.int64), y[:, :7]], dim=1)
            return Seq2SeqLoss(m), (ids, mask, dec, y[:, :8])

        return make

    def vision(cls, cfg, side=32):
        def make():
            torch.manual_seed(0)
            m = cls(cfg)
            x, y = image(side, 10)
            return HFLoss(m, ["pixel_values", "labels"]), (x, y)

        return make

    small = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, vocab_size=1000)
    eager = dict(attn_implementation="eager")
    yield "hf_bert_narrow_cls", lm(T.BertForSequenceClassification, T.BertConfig(**small, num_labels=3, **eager), labels="class")
    yield "hf_bert_base_mlm", lm(T.BertForMaskedLM, T.BertConfig(num_hidden_layers=2, **eager))
    yield "hf_roberta_narrow_mlm", lm(T.RobertaForMaskedLM, T.RobertaConfig(**small, **eager))
    yield "hf_distilbert_cls", lm(T.DistilBertForSequenceClassification, T.DistilBertConfig(vocab_size=1000, dim=64, n_layers=2, n_heads=2, hidden_dim=128, num_labels=3, **eager), labels="class")
    yield "hf_albert_narrow_mlm", lm(T.AlbertForMaskedLM, T.AlbertConfig(vocab_size=1000, embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, **eager))
    yield "hf_electra_narrow_cls", lm(T.ElectraForSequenceClassification, T.ElectraConfig(**small, embedding_size=32, num_labels=3, **eager), labels="class")
    yield "hf_mobilebert_cls", lm(T.MobileBertForSequenceClassification, T.MobileBertConfig(vocab_size=1000, num_hidden_layers=2, num_labels=3, **eager), labels="class")
    yield "hf_gpt2_narrow", lm(T.GPT2LMHeadModel, T.GPT2Config(vocab_size=1000, n_positions=64, n_embd=64, n_layer=2, n_head=2, **eager))
    yield "hf_gpt2_small", lm(T.GPT2LMHeadModel, T.GPT2Config(n_layer=2, **eager))
    yield "hf_opt_narrow", lm(T.OPTForCausalLM, T.OPTConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, ffn_dim=128, num_attention_heads=2, word_embed_proj_dim=64, **eager))
    yield "hf_llama_narrow", lm(T.LlamaForCausalLM, T.LlamaConfig(**small, num_key_value_heads=2, **eager))
    yield "hf_qwen2_narrow", lm(T.Qwen2ForCausalLM, T.Qwen2Config(**small, num_key_value_heads=1, **eager))
    yield "hf_gpt_neox_narrow", lm(T.GPTNeoXForCausalLM, T.GPTNeoXConfig(**small, **eager))
    yield "hf_t5_narrow", seq2seq(T.T5ForConditionalGeneration, T.T5Config(vocab_size=1000, decoder_start_token_id=0, pad_token_id=0, d_model=64, d_kv=32, d_ff=128, num_layers=2, num_heads=2, **eager))
    yield "hf_bart_narrow", seq2seq(T.BartForConditionalGeneration, T.BartConfig(vocab_size=1000, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=64, **eager))
    yield "hf_vit_narrow", vision(T.ViTForImageClassification, T.ViTConfig(image_size=32, patch_size=8, num_labels=10, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, **eager))
    yield "hf_convnext_narrow", vision(T.ConvNextForImageClassification, T.ConvNextConfig(hidden_sizes=[32, 64, 96, 128], depths=[1, 1, 2, 1], num_labels=10), side=64)
    yield "hf_swin_narrow", vision(T.SwinForImageClassification, T.SwinConfig(image_size=32, patch_size=4, embed_dim=32, depths=[1, 1], num_heads=[2, 4], window_size=4, num_labels=10, **eager))


def mlp(widths, init, act=torch.nn.ReLU):
    layers = []
    for a, b in zip(widths, widths[1:]):
        lin = torch.nn.Linear(a, b)
        init(lin)
        layers += [lin, act()]
    return torch.nn.Sequential(*layers[:-1])


def bad_models():
    """Scales nobody uses, as the published bugs set them."""

    def normal(std, mean=0.0):
        def init(lin):
            torch.nn.init.normal_(lin.weight, mean, std)
            torch.nn.init.zeros_(lin.bias)

        return init

    def make(widths, init, act=torch.nn.ReLU, side=None):
        def build():
            torch.manual_seed(0)
            m = ClassifierLoss(torch.nn.Sequential(torch.nn.Flatten(), mlp(widths, init, act)))
            x = torch.randn(BATCH * 8, widths[0])
            return m, (x, torch.randint(0, widths[-1], (BATCH * 8,)))

        return build

    yield "bad_std3_sigmoid", make([32, 64, 64, 10], normal(3.0), torch.nn.Sigmoid)
    yield "bad_unit_variance_fan512", make([512, 512, 256, 10], normal(1.0))
    yield "bad_std001", make([256, 256, 256, 10], normal(0.01))
    # `normal_(w, 0.02, 1.0)`: the arguments are (mean, std), written as (std, mean).
    yield "bad_swapped_mean_std", make([128, 128, 128, 10], normal(1.0, mean=0.02))


def corpus():
    for gen in (torchvision_models, timm_models, transformers_models, bad_models):
        yield from gen()


def export_all(out, only=None):
    os.makedirs(out, exist_ok=True)
    for i, (name, make) in enumerate(corpus()):
        if only and name not in only:
            continue
        # Every model exported with dynamo in training mode; every third also
        # in eval mode and every fourth with TorchScript, so both exporters
        # and both modes appear across libraries.
        variants = [("dynamo", True)]
        if i % 3 == 0:
            variants.append(("dynamo", False))
        if i % 4 == 0:
            variants.append(("torchscript", True))
        for exporter, train in variants:
            path = os.path.join(out, f"{name}_{exporter}_{'train' if train else 'eval'}.onnx")
            if os.path.exists(path):
                continue
            started = time.time()
            try:
                torch.manual_seed(0)
                model, args = make()
                export_or_raise(copy.deepcopy(model), args, path, exporter == "dynamo", train)
                print(f"{os.path.basename(path)}: {time.time() - started:.1f} s", flush=True)
            except Exception as e:  # an exporter limitation is a fact to report, not a crash
                print(f"FAILED {os.path.basename(path)}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}", flush=True)
                for stale in (path, path + ".data"):
                    if os.path.exists(stale):
                        os.remove(stale)
                if exporter == "dynamo" and ("torchscript", train) not in variants:
                    # torch.export cannot trace some seq2seq models' generation
                    # config checks; their TorchScript export stands in.
                    variants.append(("torchscript", train))


# What each bad init must fire: the rules that judge an initialization.
MUST_FIRE = {"init-scale", "initial-loss", "activation-scale", "saturated-activation", "dead-relu", "constant-weights"}


def lint_all(out, binary):
    models = sorted(f for f in os.listdir(out) if f.endswith(".onnx"))
    warned, not_untrained, bad, bad_ok = [], [], 0, 0
    skipped = {"probe": 0, "backward": 0, "fit": 0, "cut": 0}
    slowest = (0.0, "")
    for f in models:
        path = os.path.join(out, f)
        started = time.time()
        run = subprocess.run([binary, "--format", "json-report", "--color", "never", path], capture_output=True, text=True)
        seconds = time.time() - started
        try:
            report = json.loads(run.stdout)["files"][0]
        except (ValueError, KeyError, IndexError):
            print(f"{f}: exit {run.returncode}: {run.stderr.strip()[:200]}")
            warned.append(f)
            continue
        slowest = max(slowest, (seconds, f))
        notes = [x.get("message", "") for x in report.get("findings", []) if x.get("rule") == "probe-skipped"]
        for key, start in (
            ("probe", "the probe did not run"),
            ("backward", "the backward pass did not run"),
            ("fit", "the one-batch fit did not run"),
            ("cut", "the one-batch fit stopped after"),
        ):
            skipped[key] += any(n.startswith(start) for n in notes)
        state = report.get("coverage", {}).get("state", {})
        label = state.get("state", "?")
        findings = report.get("findings", [])
        loud = [x for x in findings if x.get("severity") in ("warning", "error")]
        rules = sorted({x.get("rule") for x in findings})
        print(f"{f}: {label} ({state.get('evidence', '')}); {seconds:.1f} s")
        for x in findings:
            print(f"    {x.get('severity')}[{x.get('code')}] {x.get('rule')}: {x.get('message')}")
        if f.startswith("bad_"):
            bad += 1
            if label == "untrained" and MUST_FIRE & set(rules):
                bad_ok += 1
            else:
                print(f"  BAD INIT NOT CAUGHT: {f}")
            continue
        if loud:
            warned.append(f)
        if label != "untrained":
            not_untrained.append(f)
    healthy = len(models) - bad
    print(
        f"real architectures: {healthy} models, {len(warned)} with warnings, {len(not_untrained)} not untrained; "
        f"bad inits: {bad_ok} of {bad} untrained and firing"
    )
    ran = len(models) - skipped["probe"] - skipped["backward"] - skipped["fit"]
    print(
        f"probes: {len(models)} files; forward skipped on {skipped['probe']}, backward skipped on {skipped['backward']}; "
        f"one-batch fit run on {ran} ({100 * ran / max(len(models), 1):.0f}%), cut by its budget on {skipped['cut']}; "
        f"slowest {slowest[0]:.1f} s ({slowest[1]})"
    )
    return 1 if warned or not_untrained or bad_ok < bad else 0


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "lint"
    out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/nnlint-arch"
    if what == "export":
        export_all(out, set(sys.argv[3:]) or None)
        return 0
    binary = os.environ.get("NNLINT", os.path.join(ROOT, "target", "release", "nnlint"))
    return lint_all(out, binary)


if __name__ == "__main__":
    sys.exit(main())
