#!/usr/bin/env python3
"""Write the models that measure nnlint's cost budgets (benches/shipped_models.py lints them).

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install onnx==1.23.2 onnxruntime==1.31.1 numpy==2.4.6
    /tmp/fx/bin/python benches/cost_models.py /tmp/nnlint-shipped/generated

The cases behind the cost issue, re-created at their sizes (weights are
seeded He-normal draws, so nnlint takes them as untrained and runs every
probe, the most it can do):
- two detectors over about 900x900 images, dynamically quantized with
  onnxruntime's `quantize_dynamic` (ConvInteger, DynamicQuantizeLinear, as
  ddddocr ships them): an FPN-like backbone and a plain VGG-like one;
- a long-audio classifier over 30 s of 16 kHz waveform (480,000 samples) with
  a dynamic batch: a stride-1 learned filterbank, then strided Conv1d
  blocks, pooling and a linear head, as tf2onnx writes Keras' audio models.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(0)


def he(shape):
    fan_in = int(np.prod(shape[1:]))
    return (RNG.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


class Net:
    def __init__(self):
        self.nodes, self.inits = [], []

    def conv(self, x, cin, cout, k, stride, name, rank=2):
        w = numpy_helper.from_array(he((cout, cin) + (k,) * rank), f"{name}.weight")
        b = numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}.bias")
        self.inits += [w, b]
        out = f"{name}.out"
        self.nodes.append(helper.make_node(
            "Conv", [x, w.name, b.name], [out], name=name,
            kernel_shape=[k] * rank, strides=[stride] * rank, pads=[k // 2] * (2 * rank)))
        return out

    def relu(self, x, name):
        self.nodes.append(helper.make_node("Relu", [x], [f"{name}.out"], name=name))
        return f"{name}.out"

    def add(self, a, b, name):
        self.nodes.append(helper.make_node("Add", [a, b], [f"{name}.out"], name=name))
        return f"{name}.out"

    def save(self, path, inputs, outputs):
        graph = helper.make_graph(self.nodes, os.path.basename(path), inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, path)


def detector_fpn(path):
    """A backbone of strided stages, a top-down path that upsamples and adds, a head per level."""
    n = Net()
    x, c = "image", 3
    levels = []
    for i, cout in enumerate([16, 32, 64, 96, 128]):
        x = n.relu(n.conv(x, c, cout, 3, 2, f"stage{i}.down"), f"stage{i}.act0")
        x = n.relu(n.conv(x, cout, cout, 3, 1, f"stage{i}.conv"), f"stage{i}.act1")
        c = cout
        levels.append((x, cout))
    top = n.conv(levels[-1][0], levels[-1][1], 64, 1, 1, "lateral4")
    outs = []
    for i in range(3, 1, -1):
        lat = n.conv(levels[i][0], levels[i][1], 64, 1, 1, f"lateral{i}")
        up = f"up{i}.out"
        n.nodes.append(helper.make_node("Resize", [top, "", "scales2"], [up], name=f"up{i}", mode="nearest"))
        # The odd sizes of a 900x900 input: crop the upsampled map to the lateral's.
        shape = f"lat{i}.shape"
        n.nodes.append(helper.make_node("Shape", [lat], [shape], name=f"lat{i}.shape"))
        crop = f"up{i}.crop"
        n.nodes.append(helper.make_node("Slice", [up, "zeros4", shape], [crop], name=f"up{i}.crop"))
        top = n.add(lat, crop, f"merge{i}")
        outs.append(n.conv(n.relu(top, f"head{i}.act"), 64, 6, 3, 1, f"head{i}"))
    n.inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales2"))
    n.inits.append(numpy_helper.from_array(np.zeros(4, np.int64), "zeros4"))
    n.save(path,
           [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 896, 896])],
           [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["batch", 6, f"h{i}", f"w{i}"]) for i, o in enumerate(outs)])


def detector_vgg(path):
    """Pairs of 3x3 convs at full resolution, then pooled: the costly layers come first."""
    n = Net()
    x, c = "image", 3
    for i, cout in enumerate([16, 32, 64, 64]):
        x = n.relu(n.conv(x, c, cout, 3, 1, f"block{i}.conv0"), f"block{i}.act0")
        x = n.relu(n.conv(x, cout, cout, 3, 1, f"block{i}.conv1"), f"block{i}.act1")
        pooled = f"block{i}.pool"
        n.nodes.append(helper.make_node("MaxPool", [x], [pooled], name=pooled, kernel_shape=[2, 2], strides=[2, 2]))
        x, c = pooled, cout
    out = n.conv(x, c, 5, 1, 1, "head")
    n.save(path,
           [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 928, 928])],
           [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", 5, 58, 58])])


def long_audio(path):
    """30 s of waveform: a stride-1 filterbank, strided Conv1d blocks, pooling, a linear head."""
    n = Net()
    x = n.relu(n.conv("waveform", 1, 32, 9, 1, "filterbank", rank=1), "filterbank.act")
    c = 32
    for i, cout in enumerate([32, 64, 64, 128]):
        x = n.relu(n.conv(x, c, cout, 9, 4, f"block{i}", rank=1), f"block{i}.act")
        c = cout
    pooled = "pool.out"
    n.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled], name="pool"))
    flat = "flat.out"
    n.nodes.append(helper.make_node("Flatten", [pooled], [flat], name="flat"))
    w = numpy_helper.from_array((he((c, 10)) / np.sqrt(2)).astype(np.float32), "head.weight")
    b = numpy_helper.from_array(np.zeros(10, np.float32), "head.bias")
    n.inits += [w, b]
    n.nodes.append(helper.make_node("Gemm", [flat, w.name, b.name], ["logits"], name="head"))
    n.save(path,
           [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["unk__0", 1, 480000])],
           [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["unk__0", 10])])


def main():
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/nnlint-shipped/generated"
    os.makedirs(out, exist_ok=True)
    for name, make in [("detector_fpn", detector_fpn), ("detector_vgg", detector_vgg)]:
        floating = os.path.join(out, f"{name}_float.onnx")
        make(floating)
        quantized = os.path.join(out, f"{name}_quantized.onnx")
        quantize_dynamic(floating, quantized, op_types_to_quantize=["Conv"], weight_type=QuantType.QUInt8)
        ops = sorted({node.op_type for node in onnx.load(quantized).graph.node})
        print(quantized, ", ".join(ops))
    long_audio(os.path.join(out, "long_audio.onnx"))
    print(os.path.join(out, "long_audio.onnx"))


if __name__ == "__main__":
    main()
