//! The ONNX textual syntax: parsing what onnx.printer and nnlint print,
//! errors at the right place, and no panic on mangled text.

use crate::common;

use crate::common::nnlint;

use std::path::{Path, PathBuf};

use nnlint::onnx::printer::{print_model, Values};
use nnlint::onnx::proto::ModelProto;
use nnlint::onnx::text::parse_model;

/// Every model the fixtures hold, binary ones.
fn binary_fixtures() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in [
        "fixtures/torch",
        "fixtures/invalid",
        "fixtures/handmade",
        "fixtures/python",
        "fixtures/diff",
        "fixtures/architectures",
        "fixtures/third_party",
    ] {
        v.extend(common::files(Path::new(dir), ".onnx"));
    }
    v
}

#[test]
fn everything_onnx_printer_wrote_parses_and_prints_back_identically() {
    let mut refs = Vec::new();
    refs.extend(common::files(
        Path::new("fixtures/reference/printer"),
        ".txt",
    ));
    assert!(refs.len() > 300);
    for r in &refs {
        let text = std::fs::read_to_string(r).unwrap();
        let (model, _) = parse_model(&text).unwrap_or_else(|e| panic!("{}: {e:?}", r.display()));
        let again = print_model(&model, Values::Full).text;
        assert_eq!(
            again.strip_suffix('\n'),
            Some(text.as_str()),
            "{}",
            r.display()
        );
    }
}

/// The graph as the issue defines "the same": nodes (with attributes) and
/// their edges, graph inputs and outputs, and initializer names, types and dims.
fn graph_of(m: &ModelProto) -> String {
    let mut m = m.clone();
    let decoder =
        nnlint::onnx::Model::from_proto(Path::new("decode.onnx"), ModelProto::default()).unwrap();
    // Tensor attributes compare by value: raw_data and the typed fields hold the same numbers.
    let canonical = |t: &mut nnlint::onnx::proto::TensorProto| {
        let values = decoder
            .values_f64(t)
            .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        *t = nnlint::onnx::proto::TensorProto {
            name: t.name.clone(),
            dims: t.dims.clone(),
            data_type: t.data_type,
            doc_string: format!("{values:?}"),
            ..Default::default()
        };
    };
    // Subgraphs (If and Loop bodies) too: their Constants may store values
    // as raw bytes that the text syntax writes as numbers.
    fn strip(
        g: &mut nnlint::onnx::proto::GraphProto,
        canonical: &dyn Fn(&mut nnlint::onnx::proto::TensorProto),
    ) {
        for n in &mut g.node {
            // The text syntax has no place for these.
            n.doc_string.clear();
            n.metadata_props.clear();
            for a in &mut n.attribute {
                a.t.as_deref_mut()
                    .into_iter()
                    .chain(a.tensors.iter_mut())
                    .for_each(canonical);
                for sub in a.g.as_deref_mut().into_iter().chain(a.graphs.iter_mut()) {
                    strip(sub, canonical);
                }
            }
        }
        for v in g.input.iter_mut().chain(g.output.iter_mut()) {
            v.doc_string.clear();
            v.metadata_props.clear();
            // An empty type and no type print alike: the name alone.
            if v.r#type.as_ref().is_some_and(|t| t.value.is_none()) {
                v.r#type = None;
            }
        }
        for t in &mut g.initializer {
            *t = nnlint::onnx::proto::TensorProto {
                name: t.name.clone(),
                dims: t.dims.clone(),
                data_type: t.data_type,
                ..Default::default()
            };
        }
    }
    if let Some(g) = m.graph.as_mut() {
        strip(g, &canonical);
    }
    format!(
        "{:?}\n{:?}\n{:?}",
        m.graph.as_ref().map(|g| (&g.node, &g.input, &g.output)),
        m.graph.as_ref().map(|g| &g.initializer),
        m.opset_import
    )
}

