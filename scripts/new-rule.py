#!/usr/bin/env python3
"""Writes a new rule's three parts: its file, its page and a fixture.

    python3 scripts/new-rule.py NAME GROUP --op OP [--summary TEXT]
    python3 scripts/new-rule.py silent-identity connections --op Identity

- `src/rules/GROUP/NAME.rs`: the rule's metadata (the next free code of the
  group, warning by default, no premises) and a `check` that reports every
  OP node, the start of what the rule looks for. build.rs registers it: no
  other file lists rules.
- `rules/NAME.md`: its page, with the headings every page has
  (tests/it/rules.rs checks them), to fill in.
- `fixtures/text/NAME.onnxtxt`: a text model with one OP node, where the
  rule fires.

Then write the rule and its page, make the fixture show the bug, and bless
its expected output and its row in docs/rules.md (CONTRIBUTING.md, "Tests"):

    NNLINT_BLESS=1 cargo test --locked --test it -- ui:: rules::the_user_guide

and review the new `fixtures/text/NAME.expected`, and the expectations of
other fixtures where the new rule fires too (`git diff fixtures/`). The rule matrix fails
until some fixture fires the rule, and the page test until the page is whole.
"""

import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# A group's folder, the first digit of its codes, and its category.
GROUPS = {
    "file": (0, "Validity"),
    "loss": (1, "Loss"),
    "connections": (2, "Connections"),
    "parameters": (3, "Parameters"),
    "measured": (4, "Probe"),
    "checkpoints": (5, "Parameters"),
}

RULE = '''//! {summary}.

use crate::diag::{{Diagnostic, Severity}};
use crate::rules::{{Category, Check, Pass, Rule, RuleMeta}};

pub(crate) static META: RuleMeta = RuleMeta {{
    name: "{name}",
    code: "{code}",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::{category},
    premises: &[],
    absorbs: &[],
    summary: "{summary}",
    options: &[],
    explanation: include_str!("../../../rules/{name}.md"),
}};

pub(crate) struct {rule};

impl Rule for {rule} {{
    fn meta(&self) -> &'static RuleMeta {{
        &META
    }}

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {{
        // Each `{op}` node: narrow this to the nodes that show the bug.
        for node in cx.graph.nodes_of("{op}") {{
            out.push(
                Diagnostic::new(&META, "{summary}")
                    .with_node(node.name())
                    .primary(node.op_span(), "here"),
            );
        }}
    }}
}}
'''

PAGE = '''# {name}

## What it does
Reports each `{op}` node that ...

## Why is this bad?
...

## Example
```python
...
```

## How to fix
```python
...
```

## References
- ...
'''

FIXTURE = '''# {name}: one `{op}` node, where the rule fires.
<ir_version: 10, opset_import: ["" : 20]>
g (float[N,8] x) => (float[N,8] y)
{{
    [{snake}] y = {op} (x)
}}
'''


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="kebab-case, as users select it: silent-identity")
    parser.add_argument("group", choices=sorted(GROUPS))
    parser.add_argument("--op", required=True, help="the ONNX op the rule starts from: Identity")
    parser.add_argument("--summary", help="one line, lowercase, no final period")
    args = parser.parse_args()
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", args.name):
        sys.exit(f"new-rule: `{args.name}` is not a kebab-case name")
    snake = args.name.replace("-", "_")
    rule = "".join(w.capitalize() for w in snake.split("_"))
    digit, category = GROUPS[args.group]
    used = set()
    for f in (ROOT / "src" / "rules").glob("*/*.rs"):
        used.update(int(c) for c in re.findall(r'code: "NN(\d{3})"', f.read_text()))
    in_group = sorted(c for c in used if c // 100 == digit)
    code = in_group[-1] + 1 if in_group else digit * 100
    if code >= digit * 100 + 100:
        free = [c for c in range(digit * 100, digit * 100 + 100) if c not in used]
        if not free:
            sys.exit(f"new-rule: the {args.group} group has no free code")
        code = free[0]
    code = f"NN{code:03d}"
    summary = args.summary or f"`{args.op}` node that ..."
    files = {
        ROOT / "src" / "rules" / args.group / f"{snake}.rs": RULE,
        ROOT / "rules" / f"{args.name}.md": PAGE,
        ROOT / "fixtures" / "text" / f"{snake}.onnxtxt": FIXTURE,
    }
    for path in files:
        if path.exists():
            sys.exit(f"new-rule: {path.relative_to(ROOT)} exists already")
    values = dict(name=args.name, snake=snake, rule=rule, code=code, category=category,
                  summary=summary, op=args.op)
    for path, template in files.items():
        path.write_text(template.format(**values))
        print(f"new-rule: wrote {path.relative_to(ROOT)}")
    print(f"new-rule: {args.name} is {code}; bless its fixture and its row in docs/rules.md with "
          "NNLINT_BLESS=1 cargo test --locked --test it -- ui:: rules::the_user_guide")


if __name__ == "__main__":
    main()
