//! The command line as users and editors see it: formats, exit codes, bad input.

use crate::common::{self, nnlint, text};

use std::path::{Path, PathBuf};

use prost::Message;
use regex::Regex;

use nnlint::onnx::proto::{DataLocation, ModelProto, StringStringEntryProto, TensorProto};

const BUGGY: &str = "fixtures/torch/dropout_bn_mlp_torchscript_train.onnx";
const BUGGY_DYNAMO: &str = "fixtures/torch/dropout_bn_mlp_dynamo_train.onnx";
const CLEAN: &str = "fixtures/torch/bn_dropout_mlp_dynamo_train.onnx";
const SHORT: &str = r"^(.+):(\d+):(\d+): (error|warning|note)\[([A-Za-z0-9-]+)\]: (.+)$";

#[test]
fn buggy_model_warns_and_exits_1() {
    let out = nnlint(&[BUGGY]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("warning[NN301]: dropout feeds batch normalization"),
        "{stdout}"
    );
    assert!(stdout.contains("= help: move Dropout after BatchNormalization"));
    assert!(stdout.contains(&format!("┌─ {BUGGY}:14:")));
    assert!(out.stderr.is_empty());
}

#[test]
fn clean_model_prints_only_what_was_checked_and_exits_0() {
    for model in [CLEAN, "fixtures/torch/dropout_bn_mlp_dynamo_eval.onnx"] {
        let out = nnlint(&[model]);
        assert_eq!(out.status.code(), Some(0), "{model}");
        assert!(out.stderr.is_empty(), "{model}");
        // No finding: only the model's state and what its premises kept
        // the rules from seeing, each line naming the model.
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(&format!("{model}: the model looks untrained")),
            "{stdout}"
        );
        let (last, before) = stdout
            .lines()
            .collect::<Vec<_>>()
            .split_last()
            .map(|(l, b)| (*l, b.to_vec()))
            .unwrap();
        assert!(before.iter().all(|l| l.starts_with(model)), "{stdout}");
        assert_eq!(last, "All checks passed!", "{stdout}");
        let quiet = nnlint(&["--quiet", model]);
        assert!(
            quiet.stdout.is_empty() && quiet.stderr.is_empty(),
            "{model}"
        );
    }
}

