//! The html report and the json report it draws from.
//!
//! `fixtures/report/hostile_names.html` pins the page of one small model
//! byte for byte; re-bless it with the other expected outputs
//! ([`crate::common::BLESS`]).
//!
//! With chromium on the PATH (`.ci/run` installs it; in CI it is required),
//! the pages of a planted dead relu, a clean residual network, a `nnlint
//! diff` pair and the markup-named model are rendered headless: a PNG
//! screenshot and the DOM go to `target/html-report/`, and the DOM must show
//! every finding's code and every probed layer, and load nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{assert_snapshots, isolated, nnlint, snapshot, text};
use nnlint::diag::position::Prefer;
use nnlint::diag::render::{render, Format, RenderOptions};

const PINNED: &str = "fixtures/report/hostile_names.onnx";

/// The page of one model as `nnlint --isolated --format html MODEL` writes it.
fn page(model: &str) -> String {
    let options = nnlint::Options {
        fingerprint: true,
        ..isolated()
    };
    let file = nnlint::lint_file(Path::new(model), &options).unwrap();
    let run = nnlint::run_record(
        "lint",
        vec![
            "--isolated".into(),
            "--format".into(),
            "html".into(),
            model.into(),
        ],
        &options,
    );
    let mut out = Vec::new();
    let render_options = RenderOptions {
        prefer: Prefer::Python,
        ..Default::default()
    };
    let report = nnlint::report(run, vec![file]);
    render(Format::Html, &report, &render_options, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn the_page_of_a_small_model_matches_its_expected_html() {
    let actual = page(PINNED);
    let expected = Path::new(PINNED).with_extension("html");
    assert_snapshots(&Vec::from_iter(snapshot(&expected, &actual)));
    // The library's page is the command line's.
    let cli = nnlint(&["--isolated", "--format", "html", PINNED]);
    assert_eq!(text(&cli.stdout), actual);
}

#[test]
fn model_text_reaches_the_page_as_text() {
    let html = page(PINNED);
    let lower = html.to_lowercase();
    // The node names are `<script>alert("relu")</script>` and
    // `fc1"><img src=x onerror=alert(1)>`; the doc string closes a `<pre>`.
    for markup in ["<script", "<img", "</pre><script"] {
        assert!(
            !lower.contains(markup),
            "{markup} reached the page as markup"
        );
    }
    assert!(html.contains("&#60;script&#62;alert(&#34;relu&#34;)&#60;/script&#62;"));
    assert!(html.contains("fc1&#34;&#62;&#60;img src=x onerror=alert(1)&#62;"));
    assert!(html.contains("fc2 &#38; &#39;quoted&#39;"));
    // The finding links to its layer's row, and the row back to the finding.
    assert!(html.contains(r##"<a href="#f0-layer-1"><code>&#60;script&#62;"##));
    assert!(html.contains(r##"<a href="#f0-finding-1">NN202</a>"##));
    assert_no_remote(&html, PINNED);
}

#[test]
fn the_json_report_carries_the_run_and_the_measurements() {
    let model = "fixtures/probe/negative_bias_dynamo_train.onnx";
    let out = nnlint(&[
        "--isolated",
        "--seed",
        "3",
        "--format",
        "json-report",
        model,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "nnlint-report");
    assert_eq!(v["version"], nnlint::diag::report::SCHEMA_VERSION);
    assert_eq!(v["run"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["run"]["seed"], 3);
    assert_eq!(v["run"]["options"]["batch"], "64");
    let file = &v["files"][0];
    assert_eq!(
        file["sha256"],
        nnlint::sha256(Path::new(model)).unwrap().as_str()
    );
    // The weights are in `.onnx.data`: its hash is the run's too.
    let data = format!("{model}.data");
    assert_eq!(
        file["data"][0]["location"],
        "negative_bias_dynamo_train.onnx.data"
    );
    assert_eq!(
        file["data"][0]["sha256"],
        nnlint::sha256(Path::new(&data)).unwrap().as_str()
    );
    // The findings are `--format json`'s.
    let json = nnlint(&["--isolated", "--seed", "3", "--format", "json", model]);
    let findings: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(file["findings"], findings);
    let codes: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"NN202"), "{codes:?}");
    // The relu the finding is about measured dead, by the rule's own count.
    let m = &file["measurements"];
    let relu = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["op"] == "Relu")
        .expect("the relu is measured");
    assert!(
        relu["dead_fraction"].as_f64().unwrap() >= m["bands"]["dead_fraction"].as_f64().unwrap()
    );
    assert!(m["losses"][0]["expected"].as_f64().unwrap() > 2.3);
    assert!(m["fit"]["losses"].as_array().unwrap().len() > 1);
    assert_eq!(v["rules"][0]["name"], "dead-relu");
}

/// Fails when the page names anything it would fetch: a URL anywhere, a
/// script or stylesheet link, a CSS `url(` or `@import`.
fn assert_no_remote(html: &str, what: &str) {
    let lower = html.to_lowercase();
    for needle in [
        "http://", "https://", "<script", "<link", "url(", "@import", "src=\"//",
    ] {
        assert!(
            !lower.contains(needle),
            "{what}: the page contains {needle}"
        );
    }
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

/// What chromium makes of one page: `--dump-dom` and a screenshot.
fn headless(browser: &Path, page: &Path, out: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
    ];
    let url = format!("file://{}", page.display());
    let run = |extra: &[String]| {
        let done = Command::new(browser)
            .args(common)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs");
        assert!(
            done.status.success(),
            "chromium failed on {}: {}",
            page.display(),
            text(&done.stderr)
        );
        done
    };
    let png = out.with_extension("png");
    run(&[
        "--window-size=1200,2400".into(),
        "--hide-scrollbars".into(),
        format!("--screenshot={}", png.display()),
    ]);
    let shot = std::fs::read(&png).unwrap();
    assert!(
        shot.starts_with(b"\x89PNG") && shot.len() > 10_000,
        "{}",
        png.display()
    );
    let dom = text(&run(&["--dump-dom".into()]).stdout);
    std::fs::write(out.with_extension("dom.html"), &dom).unwrap();
    dom
}

/// Text as the DOM serializes it.
fn escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn chromium_renders_every_finding_and_layer_and_loads_nothing() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed; .ci/run installs it"
        );
        eprintln!("skipped: chromium is not installed");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/html-report");
    std::fs::create_dir_all(&dir).unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "dead_relu",
            &["fixtures/probe/negative_bias_dynamo_train.onnx"],
        ),
        (
            "clean_resnet",
            &["fixtures/report/small_resnet_dynamo_train.onnx"],
        ),
        (
            "diff",
            &[
                "diff",
                "--steps",
                "5",
                "fixtures/diff/before.onnx",
                "fixtures/diff/after_frozen.onnx",
            ],
        ),
        ("hostile_names", &[PINNED]),
    ];
    for (name, args) in cases {
        let with = |format: &str| {
            let mut a: Vec<&str> = args.to_vec();
            a.splice(
                if a[0] == "diff" { 1 } else { 0 }..if a[0] == "diff" { 1 } else { 0 },
                ["--isolated", "--format", format],
            );
            nnlint(&a)
        };
        let html = with("html");
        let page = dir.join(format!("{name}.html"));
        std::fs::write(&page, &html.stdout).unwrap();
        let dom = headless(&browser, &page, &dir.join(name));
        assert!(
            dom.contains("nnlint report"),
            "{name}: the page did not render"
        );
        assert_no_remote(&dom, name);
        let report: serde_json::Value =
            serde_json::from_slice(&with("json-report").stdout).unwrap();
        for file in report["files"].as_array().unwrap() {
            for f in file["findings"].as_array().unwrap() {
                let code = f["code"].as_str().unwrap();
                assert!(
                    dom.contains(&format!("[{code}]")),
                    "{name}: finding {code} is not on the page"
                );
            }
            let layers = file["measurements"]["layers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert_eq!(layers.is_empty(), *name == "diff", "{name}: probed layers");
            for l in layers {
                let node = escaped(l["node"].as_str().unwrap());
                assert!(
                    dom.contains(&format!("<code>{node}</code>")),
                    "{name}: layer {node} is not on the page"
                );
            }
        }
        if let Some(diff) = report.get("diff") {
            for l in diff["layers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["trainable"] == true)
            {
                let weight = escaped(l["name"].as_str().unwrap());
                assert!(
                    dom.contains(&format!("<code>{weight}</code>")),
                    "{name}: weight {weight}"
                );
            }
        }
        // Every chart drew: one svg per chart the page announces.
        assert_eq!(
            dom.matches("<svg").count(),
            dom.matches("<figure>").count(),
            "{name}: charts"
        );
    }
}
