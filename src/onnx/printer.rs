//! The ONNX textual syntax, written the way `onnx.printer.to_text` writes it.
//!
//! With [`Values::Elide`] (what `nnlint print` and diagnostics use) initializers
//! are listed by type and name only, and large tensor attributes by type only,
//! so the listing of a 500 MB model stays small. [`Values::Full`] writes every
//! value. While printing, the printer records where every node, value and graph
//! lands, which is what diagnostics on binary models point at.

use std::fmt::Write as _;

use super::external::is_external;
use super::proto::{
    data_type as dt, tensor_shape_proto::dimension::Value as Dim, type_proto::Value as Ty,
    AttributeProto, AttributeType, FunctionProto, GraphProto, ModelProto, NodeProto,
    StringStringEntryProto, TensorProto, TypeProto, ValueInfoProto,
};
use super::source::{NodeSpan, ScopeId, ScopeStep, Source};

/// How tensor values are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    /// Initializers without values; tensor attributes with more than
    /// [`ELIDE_ABOVE`] elements without values.
    Elide,
    /// Every value, as `onnx.printer` does.
    Full,
}

/// Tensor attributes up to this many elements keep their values in an elided listing.
pub const ELIDE_ABOVE: usize = 16;

/// Prints a model and records the positions of what it printed.
pub fn print_model(m: &ModelProto, values: Values) -> Source {
    let mut p = Printer {
        out: String::new(),
        indent: 3,
        values,
        src: Source::default(),
    };
    p.model(m);
    let mut src = p.src;
    src.text = p.out;
    src
}

struct Printer {
    out: String,
    indent: usize,
    values: Values,
    src: Source,
}

impl Printer {
    fn pad(&mut self, width: usize) {
        // C++ `std::setw(width) << ' '`: at least one space.
        for _ in 0..width.max(1) {
            self.out.push(' ');
        }
    }

