//! `docs/cli.md` is what `cargo xtask codegen` renders from the clap definitions (the same
//! renderer, `xtask/src/cli_docs.rs`). Set `IDBIND_BLESS=1` to rewrite it from here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../xtask/src/cli_docs.rs"]
mod cli_docs;

#[test]
fn docs_cli_md_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
    let rendered = cli_docs::render();
    if std::env::var_os("IDBIND_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == rendered,
        "docs/cli.md is stale: run `cargo xtask codegen` (or IDBIND_BLESS=1 cargo test -p idbind-cli --test docs)"
    );
    for want in [
        "## `idbind binding create`",
        "## `idbind doctor`",
        "| 3 | checks found problems",
        "Examples:",
    ] {
        assert!(rendered.contains(want), "{want}");
    }
    assert!(!rendered.contains("\u{1b}["), "no terminal escapes");
}
