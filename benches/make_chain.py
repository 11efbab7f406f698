#!/usr/bin/env python3
"""Write an N-node Gemm/Relu chain with inline weights, the graph-size benchmark model.

    /tmp/fx/bin/python benches/make_chain.py 100000 /tmp/nnlint-bench/chain_100k.onnx

Each Gemm has its own 16x16 weight and 16 bias (He-scaled, seeded), followed by
a Relu, so every node is a real layer that every rule looks at.
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    nodes_total = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    out = sys.argv[2] if len(sys.argv) > 2 else f"/tmp/nnlint-bench/chain_{nodes_total // 1000}k.onnx"
    rng = np.random.default_rng(0)
    width = 16
    nodes, inits = [], []
    prev = "x"
    for i in range(nodes_total // 2):
        w = numpy_helper.from_array((rng.standard_normal((width, width)) * np.sqrt(2 / width)).astype(np.float32), f"w{i}")
        b = numpy_helper.from_array(np.zeros(width, dtype=np.float32), f"b{i}")
        inits += [w, b]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"h{i}"], name=f"gemm{i}", transB=1))
        # A LayerNorm-free chain this deep is exactly what missing-normalization reports;
        # the benchmark measures cost, not findings.
        nodes.append(helper.make_node("Relu", [f"h{i}"], [f"a{i}"], name=f"relu{i}"))
        prev = f"a{i}"
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    onnx.save(model, out)
    print(out, len(nodes), "nodes")


if __name__ == "__main__":
    main()