    fn model(&mut self, m: &ModelProto) {
        self.out.push_str("<\n");
        self.pad(self.indent);
        let _ = write!(self.out, "ir_version: {}", m.ir_version);
        self.out.push_str(",\n");
        self.pad(self.indent);
        self.out.push_str("opset_import: ");
        let start = self.out.len();
        self.out.push('[');
        for (i, o) in m.opset_import.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.quoted(&o.domain);
            let _ = write!(self.out, " : {}", o.version);
        }
        self.out.push(']');
        self.src.opset = start..self.out.len();
        let strings = [
            ("producer_name", &m.producer_name),
            ("producer_version", &m.producer_version),
            ("domain", &m.domain),
        ];
        for (key, v) in strings {
            if let Some(v) = v {
                self.key(key);
                self.quoted(v);
            }
        }
        if let Some(v) = m.model_version {
            self.key("model_version");
            let _ = write!(self.out, "{v}");
        }
        if let Some(v) = &m.doc_string {
            self.key("doc_string");
            self.quoted(v);
        }
        if !m.metadata_props.is_empty() {
            self.key("metadata_props");
            self.props(&m.metadata_props);
        }
        self.out.push_str("\n>\n");
        if let Some(g) = &m.graph {
            self.graph(g, &ScopeId::default());
        }
        for (i, f) in m.functions.iter().enumerate() {
            self.out.push('\n');
            self.function(f, &ScopeId(vec![ScopeStep::Function(i as u32)]));
        }
        self.out.push('\n');
    }

    fn key(&mut self, key: &str) {
        self.out.push_str(",\n");
        self.pad(self.indent);
        self.out.push_str(key);
        self.out.push_str(": ");
    }

    fn props(&mut self, props: &[StringStringEntryProto]) {
        self.out.push('[');
        for (i, p) in props.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.quoted(&p.key);
            self.out.push_str(": ");
            self.quoted(&p.value);
        }
        self.out.push(']');
    }

    fn graph(&mut self, g: &GraphProto, scope: &ScopeId) {
        let start = self.out.len();
        self.id(&g.name);
        self.out.push(' ');
        self.value_infos(&g.input, scope);
        self.out.push_str(" => ");
        self.value_infos(&g.output, scope);
        self.src.graphs.insert(scope.clone(), start..self.out.len());
        self.out.push(' ');
        if !g.initializer.is_empty() || !g.value_info.is_empty() {
            self.out.push('\n');
            self.pad(self.indent);
            self.out.push('<');
            let mut sep = "";
            for t in &g.initializer {
                self.out.push_str(sep);
                self.tensor(t, true, scope);
                sep = ", ";
            }
            for vi in &g.value_info {
                self.out.push_str(sep);
                self.type_proto(vi.r#type.as_ref());
                self.out.push(' ');
                self.id(&vi.name);
                sep = ", ";
            }
            self.out.push_str(">\n");
        }
        self.nodes(&g.node, scope);
    }

    fn value_infos(&mut self, vis: &[ValueInfoProto], scope: &ScopeId) {
        self.out.push('(');
        for (i, vi) in vis.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.type_proto(vi.r#type.as_ref());
            self.out.push(' ');
            let start = self.out.len();
            self.id(&vi.name);
            self.record_value(scope, &vi.name, start);
        }
        self.out.push(')');
    }

    fn record_value(&mut self, scope: &ScopeId, name: &str, start: usize) {
        let end = self.out.len();
        let values = match self.src.values.get_mut(scope) {
            Some(v) => v,
            None => self.src.values.entry(scope.clone()).or_default(),
        };
        if !values.contains_key(name) {
            values.insert(name.to_string(), start..end);
        }
    }

    fn nodes(&mut self, nodes: &[NodeProto], scope: &ScopeId) {
        self.out.push_str("{\n");
        for (i, n) in nodes.iter().enumerate() {
            self.node(n, i, scope);
        }
        if self.indent > 3 {
            self.pad((self.indent - 3).max(3));
        }
        self.out.push('}');
    }

    fn node(&mut self, n: &NodeProto, index: usize, scope: &ScopeId) {
        self.pad(self.indent);
        let stmt_start = self.out.len();
        if let Some(name) = &n.name {
            self.out.push('[');
            self.id(name);
            self.out.push_str("] ");
        }
        self.id_list(&n.output);
        self.out.push_str(" = ");
        let op_start = self.out.len();
        if !n.domain.is_empty() {
            self.out.push_str(&n.domain);
            self.out.push('.');
        }
        self.out.push_str(&n.op_type);
        if !n.overload.is_empty() {
            self.out.push(':');
            self.out.push_str(&n.overload);
        }
        let op = op_start..self.out.len();
        let has_subgraph = n
            .attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty());
        if !has_subgraph && !n.attribute.is_empty() {
            self.attributes(&n.attribute, index, scope);
        }
        self.out.push_str(" (");
        self.id_list(&n.input);
        self.out.push(')');
        let call = op_start..self.out.len();
        if has_subgraph && !n.attribute.is_empty() {
            self.attributes(&n.attribute, index, scope);
        }
        let stmt = stmt_start..self.out.len();
        self.out.push('\n');
        let spans = match self.src.nodes.get_mut(scope) {
            Some(v) => v,
            None => self.src.nodes.entry(scope.clone()).or_default(),
        };
        debug_assert_eq!(spans.len(), index, "nodes are printed in order");
        spans.push(NodeSpan { stmt, op, call });
    }

    fn attributes(&mut self, attrs: &[AttributeProto], node: usize, scope: &ScopeId) {
        self.out.push_str(" <");
        for (i, a) in attrs.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.attribute(a, node, i, scope);
        }
        self.out.push('>');
    }

    fn attribute(&mut self, a: &AttributeProto, node: usize, index: usize, scope: &ScopeId) {
        let ty = attribute_type(a);
        self.out.push_str(&a.name);
        self.out.push_str(": ");
        self.out.push_str(attribute_type_name(ty));
        self.out.push_str(" = ");
        if let Some(r) = &a.ref_attr_name {
            self.out.push('@');
            self.out.push_str(r);
            return;
        }
        let sub = |graph: usize| {
            scope.child(ScopeStep::Node {
                node: node as u32,
                attr: index as u32,
                graph: graph as u32,
            })
        };
        match ty {
            AttributeType::Int => {
                let _ = write!(self.out, "{}", a.i);
            }
            AttributeType::Ints => self.list(a.ints.iter().map(|v| v.to_string()), ", "),
            AttributeType::Float => self.out.push_str(&format_f32(a.f)),
            AttributeType::Floats => self.list(a.floats.iter().map(|v| format_f32(*v)), ", "),
            AttributeType::String => self.quoted(&String::from_utf8_lossy(&a.s)),
            AttributeType::Strings => {
                self.out.push('[');
                for (i, s) in a.strings.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.quoted(&String::from_utf8_lossy(s));
                }
                self.out.push(']');
            }
            AttributeType::Graph => {
                if let Some(g) = &a.g {
                    self.indent += 3;
                    self.graph(g, &sub(0));
                    self.indent -= 3;
                }
            }
            AttributeType::Graphs => {
                self.indent += 3;
                self.out.push('[');
                for (i, g) in a.graphs.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.graph(g, &sub(i));
                }
                self.out.push(']');
                self.indent -= 3;
            }
            AttributeType::Tensor => {
                if let Some(t) = &a.t {
                    self.tensor(t, false, scope);
                }
            }
            AttributeType::Tensors => {
                self.out.push('[');
                for (i, t) in a.tensors.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.tensor(t, false, scope);
                }
                self.out.push(']');
            }
            AttributeType::TypeProto => self.type_proto(a.tp.as_deref()),
            AttributeType::TypeProtos => {
                self.out.push('[');
                for (i, t) in a.type_protos.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.type_proto(Some(t));
                }
                self.out.push(']');
            }
            AttributeType::SparseTensor
            | AttributeType::SparseTensors
            | AttributeType::Undefined => {}
        }
    }

    fn tensor(&mut self, t: &TensorProto, is_initializer: bool, scope: &ScopeId) {
        self.out.push_str(dt::name(t.data_type));
        if !t.dims.is_empty() {
            self.list_with(t.dims.iter().map(|d| d.to_string()), "[", ",", "]");
        }
        if !t.name.is_empty() {
            self.out.push(' ');
            let start = self.out.len();
            self.id(&t.name);
            if is_initializer {
                self.record_value(scope, &t.name, start);
            }
        }
        if self.values == Values::Elide {
            let small = super::values::element_count(t).is_ok_and(|n| n <= ELIDE_ABOVE);
            if is_initializer || !small {
                return;
            }
        }
        if is_initializer {
            self.out.push_str(" = ");
        }
        if is_external(t) {
            self.props(&t.external_data);
        } else if let Some(raw) = &t.raw_data {
            self.raw_values(t.data_type, raw);
        } else {
            self.typed_values(t);
        }
    }

    fn raw_values(&mut self, ty: i32, raw: &[u8]) {
        macro_rules! each {
            ($w:expr, $f:expr) => {{
                let f = $f;
                self.list_with(raw.chunks_exact($w).map(f), " {", ",", "}")
            }};
        }
        fn a<const N: usize>(c: &[u8]) -> [u8; N] {
            let mut x = [0u8; N];
            x.copy_from_slice(c);
            x
        }
        match ty {
            dt::INT8 => each!(1, |c: &[u8]| (c[0] as i8).to_string()),
            dt::UINT8
            | dt::BOOL
            | dt::FLOAT8E4M3FN
            | dt::FLOAT8E4M3FNUZ
            | dt::FLOAT8E5M2
            | dt::FLOAT8E5M2FNUZ
            | dt::FLOAT8E8M0 => each!(1, |c: &[u8]| c[0].to_string()),
            dt::INT16 => each!(2, |c: &[u8]| i16::from_le_bytes(a(c)).to_string()),
            dt::UINT16 | dt::FLOAT16 | dt::BFLOAT16 => {
                each!(2, |c: &[u8]| u16::from_le_bytes(a(c)).to_string())
            }
            dt::INT32 => each!(4, |c: &[u8]| i32::from_le_bytes(a(c)).to_string()),
            dt::UINT32 => each!(4, |c: &[u8]| u32::from_le_bytes(a(c)).to_string()),
            dt::INT64 => each!(8, |c: &[u8]| i64::from_le_bytes(a(c)).to_string()),
            dt::UINT64 => each!(8, |c: &[u8]| u64::from_le_bytes(a(c)).to_string()),
            dt::FLOAT => each!(4, |c: &[u8]| format_f32(f32::from_le_bytes(a(c)))),
            dt::DOUBLE => each!(8, |c: &[u8]| format_f64(f64::from_le_bytes(a(c)))),
            _ => self.out.push_str("..."),
        }
    }

    fn typed_values(&mut self, t: &TensorProto) {
        let (o, s, c) = (" {", ",", "}");
        match t.data_type {
            dt::INT8
            | dt::INT16
            | dt::INT32
            | dt::UINT8
            | dt::UINT16
            | dt::BOOL
            | dt::FLOAT16
            | dt::BFLOAT16
            | dt::FLOAT8E4M3FN
            | dt::FLOAT8E4M3FNUZ
            | dt::FLOAT8E5M2
            | dt::FLOAT8E5M2FNUZ
            | dt::FLOAT8E8M0 => self.list_with(t.int32_data.iter().map(|v| v.to_string()), o, s, c),
            dt::INT64 => self.list_with(t.int64_data.iter().map(|v| v.to_string()), o, s, c),
            dt::UINT32 | dt::UINT64 => {
                self.list_with(t.uint64_data.iter().map(|v| v.to_string()), o, s, c)
            }
            dt::FLOAT => self.list_with(t.float_data.iter().map(|v| format_f32(*v)), o, s, c),
            dt::DOUBLE => self.list_with(t.double_data.iter().map(|v| format_f64(*v)), o, s, c),
            dt::STRING => {
                self.out.push('{');
                for (i, v) in t.string_data.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.quoted(&String::from_utf8_lossy(v));
                }
                self.out.push('}');
            }
            _ => self.out.push_str("..."),
        }
    }

    fn type_proto(&mut self, t: Option<&TypeProto>) {
        let Some(value) = t.and_then(|t| t.value.as_ref()) else {
            return;
        };
        match value {
            Ty::TensorType(tt) => self.tensor_type(tt),
            Ty::SparseTensorType(tt) => {
                self.out.push_str("sparse_tensor(");
                self.tensor_type(tt);
                self.out.push(')');
            }
            Ty::SequenceType(s) => {
                self.out.push_str("seq(");
                self.type_proto(s.elem_type.as_deref());
                self.out.push(')');
            }
            Ty::MapType(m) => {
                self.out.push_str("map(");
                self.out.push_str(dt::name(m.key_type));
                self.out.push_str(", ");
                self.type_proto(m.value_type.as_deref());
                self.out.push(')');
            }
            Ty::OptionalType(o) => {
                self.out.push_str("optional(");
                self.type_proto(o.elem_type.as_deref());
                self.out.push(')');
            }
            Ty::OpaqueType(o) => {
                self.out.push_str("opaque(");
                if !o.domain.is_empty() {
                    self.out.push_str(&o.domain);
                    self.out.push(',');
                }
                self.out.push_str(&o.name);
                self.out.push(')');
            }
        }
    }

    fn tensor_type(&mut self, tt: &super::proto::type_proto::Tensor) {
        self.out.push_str(dt::name(tt.elem_type));
        match &tt.shape {
            Some(shape) if !shape.dim.is_empty() => {
                self.out.push('[');
                for (i, d) in shape.dim.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    match &d.value {
                        Some(Dim::DimValue(v)) => {
                            let _ = write!(self.out, "{v}");
                        }
                        Some(Dim::DimParam(p)) => self.id(p),
                        None => self.out.push('?'),
                    }
                }
                self.out.push(']');
            }
            Some(_) => {}
            None => self.out.push_str("[]"),
        }
    }

    fn function(&mut self, f: &FunctionProto, scope: &ScopeId) {
        self.out.push_str("<\n  domain: ");
        self.quoted(&f.domain);
        self.out.push_str(",\n");
        if !f.overload.is_empty() {
            self.out.push_str("  overload: ");
            self.quoted(&f.overload);
            self.out.push_str(",\n");
        }
        self.out.push_str("  opset_import: [");
        for (i, o) in f.opset_import.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.quoted(&o.domain);
            let _ = write!(self.out, " : {}", o.version);
        }
        self.out.push_str("]\n>\n");
        let start = self.out.len();
        self.id(&f.name);
        self.out.push(' ');
        if !f.attribute.is_empty() {
            self.list_with(f.attribute.iter().cloned(), "<", ",", ">");
        }
        self.out.push('(');
        self.id_list(&f.input);
        self.out.push_str(") => (");
        self.id_list(&f.output);
        self.out.push(')');
        self.src.graphs.insert(scope.clone(), start..self.out.len());
        self.out.push('\n');
        self.nodes(&f.node, scope);
    }

    fn id_list(&mut self, ids: &[String]) {
        for (i, s) in ids.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.id(s);
        }
    }

    fn list(&mut self, items: impl Iterator<Item = String>, sep: &str) {
        self.list_with(items, "[", sep, "]");
    }

    fn list_with(
        &mut self,
        items: impl Iterator<Item = String>,
        open: &str,
        sep: &str,
        close: &str,
    ) {
        self.out.push_str(open);
        for (i, s) in items.enumerate() {
            if i > 0 {
                self.out.push_str(sep);
            }
            self.out.push_str(&s);
        }
        self.out.push_str(close);
    }

    fn id(&mut self, s: &str) {
        if is_identifier(s) {
            self.out.push_str(s);
        } else {
            self.quoted(s);
        }
    }

    fn quoted(&mut self, s: &str) {
        self.out.push('"');
        for ch in s.chars() {
            if ch == '\\' || ch == '"' {
                self.out.push('\\');
            }
            self.out.push(ch);
        }
        self.out.push('"');
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the names the text syntax writes unquoted.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The attribute's type, inferred from its fields when an old writer left it unset.
pub fn attribute_type(a: &AttributeProto) -> AttributeType {
    match AttributeType::try_from(a.r#type) {
        Ok(AttributeType::Undefined) | Err(_) => {
            if a.g.is_some() {
                AttributeType::Graph
            } else if !a.graphs.is_empty() {
                AttributeType::Graphs
            } else if a.t.is_some() {
                AttributeType::Tensor
            } else if !a.tensors.is_empty() {
                AttributeType::Tensors
            } else if !a.floats.is_empty() {
                AttributeType::Floats
            } else if !a.ints.is_empty() {
                AttributeType::Ints
            } else if !a.strings.is_empty() {
                AttributeType::Strings
            } else if !a.s.is_empty() {
                AttributeType::String
            } else if a.f != 0.0 {
                AttributeType::Float
            } else {
                AttributeType::Int
            }
        }
        Ok(t) => t,
    }
}

pub fn attribute_type_name(t: AttributeType) -> &'static str {
    match t {
        AttributeType::Undefined => "undefined",
        AttributeType::Float => "float",
        AttributeType::Int => "int",
        AttributeType::String => "string",
        AttributeType::Tensor => "tensor",
        AttributeType::Graph => "graph",
        AttributeType::SparseTensor => "sparse_tensor",
        AttributeType::TypeProto => "type_proto",
        AttributeType::Floats => "floats",
        AttributeType::Ints => "ints",
        AttributeType::Strings => "strings",
        AttributeType::Tensors => "tensors",
        AttributeType::Graphs => "graphs",
        AttributeType::SparseTensors => "sparse_tensors",
        AttributeType::TypeProtos => "type_protos",
    }
}