#[test]
fn short_format_is_what_problem_matchers_read() {
    let out = nnlint(&[
        "--format",
        "short",
        "--location",
        "model",
        "fixtures/torch",
        "fixtures/invalid",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let re = Regex::new(SHORT).unwrap();
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 10, "{stdout}");
    for line in &lines {
        let c = re
            .captures(line)
            .unwrap_or_else(|| panic!("not a short line: {line}"));
        assert!(Path::new(&c[1]).exists(), "{line}");
        assert!(c[2].parse::<usize>().unwrap() >= 1 && c[3].parse::<usize>().unwrap() >= 1);
        assert!(
            !c[6].starts_with(char::is_uppercase) && !c[6].ends_with('.'),
            "{line}"
        );
    }
    assert!(lines.contains(
        &"fixtures/torch/dropout_bn_mlp_dynamo_train.onnx:12:39: warning[NN301]: dropout feeds batch normalization (variance shift)"
    ));
}

#[test]
fn json_format_has_the_documented_fields_and_agrees_with_short() {
    let json = nnlint(&[
        "--format",
        "json",
        "--location",
        "model",
        BUGGY_DYNAMO,
        "fixtures/invalid",
    ]);
    let short = nnlint(&[
        "--format",
        "short",
        "--location",
        "model",
        BUGGY_DYNAMO,
        "fixtures/invalid",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let items = v.as_array().unwrap();
    let short = text(&short.stdout);
    assert_eq!(items.len(), short.lines().count());
    let re = Regex::new(SHORT).unwrap();
    for (item, line) in items.iter().zip(short.lines()) {
        for key in [
            "file",
            "rule",
            "code",
            "severity",
            "message",
            "node",
            "line",
            "column",
            "end_line",
            "end_column",
            "notes",
        ] {
            assert!(item.get(key).is_some(), "missing {key} in {item}");
        }
        let c = re.captures(line).unwrap();
        assert_eq!(item["file"], c[1]);
        assert_eq!(item["line"].as_u64().unwrap().to_string(), c[2]);
        assert_eq!(item["column"].as_u64().unwrap().to_string(), c[3]);
        assert_eq!(item["severity"], c[4]);
        assert_eq!(item["code"], c[5]);
        assert_eq!(item["message"], c[6]);
    }
    // Sorted by file, then model, then position: fixtures/invalid comes first.
    let first = items
        .iter()
        .find(|i| i["model"]["file"] == BUGGY_DYNAMO)
        .unwrap();
    assert_eq!(first["rule"], "dropout-before-batchnorm");
    assert_eq!(first["node"], "node_native_dropout__1");
    assert_eq!(
        (first["line"].as_u64(), first["end_line"].as_u64()),
        (Some(12), Some(12))
    );
    assert!(first["end_column"].as_u64() > first["column"].as_u64());
}

/// The same models and options give the same bytes on one core as on all of
/// them. `short` and `human` format the same diagnostics as `json`, whose
/// findings carry their human rendering (and the fit's every step): one
/// pair of runs of the whole corpus covers all three.
#[test]
fn output_is_byte_for_byte_the_same_on_one_core_and_on_all() {
    let all = nnlint(&["--format", "json", "fixtures"]);
    let one = common::nnlint_on_one_core(&["--format", "json", "fixtures"]);
    assert!(text(&all.stdout).contains("\"rendered\""));
    assert!(all.stdout == one.stdout, "one core and all cores differ");
}

#[test]
fn select_and_ignore() {
    let only_invalid = nnlint(&["--format", "short", "--select", "invalid-graph", BUGGY]);
    assert_eq!(only_invalid.status.code(), Some(0));
    assert!(only_invalid.stdout.is_empty());
    let by_prefix = nnlint(&[
        "--format", "short", "--select", "NN3", "--ignore", "NN301", BUGGY,
    ]);
    assert!(by_prefix.stdout.is_empty());
    let by_code = nnlint(&[
        "--format", "short", "--select", "NN301", "--ignore", "NN3", BUGGY,
    ]);
    assert_eq!(text(&by_code.stdout).lines().count(), 1);
    let unknown = nnlint(&["--select", "no-such-rule", BUGGY]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("unknown rule selector `no-such-rule` in --select"));
}

#[test]
fn rules_and_explain() {
    let rules = text(&nnlint(&["rules"]).stdout);
    for r in nnlint::rules::all() {
        let m = r.meta();
        assert!(
            rules.contains(m.name) && rules.contains(m.code),
            "{}",
            m.name
        );
        for key in [m.name, m.code] {
            let out = nnlint(&["explain", key]);
            assert_eq!(out.status.code(), Some(0));
            assert!(text(&out.stdout).contains(m.explanation));
        }
    }
    assert_eq!(nnlint(&["explain", "nope"]).status.code(), Some(2));
}

#[test]
fn print_writes_the_listing_diagnostics_point_into() {
    let out = nnlint(&["print", BUGGY]);
    assert_eq!(out.status.code(), Some(0));
    let listing = text(&out.stdout);
    let line14 = listing.lines().nth(13).unwrap();
    assert!(line14.contains("= Dropout ("), "{line14}");
    // Initializers are listed without values.
    assert!(listing.contains("float[32,16] \"fc1.weight\","));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(nnlint(&[]).status.code(), Some(2));
    assert_eq!(nnlint(&["--format", "xml", BUGGY]).status.code(), Some(2));
}

#[test]
fn a_misspelt_rule_gets_the_closest_names() {
    let explain = nnlint(&["explain", "dropout-befor-batchnorm"]);
    assert_eq!(explain.status.code(), Some(2));
    assert_eq!(
        text(&explain.stderr),
        "error: no rule named `dropout-befor-batchnorm`; did you mean `dropout-before-batchnorm`? (see `nnlint rules`)\n"
    );
    let select = nnlint(&["--select", "dead-rel", BUGGY]);
    assert_eq!(select.status.code(), Some(2));
    assert!(
        text(&select.stderr).contains("did you mean `dead-relu`?"),
        "{}",
        text(&select.stderr)
    );
    // Nothing close: no suggestion.
    let far = nnlint(&["explain", "xyzzy"]);
    assert_eq!(
        text(&far.stderr),
        "error: no rule named `xyzzy` (see `nnlint rules`)\n"
    );
}

#[test]
fn exit_zero_keeps_findings_out_of_the_status_but_not_unreadable_files() {
    let found = nnlint(&["--exit-zero", "--no-probe", BUGGY]);
    assert_eq!(found.status.code(), Some(0));
    assert!(text(&found.stdout).contains("warning[NN301]"));
    let unreadable = nnlint(&["--exit-zero", "--no-probe", BUGGY, "no/such.onnx"]);
    assert_eq!(unreadable.status.code(), Some(2));
}

// ---- bad input -------------------------------------------------------------

fn model_with_external(location: &str, offset: Option<u64>, length: Option<u64>) -> ModelProto {
    let mut ext = vec![StringStringEntryProto {
        key: "location".into(),
        value: location.into(),
    }];
    if let Some(o) = offset {
        ext.push(StringStringEntryProto {
            key: "offset".into(),
            value: o.to_string(),
        });
    }
    if let Some(l) = length {
        ext.push(StringStringEntryProto {
            key: "length".into(),
            value: l.to_string(),
        });
    }
    common::relu_of(TensorProto {
        dims: vec![4],
        external_data: ext,
        data_location: Some(DataLocation::External as i32),
        ..Default::default()
    })
}

struct Case {
    path: PathBuf,
    expect: &'static str,
}

fn bad_inputs(dir: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, expect: &'static str| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        cases.push(Case { path, expect });
    };
    add(
        "text.onnx",
        b"this is not a model, just some text\n".to_vec(),
        "not",
    );
    let real = std::fs::read(BUGGY).unwrap();
    add(
        "truncated.onnx",
        real[..real.len() / 2].to_vec(),
        "not a valid ONNX protobuf file",
    );
    add("empty.onnx", Vec::new(), "empty");
    let dynamo = std::fs::read(BUGGY_DYNAMO).unwrap();
    add("dropout_bn_mlp_dynamo_train.onnx", dynamo, "does not exist");
    add(
        "dotdot.onnx",
        model_with_external("../../etc/passwd", None, None).encode_to_vec(),
        "leaves the model's folder",
    );
    add(
        "absolute.onnx",
        model_with_external("/etc/passwd", None, None).encode_to_vec(),
        "is absolute",
    );
    std::fs::write(dir.join("short.bin"), [0u8; 16]).unwrap();
    add(
        "past_end.onnx",
        model_with_external("short.bin", Some(8), Some(64)).encode_to_vec(),
        "past the end",
    );
    add(
        "bad_offset.onnx",
        model_with_external("short.bin", Some(u64::MAX), Some(2)).encode_to_vec(),
        "past the end",
    );
    #[cfg(unix)]
    {
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), [0u8; 64]).unwrap();
        let (_f, kept) = outside.keep().unwrap();
        std::os::unix::fs::symlink(&kept, dir.join("link.bin")).unwrap();
        add(
            "symlink.onnx",
            model_with_external("link.bin", None, None).encode_to_vec(),
            "symlink",
        );
    }
    cases.push(Case {
        path: dir.join("missing.onnx"),
        expect: "no such file",
    });
    cases
}

