//! The conventions other tools read: VS Code's problem matcher, GitHub
//! annotations and code scanning, project configuration, exit-status policy.

use crate::common::{nnlint, nnlint_in, text};

use std::path::Path;

use regex::Regex;

const WARNS: &str = "fixtures/torch/dropout_rate_high_torchscript_train.onnx";

/// The problem matcher exactly as the user guide gives it.
fn guide_matcher() -> serde_json::Value {
    let guide = std::fs::read_to_string("docs/workflow.md").unwrap();
    let start = guide
        .find("```json\n{\n  \"version\": \"2.0.0\"")
        .expect("tasks.json block");
    let body = &guide[start + 8..];
    let end = body.find("```").unwrap();
    let tasks: serde_json::Value = serde_json::from_str(&body[..end]).unwrap();
    tasks["tasks"][0]["problemMatcher"].clone()
}

#[test]
fn the_guide_s_problem_matcher_reads_every_field_of_real_output() {
    let matcher = guide_matcher();
    let pattern = &matcher["pattern"];
    let re = Regex::new(pattern["regexp"].as_str().unwrap()).unwrap();
    let group = |k: &str| pattern[k].as_u64().unwrap() as usize;
    let out = nnlint(&["--format", "short", "fixtures/torch", "fixtures/handmade"]);
    let stdout = text(&out.stdout);
    let codes: Vec<&str> = nnlint::rules::all().map(|r| r.meta().code).collect();
    let mut severities = std::collections::BTreeSet::new();
    for line in stdout.lines() {
        let c = re
            .captures(line)
            .unwrap_or_else(|| panic!("the matcher misses {line}"));
        assert!(Path::new(&c[group("file")]).is_file(), "{line}");
        assert!(c[group("line")].parse::<u32>().unwrap() >= 1);
        assert!(c[group("column")].parse::<u32>().unwrap() >= 1);
        assert!(codes.contains(&&c[group("code")]), "{line}");
        assert!(!c[group("message")].is_empty());
        severities.insert(c[group("severity")].to_string());
    }
    // Words VS Code maps to error, warning and info.
    assert_eq!(
        severities.into_iter().collect::<Vec<_>>(),
        vec!["error", "note", "warning"]
    );
}

#[test]
fn github_annotations_are_workflow_commands() {
    let out = nnlint(&["--format", "github", "fixtures/torch"]);
    let re = Regex::new(
        r"^::(error|warning|notice) file=[^,:]+,line=\d+,col=\d+,endLine=\d+,endColumn=\d+,title=nnlint \(NN\d{3}\)( in fixtures/torch/[a-z_]+\.onnx)?::[^\n]+ \[[a-z-]+\]$",
    )
    .unwrap();
    let stdout = text(&out.stdout);
    assert!(stdout.lines().count() > 20);
    for line in stdout.lines() {
        assert!(re.is_match(line), "{line}");
    }
}

#[test]
fn sarif_has_rules_results_and_locations() {
    let out = nnlint(&["--format", "sarif", "fixtures/torch", "fixtures/invalid"]);
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "nnlint");
    assert!(driver["version"].is_string() && driver["informationUri"].is_string());
    let rules = driver["rules"].as_array().unwrap();
    assert_eq!(rules.len(), nnlint::rules::all().count());
    for (r, meta) in rules.iter().zip(nnlint::rules::all().map(|r| r.meta())) {
        assert_eq!(r["id"], meta.code);
        assert_eq!(r["name"], meta.name);
        assert_eq!(r["shortDescription"]["text"], meta.summary);
        assert_eq!(r["fullDescription"]["markdown"], meta.explanation);
        assert!(r["helpUri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("rules/{}.md", meta.name)));
        assert_eq!(r["defaultConfiguration"]["level"], meta.severity.as_str());
    }
    let results = run["results"].as_array().unwrap();
    assert!(results.len() > 20);
    for res in results {
        let index = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(res["ruleId"], rules[index]["id"]);
        assert!(["error", "warning", "note"].contains(&res["level"].as_str().unwrap()));
        assert!(!res["message"]["text"].as_str().unwrap().is_empty());
        let loc = &res["locations"][0];
        let uri = loc["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap();
        assert!(Path::new(uri).is_file(), "{uri}");
        assert!(
            loc["physicalLocation"]["region"]["startLine"]
                .as_u64()
                .unwrap()
                >= 1
        );
        if let Some(l) = loc.get("logicalLocations") {
            assert!(l[0]["name"].is_string());
        }
    }
    assert!(results
        .iter()
        .any(|r| r["locations"][0]["logicalLocations"][0]["name"].is_string()));
}

#[test]
fn rules_and_explain_serve_tools_as_json() {
    let all: serde_json::Value =
        serde_json::from_slice(&nnlint(&["rules", "--format", "json"]).stdout).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), nnlint::rules::all().count());
    let one: serde_json::Value =
        serde_json::from_slice(&nnlint(&["explain", "NN302", "--format", "json"]).stdout).unwrap();
    assert_eq!(one["name"], "dropout-rate");
    assert_eq!(one["options"][0]["name"], "high");
    assert_eq!(one["options"][0]["default"], 0.5);
    assert!(all.contains(&one));
}

