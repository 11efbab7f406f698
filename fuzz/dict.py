"""Writes fuzz/onnx.dict, the libFuzzer dictionary of the binary targets:
the protobuf keys of the ONNX fields nnlint reads, op names, attribute
names and the strings of external data.

    python3 fuzz/dict.py
"""

import os

OPS = """Abs Add And ArgMax AveragePool BatchNormalization Cast Ceil Clip Concat Constant
ConstantOfShape Conv ConvInteger ConvTranspose Div Dropout DynamicQuantizeLinear Einsum Elu Equal
Erf Exp Expand Flatten Floor Gather Gemm GlobalAveragePool Greater HardSigmoid HardSwish Identity
If LayerNormalization LeakyRelu Less Log LogSoftmax Loop MatMul Max MaxPool Mean Min Mul Neg
NegativeLogLikelihoodLoss NonZero Not OneHot Or Pad Pow Range Reciprocal ReduceMax ReduceMean
ReduceSum Relu Reshape Resize Scan Shape Sigmoid Slice Softmax SoftmaxCrossEntropyLoss Softplus
Split Sqrt Squeeze Sub Sum Tanh Tile Transpose Unsqueeze Upsample Where""".split()

ATTRS = """axis axes epsilon momentum training_mode value to perm keepdims ratio seed alpha beta
transA transB kernel_shape pads strides dilations group mode reduction ignore_index then_branch
else_branch body""".split()

# name: (field number, wire type), from onnx.proto as src/onnx/proto.rs declares it
KEYS = {
    "model_ir_version": (1, 0), "model_graph": (7, 2), "model_opset": (8, 2),
    "model_functions": (25, 2), "graph_node": (1, 2), "graph_name": (2, 2),
    "graph_initializer": (5, 2), "graph_input": (11, 2), "graph_output": (12, 2),
    "graph_value_info": (13, 2), "graph_sparse_initializer": (15, 2), "node_op_type": (4, 2),
    "node_attribute": (5, 2), "node_domain": (7, 2), "attr_f": (2, 5), "attr_i": (3, 0),
    "attr_t": (5, 2), "attr_g": (6, 2), "attr_type": (20, 0), "tensor_dims": (1, 0),
    "tensor_data_type": (2, 0), "tensor_float_data": (4, 2), "tensor_int64_data": (7, 2),
    "tensor_raw_data": (9, 2), "tensor_external_data": (13, 2), "tensor_data_location": (14, 0),
    "type_tensor": (1, 2), "shape_dim": (1, 2), "dim_value": (1, 0), "dim_param": (2, 2),
}

STRINGS = {
    "domain_training": "ai.onnx.preview.training", "domain_ml": "ai.onnx.ml",
    "ext_location": "location", "ext_offset": "offset", "ext_length": "length",
}


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def main():
    lines = ["# ONNX protobuf keys and names for libFuzzer; written by fuzz/dict.py"]
    for name, (field, wire) in KEYS.items():
        key = "".join(f"\\x{b:02x}" for b in varint(field << 3 | wire))
        lines.append(f'{name}="{key}"')
    lines += [f'op_{op}="{op}"' for op in OPS]
    lines += [f'attr_{a}="{a}"' for a in ATTRS]
    lines += [f'{k}="{v}"' for k, v in STRINGS.items()]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx.dict")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