#[test]
fn every_fixture_round_trips_through_print_and_parse() {
    let fixtures = binary_fixtures();
    assert!(fixtures.len() > 300);
    for f in &fixtures {
        let model = nnlint::onnx::load(f).unwrap();
        let text = print_model(&model.proto, Values::Full).text;
        let (parsed, _) = parse_model(&text).unwrap_or_else(|e| panic!("{}: {e:?}", f.display()));
        assert_eq!(graph_of(&parsed), graph_of(&model.proto), "{}", f.display());
        // And printing the parsed model is stable.
        assert_eq!(
            print_model(&parsed, Values::Full).text,
            text,
            "{}",
            f.display()
        );
    }
}

#[test]
fn onnx_parser_accepts_what_nnlint_prints() {
    // Recorded by fixtures/generate.py, which feeds `nnlint print --values` of every
    // fixture to onnx.parser.parse_model.
    let record = std::fs::read_to_string("fixtures/reference/onnx-parser-accepts.txt").unwrap();
    let accepted: Vec<&str> = record
        .lines()
        .filter_map(|l| l.strip_suffix(": ok"))
        .collect();
    let rejected: Vec<&str> = record
        .lines()
        .filter(|l| !l.ends_with(": ok") && !l.starts_with('#'))
        .collect();
    assert!(rejected.is_empty(), "onnx.parser rejected: {rejected:#?}");
    for f in [
        "fixtures/torch/dropout_bn_mlp_dynamo_train.onnx",
        "fixtures/torch/dropout_bn_mlp_torchscript_train.onnx",
    ] {
        assert!(accepted.contains(&f), "{f} was not checked");
    }
    assert!(accepted.len() > 150);
}

