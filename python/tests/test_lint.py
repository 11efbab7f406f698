"""`nnlint.lint`, `Report` and the installed commands, without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nnlint

BUGGY = "fixtures/torch/dropout_bn_mlp_dynamo_train.onnx"
CLEAN = "fixtures/torch/bn_dropout_mlp_dynamo_train.onnx"


def test_the_installed_binary_and_python_m_print_the_same():
    binary = nnlint.find_nnlint_bin()
    assert Path(binary).is_file()
    # The binary the wheel installed, not a cargo build of the checkout.
    assert "target" not in Path(binary).parts
    direct = subprocess.run([binary, BUGGY], capture_output=True, text=True)
    module = subprocess.run([sys.executable, "-m", "nnlint", BUGGY], capture_output=True, text=True)
    assert direct.returncode == module.returncode == 1
    assert "warning[NN301]: dropout feeds batch normalization" in direct.stdout
    assert module.stdout == direct.stdout
    assert subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.startswith("nnlint ")


def test_lint_returns_typed_findings_at_the_python_line():
    report = nnlint.lint(BUGGY)
    assert len(report) == 1
    f = report[0]
    assert (f.rule, f.code, f.severity) == ("dropout-before-batchnorm", "NN301", "warning")
    assert f.node == "node_native_dropout__1"
    assert f.model == BUGGY
    assert f.python is not None and f.python.check == "verified"
    # The generator's line that created the Dropout, reported as the location.
    assert f.file == "fixtures/generate.py" == f.python.file
    line = Path("fixtures/generate.py").read_text().splitlines()[f.line - 1]
    assert line.strip() == "x = self.drop(x)"
    assert f.help and f.notes
    assert "warning[NN301]" in f.rendered and "created here" in f.rendered


def test_str_is_the_cli_human_output_and_location_model_is_the_flag():
    report = nnlint.lint(BUGGY, location="model")
    cli = subprocess.run([nnlint.find_nnlint_bin(), "--color", "never", BUGGY], capture_output=True, text=True)
    text = str(report)
    # Every finding as the CLI prints it, and the CLI's summary line.
    for f in report:
        assert f.rendered in cli.stdout
    assert text.endswith("nnlint: 1 warning\n") and cli.stdout.endswith("nnlint: 1 warning\n")
    assert report[0].file == BUGGY


def test_a_clean_report_says_so_and_raise_on_passes():
    report = nnlint.lint(CLEAN)
    assert report.at_least("warning") == []
    report.raise_on("warning")
    assert len(report) == 0
    assert str(report) == "All checks passed!\n"


def test_raise_on_raises_with_the_findings():
    report = nnlint.lint(BUGGY)
    with pytest.raises(nnlint.LintFailure) as e:
        report.raise_on("warning")
    assert e.value.findings == report.findings
    assert "NN301" in str(e.value)
    report.raise_on("error")  # a warning is below error
    with pytest.raises(ValueError):
        report.raise_on("fatal")


def test_options_are_the_cli_flags():
    assert len(nnlint.lint(BUGGY, ignore=["dropout-before-batchnorm"])) == 0
    assert len(nnlint.lint(BUGGY, select="NN3", probe=False)) == 1
    assert [f.code for f in nnlint.lint(BUGGY, select=["NN1"])] == []
    deep = "fixtures/gradients/grad_deep_bn_dynamo_train.onnx"
    assert "gradient-scale" in {f.rule for f in nnlint.lint(deep, isolated=True)}
    assert "gradient-scale" not in {f.rule for f in nnlint.lint(deep, isolated=True, grad=False)}
    skipped = [f for f in nnlint.lint(deep, isolated=True, probe_time=1e-6) if f.rule == "probe-skipped"]
    assert skipped and "over the probe's time budget" in skipped[0].message


def test_exit_2_raises_with_the_cli_message_and_keeps_the_other_files():
    with pytest.raises(nnlint.NnlintError) as e:
        nnlint.lint(["no/such/model.onnx", BUGGY])
    assert e.value.returncode == 2
    assert "no/such/model.onnx" in e.value.message and "no such file" in e.value.message
    assert e.value.report is not None and [f.code for f in e.value.report] == ["NN301"]
    with pytest.raises(nnlint.NnlintError, match="unknown rule selector `dead-rel`.*did you mean `dead-relu`"):
        nnlint.lint(BUGGY, select="dead-rel")


def test_to_json_is_the_cli_json():
    report = nnlint.lint(BUGGY)
    cli = subprocess.run([nnlint.find_nnlint_bin(), "--format", "json", BUGGY], capture_output=True, text=True)
    assert json.loads(report.to_json()) == json.loads(cli.stdout)


def test_jupyter_shows_the_cli_html_report_in_a_frame():
    import html

    report = nnlint.lint(BUGGY)
    page = report.html()
    assert page.startswith("<!DOCTYPE html>")
    assert "warning[NN301]" in page and "dropout-before-batchnorm" in page
    # The same run: its command line and the model's sha256 head the page.
    assert "--format html" in page and "sha256" in page
    frame = report._repr_html_()
    assert frame.startswith('<iframe srcdoc="') and "sandbox" in frame
    assert html.unescape(frame[len('<iframe srcdoc="') : frame.index('" sandbox')]) == page
    assert "<script" not in frame.lower()


def test_a_report_not_made_by_lint_shows_a_table_escaped():
    page = nnlint.Report(list(nnlint.lint(BUGGY)))._repr_html_()
    assert "<table>" in page and "NN301" in page and "dropout-before-batchnorm" in page
    assert "<td>x = self.drop" not in page  # text, not markup


def test_importing_nnlint_needs_neither_torch_nor_onnx():
    code = (
        "import sys\n"
        "for blocked in ('torch', 'onnx', 'onnxscript', 'numpy'):\n"
        "    sys.modules[blocked] = None\n"
        "import nnlint\n"
        f"print(len(nnlint.lint({BUGGY!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_nnlint_bin_overrides_the_search(tmp_path, monkeypatch):
    found = nnlint.find_nnlint_bin()
    monkeypatch.setenv("NNLINT_BIN", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="NNLINT_BIN"):
        nnlint.find_nnlint_bin()
    monkeypatch.setenv("NNLINT_BIN", found)
    assert nnlint.find_nnlint_bin() == found


def test_an_empty_folder_is_a_warning_not_an_error(tmp_path):
    report = nnlint.lint(tmp_path)
    assert len(report) == 0
    assert report.warnings == [f"no models (.onnx, .onnxtxt) found in {tmp_path}"]
