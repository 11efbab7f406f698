//! Writes the graphs of the scaling benchmark (benches/scaling.py): a family
//! of real layers repeated until the graph has about NODES nodes, with
//! seeded Kaiming-uniform weights, so that every rule and the probe look at
//! every layer as they would in an untrained model.
//!
//!     cargo run --release --example scaling_graph -- FAMILY NODES OUT.onnx
//!
//! Families:
//! - `chain`: Gemm, Relu, repeated (the graph-size benchmark's model);
//! - `residual`: Gemm, Relu, Add of the block's input, repeated;
//! - `transformer`: pre-norm blocks of LayerNormalization, single-head
//!   attention (q, k, v and output projections, scaled scores, softmax) and
//!   a Gelu MLP, each added back to the stream, then a head and a
//!   cross-entropy loss over integer labels.
//!
//! Written with nnlint's own protobuf types, so that the CI guard needs no
//! Python packages.

use nnlint::onnx::proto::tensor_shape_proto::{dimension, Dimension};
use nnlint::onnx::proto::{
    data_type, type_proto, AttributeProto, AttributeType, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use prost::Message;

/// Width of every layer: small, so that the graph, not the arithmetic, is
/// what grows.
const WIDTH: i64 = 16;
/// Tokens per sequence in `transformer`.
const TOKENS: i64 = 4;

struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    seed: u64,
}

