"""`python -m nnlint`: the command line, as the `nnlint` binary runs it."""

from __future__ import annotations

import os
import subprocess
import sys

from nnlint._find import find_nnlint_bin


def main() -> int:
    binary = find_nnlint_bin()
    if sys.platform == "win32":
        return subprocess.run([binary, *sys.argv[1:]]).returncode
    os.execvp(binary, [binary, *sys.argv[1:]])
    return 2  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main())
