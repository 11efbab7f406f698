#!/usr/bin/env bash
# cargo-deny on the dependency tree, by deny.toml: licenses, banned crates
# (onnx-protobuf and the protobuf it pins) and sources always; the RustSec
# advisories when the advisory database can be fetched (it is a git
# repository on github.com, which a CI machine limited to the package
# registries cannot reach: then it says so and checks the rest).
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q " $version\$"; then
    # A debug build: it checks a lock file, and compiles in half the time.
    cargo install cargo-deny --debug --locked --version "$version"
fi
# `--offline` keeps cargo-deny off the advisory database's git remote; the
# crates themselves come from the registry first, every platform's, since
# `cargo metadata` resolves the windows-only ones too (a fresh machine has
# none of them cached, and the offline check then fails to start).
cargo fetch --locked --quiet
cargo deny --offline check --hide-inclusion-graph bans licenses sources
if cargo deny fetch db >/dev/null 2>&1; then
    cargo deny --offline check --hide-inclusion-graph advisories
else
    echo "deny: advisories not checked: the RustSec database could not be fetched (no network to github.com)"
fi