impl Builder {
    fn uniform(&mut self) -> f32 {
        // xorshift64*: a fixed sequence, the same on every machine.
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        let bits = self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        (bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn tensor(&mut self, name: &str, dims: &[i64], values: Vec<f32>) -> String {
        self.inits.push(TensorProto {
            name: name.to_string(),
            dims: dims.to_vec(),
            data_type: data_type::FLOAT,
            float_data: values,
            ..Default::default()
        });
        name.to_string()
    }

    /// A `[fan_out, fan_in]` weight drawn as `nn.Linear` draws it.
    fn weight(&mut self, name: &str, fan_in: i64, fan_out: i64) -> String {
        let bound = (6.0 / fan_in as f32).sqrt();
        let values = (0..fan_in * fan_out)
            .map(|_| self.uniform() * bound)
            .collect();
        self.tensor(name, &[fan_out, fan_in], values)
    }

    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) {
        let name = format!("node_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(name),
            op_type: op.to_string(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// `x @ W.T + b` through Gemm (2-D) or MatMul and Add (3-D).
    fn linear(&mut self, x: &str, name: &str, rank3: bool) -> String {
        let w = self.weight(&format!("{name}.weight"), WIDTH, WIDTH);
        let b = self.tensor(&format!("{name}.bias"), &[WIDTH], vec![0.0; WIDTH as usize]);
        let out = format!("{name}.out");
        if rank3 {
            let wt = format!("{name}.weight_t");
            self.node("Transpose", &[&w], &wt, vec![ints("perm", &[1, 0])]);
            let mm = format!("{name}.mm");
            self.node("MatMul", &[x, &wt], &mm, vec![]);
            self.node("Add", &[&mm, &b], &out, vec![]);
        } else {
            self.node("Gemm", &[x, &w, &b], &out, vec![int("transB", 1)]);
        }
        out
    }

    fn layer_norm(&mut self, x: &str, name: &str) -> String {
        let scale = self.tensor(
            &format!("{name}.weight"),
            &[WIDTH],
            vec![1.0; WIDTH as usize],
        );
        let shift = self.tensor(&format!("{name}.bias"), &[WIDTH], vec![0.0; WIDTH as usize]);
        let out = format!("{name}.out");
        self.node(
            "LayerNormalization",
            &[x, &scale, &shift],
            &out,
            vec![int("axis", -1)],
        );
        out
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Param(p) => dimension::Value::DimParam(p.to_string()),
                Dim::Value(v) => dimension::Value::DimValue(*v),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

enum Dim {
    Param(&'static str),
    Value(i64),
}

fn build(family: &str, target: usize) -> Result<GraphProto, String> {
    let mut b = Builder {
        nodes: Vec::new(),
        inits: Vec::new(),
        seed: 0x9e37_79b9_7f4a_7c15,
    };
    let batch = Dim::Param("N");
    let (inputs, outputs) = match family {
        "chain" | "residual" => {
            let mut x = "x".to_string();
            let mut i = 0;
            while b.nodes.len() < target {
                let h = b.linear(&x, &format!("fc{i}"), false);
                let a = format!("relu{i}.out");
                b.node("Relu", &[&h], &a, vec![]);
                x = if family == "residual" {
                    let s = format!("res{i}.out");
                    b.node("Add", &[&x, &a], &s, vec![]);
                    s
                } else {
                    a
                };
                i += 1;
            }
            (
                vec![value_info(
                    "x",
                    data_type::FLOAT,
                    &[batch, Dim::Value(WIDTH)],
                )],
                vec![value_info(
                    &x,
                    data_type::FLOAT,
                    &[Dim::Param("N"), Dim::Value(WIDTH)],
                )],
            )
        }
        "transformer" => {
            let scale = b.tensor("attn_scale", &[], vec![1.0 / (WIDTH as f32).sqrt()]);
            let mut x = "x".to_string();
            let mut i = 0;
            // About 30 nodes a block; the head and loss are 3 more.
            while b.nodes.len() + 3 < target {
                let p = format!("blocks.{i}");
                let n = b.layer_norm(&x, &format!("{p}.ln1"));
                let q = b.linear(&n, &format!("{p}.attn.q"), true);
                let k = b.linear(&n, &format!("{p}.attn.k"), true);
                let v = b.linear(&n, &format!("{p}.attn.v"), true);
                let kt = format!("{p}.attn.k_t");
                b.node("Transpose", &[&k], &kt, vec![ints("perm", &[0, 2, 1])]);
                let s = format!("{p}.attn.scores");
                b.node("MatMul", &[&q, &kt], &s, vec![]);
                let ss = format!("{p}.attn.scaled");
                b.node("Mul", &[&s, &scale], &ss, vec![]);
                let a = format!("{p}.attn.probs");
                b.node("Softmax", &[&ss], &a, vec![int("axis", -1)]);
                let c = format!("{p}.attn.context");
                b.node("MatMul", &[&a, &v], &c, vec![]);
                let o = b.linear(&c, &format!("{p}.attn.out"), true);
                let r1 = format!("{p}.res1");
                b.node("Add", &[&x, &o], &r1, vec![]);
                let n2 = b.layer_norm(&r1, &format!("{p}.ln2"));
                let f1 = b.linear(&n2, &format!("{p}.mlp.fc1"), true);
                let g = format!("{p}.mlp.gelu");
                b.node("Gelu", &[&f1], &g, vec![]);
                let f2 = b.linear(&g, &format!("{p}.mlp.fc2"), true);
                let r2 = format!("{p}.res2");
                b.node("Add", &[&r1, &f2], &r2, vec![]);
                x = r2;
                i += 1;
            }
            let logits = b.linear(&x, "head", true);
            let by_class = "logits_by_class";
            b.node(
                "Transpose",
                &[&logits],
                by_class,
                vec![ints("perm", &[0, 2, 1])],
            );
            b.node(
                "SoftmaxCrossEntropyLoss",
                &[by_class, "labels"],
                "loss",
                vec![],
            );
            (
                vec![
                    value_info(
                        "x",
                        data_type::FLOAT,
                        &[batch, Dim::Value(TOKENS), Dim::Value(WIDTH)],
                    ),
                    value_info(
                        "labels",
                        data_type::INT64,
                        &[Dim::Param("N"), Dim::Value(TOKENS)],
                    ),
                ],
                vec![value_info("loss", data_type::FLOAT, &[])],
            )
        }
        other => {
            return Err(format!(
                "unknown family `{other}`: chain, residual or transformer"
            ))
        }
    };
    Ok(GraphProto {
        name: family.to_string(),
        node: b.nodes,
        initializer: b.inits,
        input: inputs,
        output: outputs,
        ..Default::default()
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [family, nodes, out] = args.as_slice() else {
        eprintln!("usage: scaling_graph FAMILY NODES OUT.onnx");
        std::process::exit(2);
    };
    let Ok(nodes) = nodes.parse::<usize>() else {
        eprintln!("scaling_graph: NODES must be a whole number, not `{nodes}`");
        std::process::exit(2);
    };
    let graph = match build(family, nodes) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("scaling_graph: {e}");
            std::process::exit(2);
        }
    };
    let count = graph.node.len();
    let model = ModelProto {
        ir_version: 10,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 20,
        }],
        producer_name: Some("nnlint scaling_graph".to_string()),
        graph: Some(graph),
        ..Default::default()
    };
    if let Err(e) = std::fs::write(out, model.encode_to_vec()) {
        eprintln!("scaling_graph: cannot write {out}: {e}");
        std::process::exit(1);
    }
    println!("{out} {count} nodes");
}
