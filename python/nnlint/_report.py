"""`nnlint.lint`: run the binary with `--format json` and read its findings."""

from __future__ import annotations

import html
import json
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from nnlint._find import find_nnlint_bin

PathLike = Union[str, "os.PathLike[str]"]

#: Severities from least to most severe, as the CLI orders them.
SEVERITIES = ("note", "warning", "error")


class NnlintError(Exception):
    """The CLI exited with status 2: a file, the configuration or an option
    could not be used. ``message`` is what it printed; ``report`` holds the
    findings on the files it could lint (``None`` when it linted none)."""

    def __init__(self, message: str, returncode: int, report: Optional["Report"] = None):
        super().__init__(message)
        self.message = message
        self.returncode = returncode
        self.report = report


class LintFailure(AssertionError):
    """Raised by :meth:`Report.raise_on`; its text is the findings as the CLI prints them."""

    def __init__(self, findings: List["Finding"], threshold: str):
        self.findings = findings
        self.threshold = threshold
        text = "".join(f.rendered for f in findings)
        super().__init__(f"nnlint: {_counts(findings)} (raise_on({threshold!r}))\n\n{text}")


@dataclass(frozen=True)
class Span:
    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True)
class PythonLocation:
    """The Python line that created the finding's node, as torch recorded it."""

    file: str
    line: int
    #: The line torch recorded; differs from ``line`` when the file moved it.
    recorded_line: int
    function: str
    module: Optional[str]
    cls: Optional[str]
    #: Whether the file was found and read.
    readable: bool
    #: ``verified``, ``unverified``, ``moved``, ``changed`` or ``unread``.
    check: str


@dataclass(frozen=True)
class Finding:
    rule: str
    code: str
    severity: str
    message: str
    #: The ONNX node it is about.
    node: Optional[str]
    #: The reported location: the Python line when known and readable, else the model.
    file: str
    span: Span
    #: The model file and the position in it (its listing, for a binary model).
    model: str
    model_span: Span
    python: Optional[PythonLocation]
    notes: List[str] = field(default_factory=list)
    help: List[str] = field(default_factory=list)
    #: The finding as the CLI's human format prints it.
    rendered: str = ""
    #: What the rule measured along the way, by name: ``series["loss"]`` is
    #: the loss at each step of ``cannot-overfit``'s fit (``None`` where it
    #: was not finite).
    series: Dict[str, List[Optional[float]]] = field(default_factory=dict)
    #: The finding as the CLI's json format writes it.
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}[{self.code}]: {self.message}"

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Finding":
        def span(o: Mapping[str, Any]) -> Span:
            return Span(o["line"], o["column"], o["end_line"], o["end_column"])

        py = d.get("python")
        return cls(
            rule=d["rule"],
            code=d["code"],
            severity=d["severity"],
            message=d["message"],
            node=d.get("node"),
            file=d["file"],
            span=span(d),
            model=d["model"]["file"],
            model_span=span(d["model"]),
            python=None
            if py is None
            else PythonLocation(
                file=py["file"],
                line=py["line"],
                recorded_line=py["recorded_line"],
                function=py["function"],
                module=py.get("module"),
                cls=py.get("class"),
                readable=py["readable"],
                check=py["check"],
            ),
            notes=list(d.get("notes", [])),
            help=list(d.get("help", [])),
            rendered=d.get("rendered", ""),
            series={s["name"]: list(s["values"]) for s in d.get("series", [])},
            raw=dict(d),
        )


def _counts(findings: Sequence[Finding]) -> str:
    parts = []
    for sev in reversed(SEVERITIES):
        n = sum(1 for f in findings if f.severity == sev)
        if n:
            parts.append(f"{n} {sev}{'' if n == 1 else 's'}")
    return ", ".join(parts)


