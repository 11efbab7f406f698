//! Reading the ONNX textual syntax (`.onnxtxt`), as `onnx.parser` reads it.
//!
//! The grammar is onnx's `docs/Syntax.md`, plus what `onnx.printer` writes
//! (`op:overload`, `float[]` for an unknown shape, `-nan`). The parser builds
//! the same prost messages the binary reader decodes, and records where each
//! node, value and graph is in the user's text, so diagnostics on a text model
//! point at the user's own lines. Errors carry their span; nothing panics, and
//! nesting is bounded so hostile input cannot overflow the stack.

use std::ops::Range;

use super::proto::{
    data_type as dt, tensor_shape_proto::dimension::Value as DimValue,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, AttributeType, DataLocation,
    FunctionProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::source::{NodeSpan, ScopeId, ScopeStep, Source};

/// Graphs nested deeper than this are refused.
const MAX_DEPTH: usize = 64;

/// A syntax error at a span of the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub span: Range<usize>,
    pub message: String,
}

type Result<T> = std::result::Result<T, SyntaxError>;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Id(String),
    Str(String),
    Num(String),
    Punct(char),
    Arrow,
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    span: Range<usize>,
}

fn lex(text: &str) -> Result<Vec<Token>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let tok = if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            Tok::Id(text[start..i].to_string())
        } else if c.is_ascii_digit()
            || ((c == b'-' || c == b'+' || c == b'.')
                && bytes
                    .get(i + 1)
                    .is_some_and(|n| n.is_ascii_digit() || *n == b'.' || *n == b'n' || *n == b'i'))
        {
            i += 1;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric()
                    || bytes[i] == b'.'
                    || ((bytes[i] == b'-' || bytes[i] == b'+')
                        && matches!(bytes[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            Tok::Num(text[start..i].to_string())
        } else if c == b'"' {
            i += 1;
            let mut s = String::new();
            loop {
                match bytes.get(i) {
                    None => {
                        return Err(SyntaxError {
                            span: start..text.len(),
                            message: "unterminated string".into(),
                        })
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < bytes.len() => {
                        let ch = text[i + 1..].chars().next().unwrap_or('\\');
                        s.push(ch);
                        i += 1 + ch.len_utf8();
                    }
                    Some(_) => {
                        let ch = text[i..].chars().next().unwrap_or('?');
                        s.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            Tok::Str(s)
        } else if c == b'=' && bytes.get(i + 1) == Some(&b'>') {
            i += 2;
            Tok::Arrow
        } else if b"()[]{}<>,:=@.?".contains(&c) {
            i += 1;
            Tok::Punct(c as char)
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(SyntaxError {
                span: i..i + ch.len_utf8(),
                message: format!("unexpected character `{ch}`"),
            });
        };
        out.push(Token {
            tok,
            span: start..i,
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        span: text.len()..text.len(),
    });
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    src: Source,
    depth: usize,
}

/// Parses a whole model, returning it with the positions of what it holds.
pub fn parse_model(text: &str) -> Result<(ModelProto, Source)> {
    let mut p = Parser {
        toks: lex(text)?,
        pos: 0,
        src: Source::default(),
        depth: 0,
    };
    let model = p.model()?;
    let mut src = p.src;
    src.text = text.to_string();
    Ok((model, src))
}

fn type_code(name: &str) -> Option<i32> {
    (1..=26).find(|&t| dt::name(t) == name)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Id(s) => format!("`{s}`"),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::Num(s) => format!("`{s}`"),
        Tok::Punct(c) => format!("`{c}`"),
        Tok::Arrow => "`=>`".into(),
        Tok::Eof => "end of file".into(),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].tok
    }

    fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.pos + k).min(self.toks.len() - 1)].tok
    }

    fn span(&self) -> Range<usize> {
        self.toks[self.pos.min(self.toks.len() - 1)].span.clone()
    }

    fn prev_end(&self) -> usize {
        self.toks[self.pos.saturating_sub(1)].span.end
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos.min(self.toks.len() - 1)].clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T> {
        Err(SyntaxError {
            span: self.span(),
            message: message.into(),
        })
    }

    fn is(&self, c: char) -> bool {
        *self.peek() == Tok::Punct(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.is(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn require(&mut self, c: char, what: &str) -> Result<Range<usize>> {
        if self.is(c) {
            Ok(self.bump().span)
        } else {
            self.err(format!(
                "expected `{c}` {what}, found {}",
                describe(self.peek())
            ))
        }
    }

    fn ident(&mut self, what: &str) -> Result<String> {
        match self.peek().clone() {
            Tok::Id(s) => {
                self.bump();
                Ok(s)
            }
            other => self.err(format!("expected {what}, found {}", describe(&other))),
        }
    }

    /// An identifier, quoted or not.
    fn name(&mut self, what: &str) -> Result<String> {
        match self.peek().clone() {
            Tok::Id(s) | Tok::Str(s) => {
                self.bump();
                Ok(s)
            }
            other => self.err(format!("expected {what}, found {}", describe(&other))),
        }
    }

    fn string(&mut self, what: &str) -> Result<String> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(s)
            }
            other => self.err(format!(
                "expected {what} (a quoted string), found {}",
                describe(&other)
            )),
        }
    }

    fn int(&mut self, what: &str) -> Result<i64> {
        let span = self.span();
        match self.peek().clone() {
            Tok::Num(s) => {
                self.bump();
                s.parse::<i64>().map_err(|_| SyntaxError {
                    span,
                    message: format!("expected {what} (an integer), found `{s}`"),
                })
            }
            other => self.err(format!(
                "expected {what} (an integer), found {}",
                describe(&other)
            )),
        }
    }

    fn float(&mut self) -> Result<f64> {
        let span = self.span();
        let text = match self.peek().clone() {
            Tok::Num(s) | Tok::Id(s) => s,
            other => return self.err(format!("expected a number, found {}", describe(&other))),
        };
        self.bump();
        let v = match text.as_str() {
            "nan" | "-nan" | "+nan" => f64::NAN,
            "inf" | "+inf" | "infinity" => f64::INFINITY,
            "-inf" | "-infinity" => f64::NEG_INFINITY,
            t => t.parse::<f64>().map_err(|_| SyntaxError {
                span,
                message: format!("expected a number, found `{t}`"),
            })?,
        };
        Ok(v)
    }

    // ---- model ------------------------------------------------------------

    fn model(&mut self) -> Result<ModelProto> {
        let mut m = ModelProto::default();
        if self.is('<') {
            self.model_header(&mut m)?;
        }
        m.graph = Some(self.graph(&ScopeId::default())?);
        while *self.peek() != Tok::Eof {
            let index = m.functions.len() as u32;
            m.functions.push(self.function(index)?);
        }
        if m.ir_version == 0 {
            m.ir_version = 10;
        }
        Ok(m)
    }

    fn model_header(&mut self, m: &mut ModelProto) -> Result<()> {
        self.require('<', "to open the model header")?;
        loop {
            let key_span = self.span();
            let key = self.ident("a header key")?;
            self.require(':', "after a header key")?;
            match key.as_str() {
                "ir_version" => m.ir_version = self.int("ir_version")?,
                "opset_import" => {
                    let start = self.span().start;
                    m.opset_import = self.opsets()?;
                    self.src.opset = start..self.prev_end();
                }
                "producer_name" => m.producer_name = Some(self.string("producer_name")?),
                "producer_version" => m.producer_version = Some(self.string("producer_version")?),
                "domain" => m.domain = Some(self.string("domain")?),
                "model_version" => m.model_version = Some(self.int("model_version")?),
                "doc_string" => m.doc_string = Some(self.string("doc_string")?),
                "metadata_props" => m.metadata_props = self.props()?,
                other => {
                    return Err(SyntaxError {
                        span: key_span,
                        message: format!("unknown model header key `{other}`"),
                    })
                }
            }
            if !self.eat(',') {
                break;
            }
        }
        self.require('>', "to close the model header")?;
        Ok(())
    }

    fn opsets(&mut self) -> Result<Vec<OperatorSetIdProto>> {
        self.delimited(('[', ']'), "opset_import", |p| {
            let domain = p.string("an opset domain")?;
            p.require(':', "between an opset domain and its version")?;
            let version = p.int("an opset version")?;
            Ok(OperatorSetIdProto { domain, version })
        })
    }

    fn props(&mut self) -> Result<Vec<StringStringEntryProto>> {
        self.delimited(('[', ']'), "a key-value list", |p| {
            let key = p.string("a key")?;
            p.require(':', "after a key")?;
            let value = p.string("a value")?;
            Ok(StringStringEntryProto { key, value })
        })
    }

    /// `open item, item, ... close`, possibly empty.
    fn delimited<T>(
        &mut self,
        (open, close): (char, char),
        what: &str,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.require(open, &format!("to open {what}"))?;
        let mut v = Vec::new();
        if !self.is(close) {
            loop {
                v.push(item(self)?);
                if !self.eat(',') {
                    break;
                }
            }
        }
        self.require(close, &format!("to close {what}"))?;
        Ok(v)
    }

    // ---- types --------------------------------------------------------------

    fn type_proto(&mut self) -> Result<TypeProto> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("types nested too deeply");
        }
        let span = self.span();
        let name = self.ident("a type")?;
        let value = match name.as_str() {
            "seq" | "optional" => {
                self.require('(', "after the type constructor")?;
                let inner = Box::new(self.type_proto()?);
                self.require(')', "to close the type")?;
                if name == "seq" {
                    type_proto::Value::SequenceType(Box::new(type_proto::Sequence {
                        elem_type: Some(inner),
                    }))
                } else {
                    type_proto::Value::OptionalType(Box::new(type_proto::Optional {
                        elem_type: Some(inner),
                    }))
                }
            }
            "map" => {
                self.require('(', "after `map`")?;
                let key_span = self.span();
                let key = self.ident("a map key type")?;
                let key_type = type_code(&key).ok_or(SyntaxError {
                    span: key_span,
                    message: format!("unknown element type `{key}`"),
                })?;
                self.require(',', "after the map key type")?;
                let value = Box::new(self.type_proto()?);
                self.require(')', "to close the map type")?;
                type_proto::Value::MapType(Box::new(type_proto::Map {
                    key_type,
                    value_type: Some(value),
                }))
            }
            "sparse_tensor" => {
                self.require('(', "after `sparse_tensor`")?;
                let t = self.tensor_type_after_name(None)?;
                self.require(')', "to close the sparse tensor type")?;
                type_proto::Value::SparseTensorType(t)
            }
            "opaque" => {
                self.require('(', "after `opaque`")?;
                let mut parts = Vec::new();
                while !self.is(')') {
                    parts.push(self.name("an opaque type name")?);
                    if !self.eat(',') {
                        break;
                    }
                }
                self.require(')', "to close the opaque type")?;
                let (domain, name) = match parts.as_slice() {
                    [d, n] => (d.clone(), n.clone()),
                    [n] => (String::new(), n.clone()),
                    _ => (String::new(), String::new()),
                };
                type_proto::Value::OpaqueType(type_proto::Opaque { domain, name })
            }
            _ => {
                let elem = type_code(&name).ok_or(SyntaxError {
                    span,
                    message: format!("unknown type `{name}`"),
                })?;
                type_proto::Value::TensorType(self.tensor_type_after_name(Some(elem))?)
            }
        };
        self.depth -= 1;
        Ok(TypeProto {
            value: Some(value),
            denotation: String::new(),
        })
    }

    /// `elem[dims]` after the element type name (read here when `elem` is `None`).
    fn tensor_type_after_name(&mut self, elem: Option<i32>) -> Result<type_proto::Tensor> {
        let elem_type = match elem {
            Some(e) => e,
            None => {
                let span = self.span();
                let name = self.ident("an element type")?;
                type_code(&name).ok_or(SyntaxError {
                    span,
                    message: format!("unknown element type `{name}`"),
                })?
            }
        };
        // `float` is a scalar (a shape with no dims); `float[]` has no shape.
        let shape = if self.eat('[') {
            if self.eat(']') {
                None
            } else {
                let mut dim = Vec::new();
                loop {
                    let value = match self.peek().clone() {
                        Tok::Punct('?') => {
                            self.bump();
                            None
                        }
                        Tok::Num(_) => Some(DimValue::DimValue(self.int("a dimension")?)),
                        Tok::Id(s) | Tok::Str(s) => {
                            self.bump();
                            Some(DimValue::DimParam(s))
                        }
                        other => {
                            return self
                                .err(format!("expected a dimension, found {}", describe(&other)))
                        }
                    };
                    dim.push(Dimension {
                        value,
                        denotation: String::new(),
                    });
                    if !self.eat(',') {
                        break;
                    }
                }
                self.require(']', "to close the dimensions")?;
                Some(TensorShapeProto { dim })
            }
        } else {
            Some(TensorShapeProto::default())
        };
        Ok(type_proto::Tensor { elem_type, shape })
    }

    // ---- tensors ------------------------------------------------------------

    /// A tensor constant: `type[dims] name? =? {data}`.
    fn tensor(&mut self) -> Result<TensorProto> {
        let span = self.span();
        let name = self.ident("a tensor type")?;
        let data_type = type_code(&name).ok_or(SyntaxError {
            span,
            message: format!("unknown element type `{name}`"),
        })?;
        let mut t = TensorProto {
            data_type,
            ..Default::default()
        };
        if self.eat('[') {
            if !self.is(']') {
                loop {
                    t.dims.push(self.int("a tensor dimension")?);
                    if !self.eat(',') {
                        break;
                    }
                }
            }
            self.require(']', "to close the tensor dimensions")?;
        }
        if matches!(self.peek(), Tok::Id(_) | Tok::Str(_)) {
            t.name = self.name("a tensor name")?;
        }
        self.eat('=');
        self.tensor_data(&mut t)?;
        Ok(t)
    }

    /// `{values}`, or `["location": ..]` for external data.
    fn tensor_data(&mut self, t: &mut TensorProto) -> Result<()> {
        if self.is('[') {
            t.external_data = self.props()?;
            t.data_location = Some(DataLocation::External as i32);
            Ok(())
        } else if self.is('{') {
            self.tensor_values(t)
        } else {
            self.err(format!(
                "expected `{{` with tensor values, found {}",
                describe(self.peek())
            ))
        }
    }

    fn tensor_values(&mut self, t: &mut TensorProto) -> Result<()> {
        self.require('{', "to open tensor values")?;
        if !self.is('}') {
            loop {
                match t.data_type {
                    dt::FLOAT | dt::COMPLEX64 => t.float_data.push(self.float()? as f32),
                    dt::DOUBLE | dt::COMPLEX128 => t.double_data.push(self.float()?),
                    dt::INT64 => t.int64_data.push(self.int("a tensor value")?),
                    dt::UINT32 | dt::UINT64 => {
                        let v = self.int("a tensor value")?;
                        t.uint64_data.push(v as u64);
                    }
                    dt::STRING => {
                        let s = self.string("a string value")?;
                        t.string_data.push(s.into_bytes().into());
                    }
                    _ => {
                        let v = self.int("a tensor value")?;
                        t.int32_data.push(v as i32);
                    }
                }
                if !self.eat(',') {
                    break;
                }
            }
        }
        self.require('}', "to close tensor values")?;
        Ok(())
    }

    // ---- graphs -------------------------------------------------------------

    fn value_infos(&mut self, scope: &ScopeId, what: &str) -> Result<Vec<ValueInfoProto>> {
        self.delimited(('(', ')'), &format!("the {what}"), |p| {
            // The type is optional, as in onnx.parser: a subgraph's outputs
            // often have none, and onnx.printer then writes the name alone.
            let ty = if p.next_is_type() {
                Some(p.type_proto()?)
            } else {
                None
            };
            let span = p.span();
            let name = p.name("a value name")?;
            p.record_value(scope, &name, span);
            Ok(ValueInfoProto {
                name,
                r#type: ty,
                ..Default::default()
            })
        })
    }

    /// Whether the next token starts a type: a type constructor or an element type.
    fn next_is_type(&mut self) -> bool {
        match self.peek() {
            Tok::Id(s) => {
                matches!(
                    s.as_str(),
                    "seq" | "optional" | "map" | "sparse_tensor" | "opaque"
                ) || type_code(s).is_some()
            }
            _ => false,
        }
    }

    fn record_value(&mut self, scope: &ScopeId, name: &str, span: Range<usize>) {
        let values = self.src.values.entry(scope.clone()).or_default();
        values.entry(name.to_string()).or_insert(span);
    }

    fn graph(&mut self, scope: &ScopeId) -> Result<GraphProto> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("graphs nested too deeply");
        }
        let start = self.span().start;
        let mut g = GraphProto {
            name: self.name("a graph name")?,
            ..Default::default()
        };
        g.input = self.value_infos(scope, "graph inputs")?;
        if *self.peek() != Tok::Arrow {
            return self.err(format!(
                "expected `=>` between graph inputs and outputs, found {}",
                describe(self.peek())
            ));
        }
        self.bump();
        g.output = self.value_infos(scope, "graph outputs")?;
        self.src
            .graphs
            .insert(scope.clone(), start..self.prev_end());
        if self.eat('<') {
            if !self.is('>') {
                loop {
                    let type_span = self.span();
                    let ty = self.type_proto()?;
                    let span = self.span();
                    let name = self.name("a value name")?;
                    if self.eat('=') {
                        let mut t = tensor_of(ty, name).ok_or(SyntaxError {
                            span: type_span,
                            message: "an initializer needs a tensor type with numeric dimensions"
                                .into(),
                        })?;
                        self.tensor_data(&mut t)?;
                        self.record_value(scope, &t.name, span);
                        g.initializer.push(t);
                    } else {
                        g.value_info.push(ValueInfoProto {
                            name,
                            r#type: Some(ty),
                            ..Default::default()
                        });
                    }
                    if !self.eat(',') {
                        break;
                    }
                }
            }
            self.require('>', "to close the initializer list")?;
        }
        g.node = self.nodes(scope)?;
        self.depth -= 1;
        Ok(g)
    }

    fn nodes(&mut self, scope: &ScopeId) -> Result<Vec<NodeProto>> {
        self.require('{', "to open the node list")?;
        let mut nodes = Vec::new();
        while !self.is('}') {
            if *self.peek() == Tok::Eof {
                return self.err("expected `}` to close the node list, found end of file");
            }
            let index = nodes.len();
            let (node, span) = self.node(scope, index)?;
            self.src.nodes.entry(scope.clone()).or_default().push(span);
            nodes.push(node);
        }
        self.require('}', "to close the node list")?;
        Ok(nodes)
    }

    fn node(&mut self, scope: &ScopeId, index: usize) -> Result<(NodeProto, NodeSpan)> {
        let start = self.span().start;
        let mut n = NodeProto::default();
        if self.eat('[') {
            n.name = Some(self.name("a node name")?);
            self.require(']', "after the node name")?;
        }
        if !self.is('=') {
            loop {
                n.output.push(self.name("a node output")?);
                if !self.eat(',') {
                    break;
                }
            }
        }
        self.require('=', "between node outputs and the operator")?;
        let op_start = self.span().start;
        let mut parts = vec![self.ident("an operator")?];
        while self.is('.') && matches!(self.peek_at(1), Tok::Id(_)) {
            self.bump();
            parts.push(self.ident("an operator")?);
        }
        n.op_type = parts.pop().unwrap_or_default();
        n.domain = parts.join(".");
        if self.eat(':') {
            self.eat(':');
            n.overload = self.name("an overload")?;
        }
        let op = op_start..self.prev_end();
        if self.is('<') {
            n.attribute = self.attributes(scope, index)?;
        }
        self.require('(', "to open node inputs")?;
        if !self.is(')') {
            loop {
                n.input.push(self.name("a node input")?);
                if !self.eat(',') {
                    break;
                }
            }
        }
        self.require(')', "after node inputs")?;
        let call = op_start..self.prev_end();
        if n.attribute.is_empty() && self.is('<') {
            n.attribute = self.attributes(scope, index)?;
        }
        let stmt = start..self.prev_end();
        Ok((n, NodeSpan { stmt, op, call }))
    }

    fn attributes(&mut self, scope: &ScopeId, node: usize) -> Result<Vec<AttributeProto>> {
        self.require('<', "to open attributes")?;
        let mut v = Vec::new();
        loop {
            let index = v.len();
            v.push(self.attribute(scope, node, index)?);
            if !self.eat(',') {
                break;
            }
        }
        self.require('>', "to close attributes")?;
        Ok(v)
    }

    fn attribute(&mut self, scope: &ScopeId, node: usize, index: usize) -> Result<AttributeProto> {
        let mut a = AttributeProto {
            name: self.ident("an attribute name")?,
            ..Default::default()
        };
        let mut declared = None;
        if self.eat(':') {
            let span = self.span();
            let ty = self.ident("an attribute type")?;
            declared = Some(attribute_type(&ty).ok_or(SyntaxError {
                span,
                message: format!("unknown attribute type `{ty}`"),
            })?);
        }
        self.require('=', "after the attribute name")?;
        if self.eat('@') {
            a.ref_attr_name = Some(self.ident("a referenced attribute")?);
            a.r#type = declared.unwrap_or(AttributeType::Undefined) as i32;
            return Ok(a);
        }
        let sub = |graph: usize| {
            scope.child(ScopeStep::Node {
                node: node as u32,
                attr: index as u32,
                graph: graph as u32,
            })
        };
        let ty = match declared {
            Some(t) => t,
            None => self.infer_attribute_type()?,
        };
        a.r#type = ty as i32;
        match ty {
            AttributeType::Int => a.i = self.int("an int attribute")?,
            AttributeType::Float => a.f = self.float()? as f32,
            AttributeType::String => a.s = self.string("a string attribute")?.into_bytes().into(),
            AttributeType::Tensor => a.t = Some(Box::new(self.tensor()?)),
            AttributeType::Graph => a.g = Some(Box::new(self.graph(&sub(0))?)),
            AttributeType::TypeProto => a.tp = Some(Box::new(self.type_proto()?)),
            AttributeType::Ints => a.ints = self.list(|p| p.int("an int"))?,
            AttributeType::Floats => a.floats = self.list(|p| Ok(p.float()? as f32))?,
            AttributeType::Strings => {
                a.strings = self
                    .list(|p| p.string("a string"))?
                    .into_iter()
                    .map(|s| s.into_bytes().into())
                    .collect()
            }
            AttributeType::Tensors => a.tensors = self.list(|p| p.tensor())?,
            AttributeType::TypeProtos => a.type_protos = self.list(|p| p.type_proto())?,
            AttributeType::Graphs => {
                let mut k = 0;
                a.graphs = self.list(|p| {
                    k += 1;
                    p.graph(&sub(k - 1))
                })?;
            }
            AttributeType::SparseTensor
            | AttributeType::SparseTensors
            | AttributeType::Undefined => {
                return self.err("sparse tensor attributes are not supported in the text syntax")
            }
        }
        Ok(a)
    }

    /// For an attribute written without `: type`, what its value looks like.
    fn infer_attribute_type(&self) -> Result<AttributeType> {
        Ok(match self.peek() {
            Tok::Num(s) if s.contains(['.', 'e', 'E', 'n', 'i']) => AttributeType::Float,
            Tok::Num(_) => AttributeType::Int,
            Tok::Str(_) => AttributeType::String,
            Tok::Id(s) if type_code(s).is_some() => AttributeType::Tensor,
            Tok::Id(_) => AttributeType::Graph,
            Tok::Punct('[') => match self.peek_at(1) {
                Tok::Num(s) if s.contains(['.', 'e', 'E']) => AttributeType::Floats,
                Tok::Num(_) | Tok::Punct(']') => AttributeType::Ints,
                Tok::Str(_) => AttributeType::Strings,
                Tok::Id(s) if type_code(s).is_some() => AttributeType::Tensors,
                _ => AttributeType::Graphs,
            },
            other => {
                return self.err(format!(
                    "expected an attribute value, found {}",
                    describe(other)
                ))
            }
        })
    }

    fn list<T>(&mut self, item: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        self.delimited(('[', ']'), "a list", item)
    }

    // ---- functions ----------------------------------------------------------

    fn function(&mut self, index: u32) -> Result<FunctionProto> {
        let scope = ScopeId(vec![ScopeStep::Function(index)]);
        let mut f = FunctionProto::default();
        if self.eat('<') {
            loop {
                let key_span = self.span();
                let key = self.ident("a function header key")?;
                self.require(':', "after a function header key")?;
                match key.as_str() {
                    "domain" => f.domain = self.string("the function domain")?,
                    "overload" => f.overload = self.string("the function overload")?,
                    "opset_import" => f.opset_import = self.opsets()?,
                    "doc_string" => f.doc_string = self.string("doc_string")?,
                    other => {
                        return Err(SyntaxError {
                            span: key_span,
                            message: format!("unknown function header key `{other}`"),
                        })
                    }
                }
                if !self.eat(',') {
                    break;
                }
            }
            self.require('>', "to close the function header")?;
        }
        let start = self.span().start;
        f.name = self.name("a function name")?;
        if self.eat('<') {
            loop {
                f.attribute.push(self.ident("a function attribute")?);
                if !self.eat(',') {
                    break;
                }
            }
            self.require('>', "to close the function attributes")?;
        }
        f.input = self.id_list("function inputs")?;
        if *self.peek() != Tok::Arrow {
            return self.err(format!(
                "expected `=>` between function inputs and outputs, found {}",
                describe(self.peek())
            ));
        }
        self.bump();
        f.output = self.id_list("function outputs")?;
        self.src
            .graphs
            .insert(scope.clone(), start..self.prev_end());
        if self.eat('<') {
            loop {
                let ty = self.type_proto()?;
                let name = self.name("a value name")?;
                f.value_info.push(ValueInfoProto {
                    name,
                    r#type: Some(ty),
                    ..Default::default()
                });
                if !self.eat(',') {
                    break;
                }
            }
            self.require('>', "to close the function value infos")?;
        }
        f.node = self.nodes(&scope)?;
        Ok(f)
    }

    fn id_list(&mut self, what: &str) -> Result<Vec<String>> {
        self.delimited(('(', ')'), &format!("the {what}"), |p| p.name("a name"))
    }
}