/// Shortest round-trip text, fixed or scientific whichever is shorter, as
/// C++'s `std::to_chars(float)` writes it (`0.3`, `1e-05`, `1e+20`).
pub fn format_f32(v: f32) -> String {
    to_chars(
        v.is_nan(),
        v.is_sign_negative(),
        v.is_infinite(),
        format!("{v}"),
        format!("{v:e}"),
    )
}

pub fn format_f64(v: f64) -> String {
    to_chars(
        v.is_nan(),
        v.is_sign_negative(),
        v.is_infinite(),
        format!("{v}"),
        format!("{v:e}"),
    )
}

fn to_chars(nan: bool, neg: bool, inf: bool, fixed: String, sci: String) -> String {
    if nan {
        return if neg { "-nan" } else { "nan" }.into();
    }
    if inf {
        return if neg { "-inf" } else { "inf" }.into();
    }
    // Rust writes `1.5e-5`; C writes the exponent with a sign and at least two digits.
    let sci = match sci.split_once('e') {
        Some((mant, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mant}e{sign}{digits:0>2}")
        }
        None => sci,
    };
    if sci.len() < fixed.len() {
        sci
    } else {
        fixed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_to_chars() {
        assert_eq!(format_f32(0.3), "0.3");
        assert_eq!(format_f32(1e-5), "1e-05");
        assert_eq!(format_f32(1.0), "1");
        assert_eq!(format_f32(0.9), "0.9");
        assert_eq!(format_f32(1e20), "1e+20");
        assert_eq!(format_f32(123456.0), "123456");
        assert_eq!(format_f32(-0.0001), "-1e-04");
        assert_eq!(format_f32(0.001), "0.001");
        assert_eq!(format_f32(f32::NAN), "nan");
        assert_eq!(format_f64(1e-7), "1e-07");
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("fc1_weight"));
        assert!(!is_identifier("fc1.weight"));
        assert!(!is_identifier("/fc1/Gemm"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("1x"));
    }
}