#[test]
fn bad_inputs_get_one_line_naming_the_file_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for case in bad_inputs(dir.path()) {
        let p = case.path.to_str().unwrap();
        let out = nnlint(&[p]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{p}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{p}: {stderr}");
        assert!(stderr.starts_with(&format!("error: {p}: ")), "{stderr}");
        assert!(
            stderr.contains(case.expect),
            "{p}: expected `{}` in {stderr}",
            case.expect
        );
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn other_files_are_still_linted_after_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let cases = bad_inputs(dir.path());
    let mut args: Vec<&str> = cases.iter().map(|c| c.path.to_str().unwrap()).collect();
    args.push(BUGGY);
    args.extend(["--format", "short", "--location", "model"]);
    let out = nnlint(&args);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).lines().count(), cases.len());
    assert!(text(&out.stdout).contains(&format!("{BUGGY}:14:")));
}

#[test]
fn linting_never_writes_to_a_model() {
    let snapshot = || -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
        let mut v = Vec::new();
        for e in std::fs::read_dir("fixtures/torch").unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::metadata(&p).unwrap();
            v.push((
                p.clone(),
                std::fs::read(&p).unwrap(),
                meta.modified().unwrap(),
            ));
        }
        v.sort();
        v
    };
    let before = snapshot();
    nnlint(&["fixtures/torch"]);
    nnlint(&["print", BUGGY_DYNAMO]);
    assert!(before == snapshot());
}

// ---- bad options -------------------------------------------------------------

const DYNAMIC: &str = "fixtures/text/probe_dynamic_batch.onnxtxt";

/// A `.npy` file of `shape` holding `descr` values (`<f4`, `<f8`), all 0.5.
fn npy(path: &Path, descr: &str, shape: &[usize]) {
    common::write_npy(path, descr, shape, |_| 0.5);
}

