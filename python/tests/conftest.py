"""Shared paths for the tests of the installed `nnlint` package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The checkout; the tests run against the installed package, not this folder's sources.
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fixture paths in the tests are relative to the checkout, as in the Rust tests.
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("NO_COLOR", "1")
    os.environ.pop("NNLINT_BIN", None)