#[test]
fn exit_status_policy_quiet_and_statistics() {
    // A note only: exit 0 by default, 1 with --fail-on note.
    let note_only = "fixtures/torch/conv_bias_bn_torchscript_train.onnx";
    assert_eq!(nnlint(&[note_only]).status.code(), Some(0));
    assert_eq!(
        nnlint(&["--fail-on", "note", note_only]).status.code(),
        Some(1)
    );
    // A warning: exit 1 by default, 0 with --fail-on error.
    assert_eq!(nnlint(&[WARNS]).status.code(), Some(1));
    assert_eq!(
        nnlint(&["--fail-on", "error", WARNS]).status.code(),
        Some(0)
    );
    let loud = text(&nnlint(&[WARNS]).stdout);
    let quiet = text(&nnlint(&["--quiet", WARNS]).stdout);
    assert!(loud.ends_with("nnlint: 1 warning\n"));
    // --quiet keeps the findings and drops what follows them: what the
    // model's state kept from running, and the summary line.
    let rest = loud.strip_prefix(&quiet).expect("the findings come first");
    assert!(
        rest.starts_with(&format!("{WARNS}: the model looks untrained")),
        "{rest}"
    );
    let stats = text(
        &nnlint(&[
            "--statistics",
            "fixtures/torch/dropout_rate_high_dynamo_train.onnx",
            WARNS,
        ])
        .stdout,
    );
    assert_eq!(stats, "    2  NN302  dropout-rate\n");
}

/// A scratch project with the buggy model and a configuration file.
fn project(config_name: &str, config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models/legacy")).unwrap();
    for sub in ["models", "models/legacy"] {
        std::fs::copy(WARNS, dir.path().join(sub).join("drop.onnx")).unwrap();
    }
    std::fs::write(dir.path().join(config_name), config).unwrap();
    dir
}