#[test]
fn an_input_or_dimension_the_model_does_not_have_is_a_usage_error_that_lists_the_names() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    npy(&x, "<f4", &[8, 4]);
    let x = x.to_str().unwrap();
    let typo = format!("nope={x}");
    for args in [
        vec!["--input", typo.as_str(), DYNAMIC],
        vec!["--dim", "nope=4", DYNAMIC],
        vec!["--dim", "x:1=4", DYNAMIC],
    ] {
        let out = nnlint(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: `--"), "{stderr}");
        if args[0] == "--input" {
            assert!(
                stderr.contains("the model has no input `nope`; its inputs are `x`"),
                "{stderr}"
            );
        } else {
            assert!(
                stderr.contains("its dynamic dimensions are `N` (by input and axis: `x:0`)"),
                "{stderr}"
            );
        }
    }
    // The names the error lists are the ones that work.
    for args in [
        vec!["--dim", "N=8", DYNAMIC],
        vec!["--dim", "x:0=8", DYNAMIC],
    ] {
        let out = nnlint(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).is_empty() || !text(&out.stdout).contains("error"));
    }
    // With several models, a name one of them has is no typo; one none has is.
    let out = nnlint(&[
        "--dim",
        "N=8",
        "--format",
        "short",
        "--location",
        "model",
        DYNAMIC,
        BUGGY,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(BUGGY), "{}", text(&out.stdout));
    let out = nnlint(&["--dim", "nope=8", DYNAMIC, BUGGY]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("no model has a dimension `nope`; their dynamic dimensions are `N`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_npy_file_is_an_error() {
    let out = nnlint(&["--input", "x=/nonexistent/x.npy", DYNAMIC]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`--input x=/nonexistent/x.npy`: no such file"),
        "{stderr}"
    );
}

#[test]
fn an_npy_of_the_wrong_dtype_or_shape_says_what_the_input_takes() {
    let dir = tempfile::tempdir().unwrap();
    let f64_path = dir.path().join("x64.npy");
    npy(&f64_path, "<f8", &[8, 4]);
    let wide = dir.path().join("wide.npy");
    npy(&wide, "<f4", &[8, 5]);
    let ok = dir.path().join("ok.npy");
    npy(&ok, "<f4", &[8, 4]);
    let run = |p: &Path| {
        let arg = format!("x={}", p.display());
        let out = nnlint(&["--isolated", "--format", "short", "--input", &arg, DYNAMIC]);
        assert_ne!(out.status.code(), Some(2), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let doubles = run(&f64_path);
    assert!(
        doubles.contains(&format!(
            "input `x` takes float32 values, and `{}` holds float64 (save it with `.astype(numpy.float32)`)",
            f64_path.display()
        )),
        "{doubles}"
    );
    let shape = run(&wide);
    assert!(
        shape.contains(&format!(
            "input `x` has shape [N, 4], and `{}` holds shape [8, 5]",
            wide.display()
        )),
        "{shape}"
    );
    // The file's batch sizes the dynamic dimension: no clash with the default of 64.
    let fine = run(&ok);
    assert!(!fine.contains("NN400"), "{fine}");
}

#[test]
fn a_missing_external_data_file_still_gets_the_graph_rules_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dropout_bn_mlp_dynamo_train.onnx");
    std::fs::copy(BUGGY_DYNAMO, &path).unwrap();
    let p = path.to_str().unwrap();
    let out = nnlint(&["--isolated", "--format", "short", p]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {p}: ")) && stderr.contains("does not exist"),
        "{stderr}"
    );
    // Dropout before BatchNorm needs no values.
    assert!(stdout.contains("warning[NN301]"), "{stdout}");
    // Nothing was probed, and no value was read.
    assert!(
        !stdout.contains("NN400") && !stdout.contains("NN2"),
        "{stdout}"
    );
}

#[test]
fn a_closed_pipe_is_not_an_error_message() {
    // `nnlint model.onnx | head -1`: the reader goes away before nnlint is done.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nnlint"))
        .args(["--isolated", BUGGY])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        !text(&out.stderr).contains("cannot write output"),
        "{}",
        text(&out.stderr)
    );
}

/// The one-batch fit and the backward pass run candle's multithreaded
/// kernels: the same output on one thread as on two, with every step's loss.
#[test]
fn the_fit_is_the_same_on_one_and_two_threads() {
    let args = [
        "--isolated",
        "--format",
        "json",
        "fixtures/overfit",
        "fixtures/gradients/grad_batch_mean_dynamo_train.onnx",
    ];
    let run = |threads: &str| {
        let out = common::command(Path::new(env!("CARGO_MANIFEST_DIR")), &args)
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        out.stdout
    };
    let one = run("1");
    assert!(text(&one).contains("\"series\""));
    assert_eq!(one, run("2"));
}