class Report:
    """The findings of one run, in the CLI's order (file, model, position)."""

    def __init__(
        self,
        findings: Sequence[Finding],
        paths: Sequence[str] = (),
        warnings: Sequence[str] = (),
        rerun: Optional[Sequence[str]] = None,
        cwd: Optional[PathLike] = None,
    ):
        self.findings: List[Finding] = list(findings)
        #: The paths that were linted, as given.
        self.paths: List[str] = list(paths)
        #: What the CLI warned of on stderr, such as a folder with no models.
        self.warnings: List[str] = list(warnings)
        # The command line that made the findings, without its format, for `html()`.
        self._rerun = list(rerun) if rerun is not None else None
        self._cwd = cwd
        self._html: Optional[str] = None

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    def __getitem__(self, i: int) -> Finding:
        return self.findings[i]

    def __repr__(self) -> str:
        return f"<nnlint.Report: {_counts(self.findings) or 'no findings'}>"

    def __str__(self) -> str:
        """The findings as the CLI's human format prints them, with its summary line."""
        if not self.findings:
            return "All checks passed!\n"
        return "".join(f.rendered for f in self.findings) + f"nnlint: {_counts(self.findings)}\n"

    def at_least(self, severity: str) -> List[Finding]:
        """The findings at ``severity`` or above."""
        floor = _severity_index(severity)
        return [f for f in self.findings if SEVERITIES.index(f.severity) >= floor]

    def raise_on(self, severity: str = "warning") -> None:
        """Raise :class:`LintFailure` when a finding is at ``severity`` or above
        (``"error"``, ``"warning"`` or ``"note"``), as ``--fail-on`` decides the exit status."""
        found = self.at_least(severity)
        if found:
            raise LintFailure(found, severity)

    def to_json(self, **dumps: Any) -> str:
        """The findings as the CLI's json format writes them."""
        dumps.setdefault("indent", 2)
        return json.dumps([f.raw for f in self.findings], **dumps)

    def html(self) -> Optional[str]:
        """The CLI's ``--format html`` page of the same run: the findings with
        their listings, the depth profile, the loss and the fit curve.

        The page is made by running the lint again with the same options
        (the probe is seeded, so it finds the same), once; ``None`` when this
        report was not made by :func:`lint` or the run fails."""
        if self._html is None and self._rerun is not None:
            args = [self._rerun[0], "--format", "html", *self._rerun[1:]]
            done = subprocess.run(args, capture_output=True, text=True, cwd=self._cwd, env=dict(os.environ, NO_COLOR="1"))
            if done.returncode in (0, 1) and done.stdout.startswith("<!DOCTYPE html>"):
                self._html = done.stdout
        return self._html

    def _repr_html_(self) -> str:
        """Jupyter's view: the html report in a sandboxed frame (its styles
        stay inside it), or a table of the findings when it cannot be made."""
        page = self.html()
        if page is not None:
            return (
                f'<iframe srcdoc="{html.escape(page, quote=True)}" sandbox '
                'style="width:100%;height:720px;border:1px solid #ddd"></iframe>'
            )
        return self._table_html()

    def _table_html(self) -> str:
        if not self.findings:
            return "<p><b>nnlint</b>: all checks passed</p>"
        rows = []
        for f in self.findings:
            colour = {"error": "#c62828", "warning": "#ef6c00", "note": "#1565c0"}[f.severity]
            where = html.escape(f"{f.file}:{f.line}")
            detail = "<br>".join(html.escape(n) for n in [*f.notes, *("help: " + h for h in f.help)])
            rows.append(
                "<tr>"
                f'<td style="color:{colour};font-weight:bold">{html.escape(f.severity)}</td>'
                f"<td><code>{html.escape(f.code)}</code> {html.escape(f.rule)}</td>"
                f"<td><code>{where}</code></td>"
                f"<td>{html.escape(f.message)}<br><small>{detail}</small></td>"
                "</tr>"
            )
        return (
            f"<p><b>nnlint</b>: {html.escape(_counts(self.findings))}</p>"
            "<table><tr><th>severity</th><th>rule</th><th>where</th><th>finding</th></tr>"
            + "".join(rows)
            + "</table>"
        )