fn short(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["--format", "short"];
    all.extend_from_slice(args);
    let out = nnlint_in(dir, &all);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_config_file_changes_selection_severity_and_thresholds() {
    let default = project("nnlint.toml", "");
    let (code, out, _) = short(default.path(), &["models/drop.onnx"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        out,
        "models/drop.onnx:14:75: warning[NN302]: dropout ratio 0.8 is above 0.5\n"
    );

    let ignored = project("nnlint.toml", "ignore = [\"dropout-rate\"]\n");
    assert_eq!(
        short(ignored.path(), &["models/drop.onnx"]),
        (Some(0), String::new(), String::new())
    );

    let selected = project("nnlint.toml", "select = [\"NN0\"]\n");
    assert_eq!(short(selected.path(), &["models/drop.onnx"]).1, "");
    // The command line's --select replaces the configured one.
    assert!(
        short(selected.path(), &["--select", "NN3", "models/drop.onnx"])
            .1
            .contains("NN302")
    );

    let severity = project(
        "nnlint.toml",
        "[rules.dropout-rate]\nseverity = \"error\"\n",
    );
    assert!(short(severity.path(), &["models/drop.onnx"])
        .1
        .contains(": error[NN302]: dropout ratio 0.8"));

    let threshold = project("nnlint.toml", "[rules.dropout-rate]\nhigh = 0.9\n");
    assert_eq!(short(threshold.path(), &["models/drop.onnx"]).1, "");

    let per_file = project(
        "nnlint.toml",
        "[per-file-ignores]\n\"models/legacy/*.onnx\" = [\"NN302\"]\n",
    );
    let (_, out, _) = short(per_file.path(), &["models"]);
    assert!(
        out.contains("models/drop.onnx") && !out.contains("legacy"),
        "{out}"
    );

    let per_node = project(
        "nnlint.toml",
        "[per-node-ignores]\n\"/drop/*\" = [\"dropout-rate\"]\n",
    );
    assert_eq!(short(per_node.path(), &["models"]).1, "");

    // pyproject.toml's [tool.nnlint] works the same way.
    let py = project(
        "pyproject.toml",
        "[project]\nname = \"x\"\n\n[tool.nnlint.rules.dropout-rate]\nhigh = 0.9\n",
    );
    assert_eq!(short(py.path(), &["models/drop.onnx"]).1, "");

    // --isolated ignores it; --config names another.
    assert!(short(threshold.path(), &["--isolated", "models/drop.onnx"])
        .1
        .contains("NN302"));
    let cfg = threshold.path().join("nnlint.toml");
    assert_eq!(
        short(
            default.path(),
            &["--config", cfg.to_str().unwrap(), "models/drop.onnx"]
        )
        .1,
        ""
    );
}

#[test]
fn a_config_mistake_names_the_file_and_line() {
    let bad = project(
        "nnlint.toml",
        "select = [\"ALL\"]\n\n[rules.dropout-rate]\nhigh = 0.3\nseverty = \"error\"\n",
    );
    let (code, out, err) = short(bad.path(), &["models/drop.onnx"]);
    assert_eq!(code, Some(2));
    assert_eq!(out, "");
    let path = bad.path().join("nnlint.toml").canonicalize().unwrap();
    assert_eq!(
        err,
        format!(
            "error: {}:5:1: unknown setting `severty` for rule `dropout-rate` (expected severity, high)\n",
            path.display()
        )
    );
    let unknown = project("nnlint.toml", "[rules.no-such-rule]\n");
    let (code, _, err) = short(unknown.path(), &["models/drop.onnx"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("nnlint.toml:1:8: unknown rule `no-such-rule`"),
        "{err}"
    );
}

// ---- Python origins -------------------------------------------------------

/// Line numbers in fixtures/python/models.py, found by their text so the test
/// states what it means.
fn models_line(needle: &str) -> usize {
    let src = std::fs::read_to_string("fixtures/python/models.py").unwrap();
    src.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn findings_point_at_the_python_line_that_created_the_node() {
    // The Unsuppressed model's line: the last `x = self.drop(x)` without a comment.
    let src = std::fs::read_to_string("fixtures/python/models.py").unwrap();
    let lines: Vec<&str> = src.lines().collect();
    let drop_line = lines
        .iter()
        .rposition(|l| l.trim() == "x = self.drop(x)")
        .unwrap()
        + 1;
    for exporter in ["dynamo", "torchscript"] {
        let model = format!("fixtures/python/unsuppressed_{exporter}_train.onnx");
        let out = text(&nnlint(&["--format", "short", &model]).stdout);
        assert_eq!(
            out,
            format!("fixtures/python/models.py:{drop_line}:9: warning[NN301]: dropout feeds batch normalization (variance shift) [in {model}]\n")
        );
        // --location model keeps the listing position.
        let out = text(&nnlint(&["--format", "short", "--location", "model", &model]).stdout);
        assert!(out.starts_with(&format!("{model}:1")), "{out}");
        // The human format keeps the model snippet and adds the Python line.
        let human = text(&nnlint(&[&model]).stdout);
        assert!(human.contains(&format!(
            "= note: created at fixtures/python/models.py:{drop_line} in forward (module drop"
        )));
        assert!(human.contains("x = self.drop(x)\n") && human.contains("created here"));
        // json carries both locations.
        let json: serde_json::Value =
            serde_json::from_slice(&nnlint(&["--format", "json", &model]).stdout).unwrap();
        assert_eq!(json[0]["file"], "fixtures/python/models.py");
        assert_eq!(json[0]["model"]["file"], model.as_str());
        assert_eq!(json[0]["python"]["line"], drop_line);
        assert_eq!(json[0]["python"]["module"], "drop");
        assert_eq!(json[0]["python"]["readable"], true);
    }
}

#[test]
fn the_guide_s_problem_matcher_extracts_the_python_path_and_line() {
    let pattern = &guide_matcher()["pattern"];
    let re = Regex::new(pattern["regexp"].as_str().unwrap()).unwrap();
    let out = text(
        &nnlint(&[
            "--format",
            "short",
            "fixtures/python/unsuppressed_dynamo_train.onnx",
        ])
        .stdout,
    );
    let c = re.captures(out.trim_end()).unwrap();
    assert_eq!(
        &c[pattern["file"].as_u64().unwrap() as usize],
        "fixtures/python/models.py"
    );
    let line: usize = c[pattern["line"].as_u64().unwrap() as usize]
        .parse()
        .unwrap();
    let src = std::fs::read_to_string("fixtures/python/models.py").unwrap();
    assert_eq!(
        src.lines().nth(line - 1).unwrap().trim(),
        "x = self.drop(x)"
    );
}

#[test]
fn an_ignore_comment_suppresses_the_finding_on_its_line() {
    let comment_line = models_line("x = self.drop(x)  # nnlint: ignore[dropout-before-batchnorm]");
    for exporter in ["dynamo", "torchscript"] {
        let model = format!("fixtures/python/suppressed_{exporter}_train.onnx");
        let out = nnlint(&["--format", "short", &model]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(text(&out.stdout), "");
        let shown = nnlint(&["--show-suppressed", &model]);
        assert_eq!(
            shown.status.code(),
            Some(0),
            "suppressed findings do not fail the run"
        );
        let stdout = text(&shown.stdout);
        assert!(
            stdout.contains("= note: suppressed by `# nnlint: ignore[dropout-before-batchnorm]`")
        );
        assert!(stdout.contains(&format!("models.py:{comment_line}")));
        assert!(stdout.ends_with("nnlint: 1 suppressed\n"), "{stdout}");
    }
}

#[test]
fn a_stale_suppression_is_reported() {
    let line = models_line("x = self.bn(self.fc1(x))  # nnlint: ignore[dropout-before-batchnorm]");
    for exporter in ["dynamo", "torchscript"] {
        let model = format!("fixtures/python/stale_{exporter}_train.onnx");
        let out = text(
            &nnlint(&[
                "--format",
                "short",
                "--select",
                "unused-suppression",
                &model,
            ])
            .stdout,
        );
        assert_eq!(
            out,
            format!("fixtures/python/models.py:{line}:35: note[NN006]: suppression comment does not suppress `dropout-before-batchnorm` [in {model}]\n")
        );
    }
}

#[test]
fn a_missing_source_falls_back_to_the_model() {
    for exporter in ["dynamo", "torchscript"] {
        let model = format!("fixtures/python/missing_source_{exporter}_train.onnx");
        let out = nnlint(&["--format", "short", &model]);
        assert_eq!(out.status.code(), Some(1));
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with(&format!("{model}:1")), "{stdout}");
        let human = text(&nnlint(&[&model]).stdout);
        assert!(human.contains("= note: created at deleted_models.py:"));
        assert!(!human.contains("created here"));
        let json: serde_json::Value =
            serde_json::from_slice(&nnlint(&["--format", "json", &model]).stdout).unwrap();
        assert_eq!(json[0]["python"]["readable"], false);
        assert_eq!(json[0]["file"], model.as_str());
    }
}

#[test]
fn models_without_origins_behave_as_before() {
    // Hand-built graphs carry no stack traces: positions stay in the listing.
    let out = text(&nnlint(&["--format", "short", "fixtures/handmade/hygiene.onnx"]).stdout);
    assert!(
        out.lines()
            .all(|l| l.starts_with("fixtures/handmade/hygiene.onnx:")),
        "{out}"
    );
}
