//! The workflow around Python lines and folders: a checkout moved to another
//! machine, a source file edited since export, folders walked as ruff walks
//! them, and findings of two models from one Python file told apart.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{nnlint, nnlint_in, text};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn repo(p: &str) -> PathBuf {
    Path::new(REPO).join(p)
}

/// The 1-based line of fixtures/python/models.py that reads `needle`, the
/// last one when several do.
fn line_in(src: &str, needle: &str) -> usize {
    src.lines()
        .collect::<Vec<_>>()
        .iter()
        .rposition(|l| l.trim() == needle)
        .unwrap()
        + 1
}

fn models_py() -> String {
    fs::read_to_string(repo("fixtures/python/models.py")).unwrap()
}

/// The Unsuppressed model's Dropout line: the finding's Python line.
fn drop_line(src: &str) -> usize {
    line_in(src, "x = self.drop(x)")
}

fn copy(from: &str, to: &Path) {
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(repo(from), to).unwrap();
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

// ---- recorded paths of another machine ---------------------------------------

#[test]
fn a_checkout_moved_to_another_machine_finds_its_lines_by_suffix() {
    // The moved fixtures record /home/alice/proj/fixtures/python/models.py.
    let line = drop_line(&models_py());
    let tmp = tempfile::tempdir().unwrap();
    let checkout = tmp.path().join("ci/work");
    copy(
        "fixtures/python/models.py",
        &checkout.join("fixtures/python/models.py"),
    );
    for exporter in ["dynamo", "torchscript"] {
        let name = format!("moved_{exporter}_train.onnx");
        copy(
            &format!("fixtures/python/{name}"),
            &checkout.join("fixtures/python").join(&name),
        );
        // From the checkout's root, as CI runs: the suffix under the current directory.
        let model = format!("fixtures/python/{name}");
        let out = nnlint_in(&checkout, &["--format", "short", &model]);
        assert_eq!(
            text(&out.stdout),
            format!("fixtures/python/models.py:{line}:9: warning[NN301]: dropout feeds batch normalization (variance shift) [in {model}]\n"),
            "{exporter}"
        );
        // From anywhere else: the suffix under the model's folder and those above it.
        let abs = checkout.join(&model);
        let out = json(&nnlint_in(
            tmp.path(),
            &["--format", "json", abs.to_str().unwrap()],
        ));
        let shown = checkout.join("fixtures/python/models.py");
        assert_eq!(out[0]["file"], shown.to_str().unwrap(), "{exporter}");
        assert_eq!(out[0]["python"]["line"], line);
        assert_eq!(out[0]["python"]["readable"], true);
        // The suppression comments of the moved file work again.
        let src = models_py().replace(
            "        x = self.drop(x)\n        x = self.bn(x)\n        return self.fc2(x)",
            "        x = self.drop(x)  # nnlint: ignore[NN301]\n        x = self.bn(x)\n        return self.fc2(x)",
        );
        assert_ne!(src, models_py());
        fs::write(checkout.join("fixtures/python/models.py"), &src).unwrap();
        let out = nnlint_in(&checkout, &["--format", "short", &model]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
        fs::write(checkout.join("fixtures/python/models.py"), models_py()).unwrap();
    }
}

#[test]
fn paths_in_the_configuration_map_recorded_prefixes_to_local_folders() {
    let line = drop_line(&models_py());
    let tmp = tempfile::tempdir().unwrap();
    let proj = tmp.path().join("proj");
    // Not where the suffix would find it: only `[paths]` says where it is.
    copy("fixtures/python/models.py", &proj.join("src/models.py"));
    copy(
        "fixtures/python/moved_dynamo_train.onnx",
        &proj.join("exports/m.onnx"),
    );
    let before = nnlint_in(&proj, &["--format", "json", "exports/m.onnx"]);
    assert_eq!(json(&before)[0]["python"]["readable"], false);
    fs::write(
        proj.join("nnlint.toml"),
        "[paths]\nsource = [\"src/\", \"/home/*/proj/fixtures/python/\"]\n",
    )
    .unwrap();
    let after = json(&nnlint_in(&proj, &["--format", "json", "exports/m.onnx"]));
    assert_eq!(after[0]["python"]["readable"], true, "{after}");
    let file = after[0]["file"].as_str().unwrap();
    assert!(file.ends_with("src/models.py"), "{file}");
    assert_eq!(after[0]["line"], line);
    // A `[paths]` entry without a recorded prefix is a mistake with its place.
    fs::write(proj.join("nnlint.toml"), "[paths]\nsource = [\"src/\"]\n").unwrap();
    let bad = nnlint_in(&proj, &["exports/m.onnx"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("nnlint.toml:2:10: [paths] source needs the local folder first"),
        "{}",
        text(&bad.stderr)
    );
}

// ---- a source file edited since export ---------------------------------------

/// fixtures/python with `edit` applied to models.py, in a temporary folder
/// laid out as the checkout is (the fixtures record `models.py` beside the model).
fn edited_checkout(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fixtures/python");
    fs::create_dir_all(&dir).unwrap();
    for e in fs::read_dir(repo("fixtures/python")).unwrap().flatten() {
        fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    fs::write(dir.join("models.py"), edit(&models_py())).unwrap();
    tmp
}

#[test]
fn lines_added_above_are_followed_to_the_recorded_text() {
    let tmp = edited_checkout(|s| format!("# a new header\nimport os\n{s}"));
    let line = drop_line(&models_py());
    let model = "fixtures/python/unsuppressed_dynamo_train.onnx";
    let out = nnlint_in(tmp.path(), &["--format", "json", model]);
    let found = json(&out);
    assert_eq!(found[0]["python"]["line"], line + 2);
    assert_eq!(found[0]["python"]["recorded_line"], line);
    assert_eq!(found[0]["python"]["check"], "moved");
    let human = text(&nnlint_in(tmp.path(), &[model]).stdout);
    assert!(
        human.contains(&format!("{} │         x = self.drop(x)", line + 2)),
        "{human}"
    );
    assert!(
        human.contains(&format!(
            "the file changed since export: this line was line {line} then"
        )),
        "{human}"
    );
    // The suppression comment moved with its line: it still suppresses, and
    // is not reported as unused.
    let suppressed = nnlint_in(
        tmp.path(),
        &["fixtures/python/suppressed_dynamo_train.onnx"],
    );
    assert_eq!(suppressed.status.code(), Some(0));
    assert!(
        !text(&suppressed.stdout).contains("NN006"),
        "{}",
        text(&suppressed.stdout)
    );
}

#[test]
fn a_changed_line_is_never_shown() {
    let tmp = edited_checkout(|s| {
        let i = s.rfind("        x = self.drop(x)\n").unwrap();
        format!("{}        x = self.dropout(x)\n{}", &s[..i], &s[i + 25..])
    });
    let model = "fixtures/python/unsuppressed_dynamo_train.onnx";
    let found = json(&nnlint_in(tmp.path(), &["--format", "json", model]));
    assert_eq!(found[0]["python"]["check"], "changed");
    assert_eq!(found[0]["python"]["readable"], false);
    // Reported at the model, where it is known to be.
    assert_eq!(found[0]["file"], model);
    let human = text(&nnlint_in(tmp.path(), &[model]).stdout);
    assert!(!human.contains("created here"), "{human}");
    assert!(
        human.contains("the file changed since export: no line near"),
        "{human}"
    );
    assert!(human.contains("reads `x = self.drop(x)`"), "{human}");
}

#[test]
fn torchscript_lines_outside_their_function_are_not_shown() {
    // TorchScript records no text; a line that is no longer in `forward` is
    // known to be wrong.
    let line = drop_line(&models_py());
    let tmp = edited_checkout(|s| {
        let lines: Vec<&str> = s.lines().collect();
        // Everything up to the Dropout line replaced by blank lines and a new function.
        let mut out: Vec<String> = vec![String::new(); line - 3];
        out.push("def helper():".into());
        out.push("    pass".into());
        out.push(String::new());
        out.extend(lines[line..].iter().map(|l| l.to_string()));
        out.join("\n")
    });
    let model = "fixtures/python/unsuppressed_torchscript_train.onnx";
    let found = json(&nnlint_in(tmp.path(), &["--format", "json", model]));
    assert_eq!(found[0]["python"]["check"], "changed", "{found}");
    assert_eq!(found[0]["file"], model);
    let same = json(&nnlint(&["--format", "json", model]));
    assert_eq!(same[0]["python"]["check"], "unverified");
    // Two lines added at the top: the recorded line is now `def forward`,
    // which computes nothing.
    let tmp = edited_checkout(|s| format!("# a new header\nimport os\n{s}"));
    let found = json(&nnlint_in(tmp.path(), &["--format", "json", model]));
    assert_eq!(found[0]["python"]["check"], "changed", "{found}");
    assert_eq!(found[0]["file"], model);
}

// ---- folders -----------------------------------------------------------------

/// Files under `root`: `.onnxtxt` ones a small valid model, the rest empty.
fn tree(root: &Path, files: &[&str]) {
    let body = fs::read_to_string(repo("fixtures/text/dropout_rate.onnxtxt")).unwrap();
    for f in files {
        let p = root.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(
            p,
            if f.ends_with(".onnxtxt") {
                &body[..]
            } else {
                ""
            },
        )
        .unwrap();
    }
}

/// The models a run linted, in output order: each gets a line on its state.
fn linted(root: &Path, args: &[&str]) -> Vec<String> {
    let out = nnlint_in(root, &[&["--no-probe"][..], args].concat());
    assert_ne!(out.status.code(), Some(2), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(": the model").map(|(m, _)| m.to_string()))
        .collect()
}

#[test]
fn folders_skip_hidden_ignored_and_virtual_environment_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("proj");
    tree(
        &root,
        &[
            "models/a.onnxtxt",
            ".venv/lib/python3.11/site-packages/onnx/backend/test/data/b.onnxtxt",
            "env/pyvenv.cfg",
            "env/lib/c.onnxtxt",
            "node_modules/pkg/d.onnxtxt",
            ".hidden/e.onnxtxt",
            "build/f.onnxtxt",
            "legacy/g.onnxtxt",
        ],
    );
    fs::write(root.join(".gitignore"), "build/\n").unwrap();
    assert_eq!(
        linted(&root, &["."]),
        ["./legacy/g.onnxtxt", "./models/a.onnxtxt"]
    );
    assert_eq!(
        linted(&root, &["--no-respect-gitignore", "."]),
        [
            "./build/f.onnxtxt",
            "./legacy/g.onnxtxt",
            "./models/a.onnxtxt"
        ]
    );
    // `extend-exclude` adds to the defaults; `exclude` replaces them.
    fs::write(root.join("nnlint.toml"), "extend-exclude = [\"legacy\"]\n").unwrap();
    assert_eq!(linted(&root, &["."]), ["./models/a.onnxtxt"]);
    fs::write(root.join("nnlint.toml"), "exclude = [\"legacy\"]\n").unwrap();
    assert_eq!(
        linted(&root, &["."]),
        ["./models/a.onnxtxt", "./node_modules/pkg/d.onnxtxt"]
    );
    fs::remove_file(root.join("nnlint.toml")).unwrap();
    // A file named on the command line is linted wherever it is, as ruff does.
    assert_eq!(
        linted(&root, &["node_modules/pkg/d.onnxtxt"]),
        ["node_modules/pkg/d.onnxtxt"]
    );
}

#[test]
fn an_empty_folder_says_it_found_no_models() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &["notes.txt", ".venv/x.onnxtxt"]);
    let out = nnlint_in(tmp.path(), &["."]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stderr),
        "warning: no models (.onnx, .onnxtxt) found in .\n"
    );
}