def _severity_index(severity: str) -> int:
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}") from None


def _listed(value: Union[None, str, Sequence[str]]) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def lint(
    paths: Union[PathLike, Sequence[PathLike]],
    *,
    select: Union[None, str, Sequence[str]] = None,
    extend_select: Union[None, str, Sequence[str]] = None,
    ignore: Union[None, str, Sequence[str]] = None,
    config: Optional[PathLike] = None,
    isolated: bool = False,
    location: str = "python",
    show_suppressed: bool = False,
    model_state: Optional[str] = None,
    probe: bool = True,
    grad: bool = True,
    seed: Optional[int] = None,
    dims: Optional[Mapping[str, int]] = None,
    inputs: Optional[Mapping[str, PathLike]] = None,
    batch: Optional[int] = None,
    probe_memory: Optional[int] = None,
    probe_time: Optional[float] = None,
    overfit_steps: Optional[int] = None,
    lr: Optional[float] = None,
    optimizer: Optional[str] = None,
    respect_gitignore: bool = True,
    cwd: Optional[PathLike] = None,
) -> Report:
    """Lint model files or folders, as ``nnlint PATH...`` does, and return the findings.

    Each keyword is the CLI flag of the same name (``select=["NN3"]`` is
    ``--select NN3``; ``probe=False`` is ``--no-probe``, ``grad=False`` ``--no-grad``; ``dims={"batch": 8}``
    is ``--dim batch=8``; ``inputs={"x": "x.npy"}`` is ``--input x=x.npy``;
    ``lr=0.1, optimizer="sgd"`` is ``--lr 0.1 --optimizer sgd``).
    Raises :class:`NnlintError` with the CLI's message when it exits with 2.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    given = [os.fspath(p) for p in paths]
    binary = find_nnlint_bin()
    args = [binary, "--format", "json", "--color", "never", "--location", location]
    for flag, value in (("--select", select), ("--extend-select", extend_select), ("--ignore", ignore)):
        listed = _listed(value)
        if listed:
            args += [flag, ",".join(listed)]
    if config is not None:
        args += ["--config", os.fspath(config)]
    if isolated:
        args.append("--isolated")
    if show_suppressed:
        args.append("--show-suppressed")
    if model_state is not None:
        args += ["--model-state", model_state]
    if not probe:
        args.append("--no-probe")
    if not grad:
        args.append("--no-grad")
    if seed is not None:
        args += ["--seed", str(seed)]
    for name, value in (dims or {}).items():
        args += ["--dim", f"{name}={value}"]
    for name, value in (inputs or {}).items():
        args += ["--input", f"{name}={os.fspath(value)}"]
    if batch is not None:
        args += ["--batch", str(batch)]
    if probe_memory is not None:
        args += ["--probe-memory", str(probe_memory)]
    if probe_time is not None:
        args += ["--probe-time", repr(float(probe_time))]
    if overfit_steps is not None:
        args += ["--overfit-steps", str(overfit_steps)]
    if lr is not None:
        args += ["--lr", repr(float(lr))]
    if optimizer is not None:
        args += ["--optimizer", optimizer]
    if not respect_gitignore:
        args.append("--no-respect-gitignore")
    args.append("--")
    args += given
    env = dict(os.environ, NO_COLOR="1")
    done = subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env)
    report = None
    warned = [line[len("warning: ") :] for line in done.stderr.splitlines() if line.startswith("warning: ")]
    if done.stdout.strip():
        try:
            rerun = [binary, *args[3:]]
            report = Report([Finding.from_json(d) for d in json.loads(done.stdout)], given, warned, rerun, cwd)
        except (ValueError, KeyError, TypeError) as e:
            raise NnlintError(f"nnlint printed output this package cannot read: {e}", done.returncode) from e
    if done.returncode not in (0, 1):
        message = done.stderr.strip() or f"nnlint exited with status {done.returncode}"
        raise NnlintError(message, done.returncode, report)
    return report if report is not None else Report([], given, warned, [binary, *args[3:]], cwd)