/// The tensor an initializer's declared type describes (numeric dims only).
fn tensor_of(ty: TypeProto, name: String) -> Option<TensorProto> {
    let Some(type_proto::Value::TensorType(tt)) = ty.value else {
        return None;
    };
    let dims = tt
        .shape
        .map(|s| s.dim)
        .unwrap_or_default()
        .into_iter()
        .map(|d| match d.value {
            Some(DimValue::DimValue(v)) => Some(v),
            _ => None,
        })
        .collect::<Option<Vec<i64>>>()?;
    Some(TensorProto {
        name,
        dims,
        data_type: tt.elem_type,
        ..Default::default()
    })
}

fn attribute_type(name: &str) -> Option<AttributeType> {
    Some(match name {
        "float" => AttributeType::Float,
        "int" => AttributeType::Int,
        "string" => AttributeType::String,
        "tensor" => AttributeType::Tensor,
        "graph" => AttributeType::Graph,
        "sparse_tensor" => AttributeType::SparseTensor,
        "type_proto" => AttributeType::TypeProto,
        "floats" => AttributeType::Floats,
        "ints" => AttributeType::Ints,
        "strings" => AttributeType::Strings,
        "tensors" => AttributeType::Tensors,
        "graphs" => AttributeType::Graphs,
        "sparse_tensors" => AttributeType::SparseTensors,
        "type_protos" => AttributeType::TypeProtos,
        _ => return None,
    })
}
