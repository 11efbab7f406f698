"""`nnlint.torch.check` on small real torch models defined in this file: the
findings must name this file and the line that built the layer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import nnlint  # noqa: E402
import nnlint.torch  # noqa: E402

HERE = Path(__file__).resolve()
EXPORTERS = ["dynamo", "torchscript"]


def line_of(text: str) -> int:
    """The line of this file that reads `text` (stripped), found so the test
    survives edits above it."""
    lines = [i + 1 for i, l in enumerate(HERE.read_text().splitlines()) if l.strip() == text]
    assert len(lines) == 1, text
    return lines[0]


class Clean(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.bn = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.fc1(x)))
        return self.fc2(self.drop(x))


class DropoutBeforeBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.drop = nn.Dropout(0.3)
        self.bn = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = self.drop(x)  # the bug: Dropout feeds BatchNorm
        x = self.bn(x)
        return self.fc2(x)


class DoubleSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        return torch.softmax(self.fc2(x), dim=-1)  # the bug: F.cross_entropy applies log-softmax again


def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 16, generator=g), torch.randint(0, 10, (8,), generator=g)


def check(model, exporter, **options):
    torch.manual_seed(0)
    x, y = batch()
    return nnlint.torch.check(model, (x,), target=y, loss=F.cross_entropy, exporter=exporter, **options)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_a_clean_model_passes(exporter):
    report = check(Clean(), exporter)
    report.raise_on("warning")
    assert all(f.severity == "note" for f in report), str(report)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_dropout_before_batchnorm_points_at_this_file(exporter):
    report = check(DropoutBeforeBatchNorm(), exporter)
    found = [f for f in report if f.rule == "dropout-before-batchnorm"]
    assert len(found) == 1, str(report)
    f = found[0]
    assert Path(f.file) == HERE
    assert f.line == line_of("x = self.drop(x)  # the bug: Dropout feeds BatchNorm")
    assert f.python is not None and f.python.function == "forward"
    assert f.python.check == ("verified" if exporter == "dynamo" else "unverified")
    assert f"{HERE}:{f.line}" in f.rendered
    with pytest.raises(nnlint.LintFailure, match="NN301"):
        report.raise_on("warning")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_double_softmax_points_at_this_file(exporter):
    report = check(DoubleSoftmax(), exporter)
    found = [f for f in report if f.rule == "double-softmax"]
    assert len(found) == 1, str(report)
    assert Path(found[0].file) == HERE
    assert found[0].line == line_of(
        "return torch.softmax(self.fc2(x), dim=-1)  # the bug: F.cross_entropy applies log-softmax again"
    )


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_check_leaves_parameters_buffers_and_modes_as_they_were(exporter):
    torch.manual_seed(1)
    model = DropoutBeforeBatchNorm()
    # Running statistics that are not the initial ones, and mixed modes.
    model.train()
    model(batch()[0])
    model.eval()
    model.drop.train()
    before = state(model)
    modes = {name: m.training for name, m in model.named_modules()}
    x, y = batch()
    rng = torch.random.get_rng_state()
    nnlint.torch.check(model, (x,), target=y, loss=F.cross_entropy, exporter=exporter)
    after = state(model)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert int(after["bn.num_batches_tracked"]) == 1
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_training_export_is_what_the_rules_see():
    # eval mode drops Dropout: the finding is gone, as the CLI says of eval exports.
    report = nnlint.torch.check(DropoutBeforeBatchNorm(), (batch()[0],), target=batch()[1], loss=F.cross_entropy, train=False)
    assert not [f for f in report if f.rule == "dropout-before-batchnorm"]


class DataDependent(nn.Module):
    def forward(self, x):
        return torch.linalg.eig(x)[0].real


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_an_export_failure_is_raised_with_torchs_message(exporter):
    with pytest.raises(nnlint.torch.ExportError) as e:
        nnlint.torch.check(DataDependent(), (torch.randn(4, 4),), exporter=exporter)
    assert f"torch.onnx.export ({exporter}) failed" in str(e.value)
    assert "hint:" in str(e.value)
    assert e.value.__cause__ is not None
    assert str(e.value.__cause__).strip().splitlines()[0] in str(e.value)


def test_options_reach_the_cli():
    report = check(DropoutBeforeBatchNorm(), "dynamo", ignore=["NN301"], probe=False)
    assert not [f for f in report if f.code == "NN301"]
    with pytest.raises(ValueError, match="needs a loss"):
        nnlint.torch.check(Clean(), (batch()[0],), target=batch()[1])


def readme_example() -> str:
    readme = (HERE.parents[2] / "README.md").read_text()
    section = readme[readme.index("## Python") :]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "the README's Python section has no python block"
    return block.group(1)


def test_the_readme_example_runs_as_written(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(readme_example())
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    # The example ends with raise_on("warning") on a model with Dropout before BatchNorm.
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nnlint.LintFailure" in done.stderr and "NN301" in done.stderr
    # print(report): the finding, at the example's own line.
    drop = [i + 1 for i, l in enumerate(script.read_text().splitlines()) if "self.drop(" in l]
    assert f"{script}:{drop[0]}" in done.stdout, done.stdout
