//! What a clean run did not check: a model's state, and the rule families
//! its graph gave nothing to look at (`fixtures/coverage`, made by
//! `fixtures/generate.py coverage` from a CNN with Dropout before BatchNorm
//! and a softmax before `F.cross_entropy`).

use crate::common::{nnlint, text};

const FAMILIES: &str = "loss rules (the graph has no loss) and dropout and batch-norm rules (the graph has no Dropout or training-mode BatchNorm) could not look";

/// Exported the ways that hide both bugs, the model lints clean, and the
/// output says which rule families could not look and the call that lets them.
#[test]
fn an_export_that_hides_the_bugs_says_what_could_not_look() {
    for model in [
        "fixtures/coverage/buggy_cnn_eval_dynamo.onnx",
        // TorchScript after `model.train()` without `training=` exports eval mode.
        "fixtures/coverage/buggy_cnn_train_torchscript_default.onnx",
    ] {
        let out = nnlint(&["--isolated", model]);
        assert_eq!(out.status.code(), Some(0), "{model}");
        let stdout = text(&out.stdout);
        assert!(stdout.contains(&format!("{model}: {FAMILIES}")), "{stdout}");
        assert!(
            stdout.contains("torch.onnx.export(WithLoss(model), (x, y), path, dynamo=True)"),
            "{stdout}"
        );
        assert!(stdout.contains("README: Exporting for nnlint"), "{stdout}");
    }
}

/// The README's recipe, run as written by the fixture script on the same
/// model, lets both rules find both bugs, with either exporter.
#[test]
fn the_readme_recipe_lets_the_rules_look() {
    for model in [
        "fixtures/coverage/model_dynamo.onnx",
        "fixtures/coverage/model_torchscript.onnx",
    ] {
        let out = nnlint(&["--isolated", "--format", "short", model]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains("warning[NN301]: dropout feeds batch normalization"),
            "{stdout}"
        );
        assert!(
            stdout.contains("error[NN101]: softmax output is normalized twice"),
            "{stdout}"
        );
        let human = text(&nnlint(&["--isolated", model]).stdout);
        assert!(!human.contains("could not look"), "{human}");
    }
}

/// The fixtures were made from the README's block as it reads now: editing
/// the recipe without regenerating them fails here.
#[test]
fn the_recipe_fixtures_come_from_the_readme_as_it_is() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let block = readme
        .split_once("### Exporting for nnlint")
        .and_then(|(_, rest)| rest.split_once("```python\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("README.md has the export recipe");
    let recorded = std::fs::read_to_string("fixtures/coverage/RECIPE.sha256").unwrap();
    use sha2::{Digest, Sha256};
    let digest: String = Sha256::digest(block.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        Some(digest.as_str()),
        recorded.split_whitespace().next(),
        "README.md's recipe changed: run `python fixtures/generate.py coverage` and re-bless"
    );
}