// ---- two models from one Python file -----------------------------------------

#[test]
fn findings_of_two_models_from_one_file_name_their_model_and_sort() {
    let a = "fixtures/python/unsuppressed_torchscript_train.onnx";
    let b = "fixtures/python/unsuppressed_dynamo_train.onnx";
    let line = drop_line(&models_py());
    let short = text(&nnlint(&["--format", "short", a, b]).stdout);
    let at = format!("fixtures/python/models.py:{line}:9: warning[NN301]: dropout feeds batch normalization (variance shift)");
    // Sorted by file, then model (dynamo before torchscript), whatever the order given.
    assert_eq!(short, format!("{at} [in {b}]\n{at} [in {a}]\n"));
    let github = text(&nnlint(&["--format", "github", a, b]).stdout);
    let titles: Vec<&str> = github
        .lines()
        .map(|l| {
            l.split("title=")
                .nth(1)
                .unwrap()
                .split("::")
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(
        titles,
        [
            format!("nnlint (NN301) in {}", b.replace(':', "%3A")),
            format!("nnlint (NN301) in {a}"),
        ]
    );
    let json = json(&nnlint(&["--format", "json", a, b]));
    assert_eq!(json[0]["model"]["file"], b);
    assert_eq!(json[1]["model"]["file"], a);
}