#[test]
fn a_syntax_error_in_a_long_file_is_reported_at_its_line_and_column() {
    // 200 lines: a Relu chain, with the closing parenthesis of line 150 missing.
    let mut text = String::from(
        "<ir_version: 10, opset_import: [\"\" : 20]>\ng (float[4] t0) => (float[4] t196) {\n",
    );
    for i in 1..=196 {
        if i + 2 == 150 {
            text.push_str(&format!("    t{i} = Relu (t{}\n", i - 1));
        } else {
            text.push_str(&format!("    t{i} = Relu (t{})\n", i - 1));
        }
    }
    text.push_str("}\n# end\n");
    assert_eq!(text.lines().count(), 200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.onnxtxt");
    std::fs::write(&path, &text).unwrap();
    let p = path.to_str().unwrap();
    let short = nnlint(&["--format", "short", p]);
    assert_eq!(short.status.code(), Some(2));
    // The parser notices at the next token: line 151, column 5 (`t149`).
    assert_eq!(
        String::from_utf8_lossy(&short.stdout),
        format!("{p}:151:5: error[NN000]: expected `)` after node inputs, found `t149`\n")
    );
    let human = String::from_utf8_lossy(&nnlint(&[p]).stdout).to_string();
    assert!(
        human.starts_with("error[NN000]: expected `)` after node inputs, found `t149`"),
        "{human}"
    );
    assert!(human.contains(&format!("┌─ {p}:151:5")), "{human}");
    assert!(human.contains("151 │     t149 = Relu (t148)"), "{human}");
}

#[test]
fn text_models_point_at_their_own_lines() {
    let out = nnlint(&[
        "--format",
        "short",
        "fixtures/text/softmax_single_class.onnxtxt",
    ]);
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let text = std::fs::read_to_string("fixtures/text/softmax_single_class.onnxtxt").unwrap();
    let src_line = text.lines().position(|l| l.contains("= Softmax")).unwrap() + 1;
    let col = text
        .lines()
        .nth(src_line - 1)
        .unwrap()
        .find("Softmax")
        .unwrap()
        + 1;
    assert!(
        line.starts_with(&format!(
            "fixtures/text/softmax_single_class.onnxtxt:{src_line}:{col}: error[NN105]"
        )),
        "{line}"
    );
    // Folders are searched for .onnxtxt too.
    let all = String::from_utf8_lossy(&nnlint(&["--format", "short", "fixtures/text"]).stdout)
        .to_string();
    assert!(all.lines().count() >= 7);
}

/// A small deterministic generator, so mutations are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

#[test]
fn mutated_text_never_panics() {
    let mut seeds: Vec<String> = Vec::new();
    let mut texts = Vec::new();
    texts.extend(common::files(Path::new("fixtures/text"), ".onnxtxt"));
    for t in &texts {
        seeds.push(std::fs::read_to_string(t).unwrap());
    }
    for f in [
        "fixtures/torch/dropout_bn_mlp_dynamo_train.onnx",
        "fixtures/torch/init_scale_small_tanh_torchscript_train.onnx",
    ] {
        let m = nnlint::onnx::load(Path::new(f)).unwrap();
        seeds.push(print_model(&m.proto, Values::Full).text);
    }
    let alphabet: Vec<char> = "()[]{}<>,:=@.?\"#\\-+0123456789eE_aZ \n=>"
        .chars()
        .collect();
    let mut rng = Lcg(7);
    let mut runs = 0;
    let mut parsed = 0;
    for seed in &seeds {
        let chars: Vec<char> = seed.chars().collect();
        for _ in 0..600 {
            let mut c = chars.clone();
            for _ in 0..=(rng.next() % 3) {
                let at = rng.next() % c.len().max(1);
                match rng.next() % 4 {
                    0 if !c.is_empty() => {
                        c.remove(at);
                    }
                    1 => c.insert(at.min(c.len()), alphabet[rng.next() % alphabet.len()]),
                    2 if !c.is_empty() => c[at] = alphabet[rng.next() % alphabet.len()],
                    _ => c.truncate(at),
                }
            }
            let text: String = c.into_iter().collect();
            runs += 1;
            if let Ok((proto, source)) = parse_model(&text) {
                parsed += 1;
                // Whatever parses must also survive the rest of the pipeline.
                if let Ok(model) =
                    nnlint::onnx::Model::from_proto(Path::new("mutant.onnxtxt"), proto)
                {
                    let report = nnlint::lint_source(&model, source, &Default::default());
                    let mut sink = Vec::new();
                    nnlint::diag::render::render(
                        nnlint::diag::render::Format::Human,
                        &nnlint::report(Default::default(), vec![report]),
                        &Default::default(),
                        &mut sink,
                    )
                    .unwrap();
                }
            }
        }
    }
    assert!(runs >= 5000, "{runs}");
    assert!(parsed > 0 && parsed < runs, "{parsed} of {runs} parsed");
    // Deep nesting is refused, not a stack overflow.
    let deep = format!(
        "g () => () {{ y = If (c) <then_branch: graph = {}",
        "g () => () { y = If (c) <then_branch: graph = ".repeat(500)
    );
    assert!(parse_model(&deep).is_err());
}

#[test]
fn hand_written_text_prints_back_stably_and_onnx_parser_agrees_on_it() {
    // print(parse(text)) is a fixed point after one step, for every text fixture.
    let mut texts = Vec::new();
    texts.extend(common::files(Path::new("fixtures/text"), ".onnxtxt"));
    let mut parsed = 0;
    for t in &texts {
        let Ok((model, _)) = parse_model(&std::fs::read_to_string(t).unwrap()) else {
            continue; // syntax_error.onnxtxt
        };
        let once = print_model(&model, Values::Full).text;
        let (again, _) = parse_model(&once).unwrap_or_else(|e| panic!("{}: {e:?}", t.display()));
        assert_eq!(
            print_model(&again, Values::Full).text,
            once,
            "{}",
            t.display()
        );
        parsed += 1;
    }
    assert_eq!(parsed, texts.len() - 1);
    let (m, _) = parse_model(
        &std::fs::read_to_string("fixtures/text/functions_and_attributes.onnxtxt").unwrap(),
    )
    .unwrap();
    assert_eq!(m.functions.len(), 1);
    assert_eq!(m.functions[0].attribute, vec!["alpha".to_string()]);
    assert_eq!(m.metadata_props[1].value, "a \"quoted\" value");
}
