//! docs/plugin-guide.md shows complete plugins; they must be the very files
//! the tests build. Each `<!-- include: PATH LANG -->` marker is followed by a
//! fenced block that must equal the file. `PLUGBOARD_UPDATE_GUIDE=1 cargo test
//! -p plugboard-tests --test guide` rewrites the blocks from the files.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// The guide with every included block replaced by the file's current text.
fn expand(guide: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(guide.len());
    let mut included = Vec::new();
    let mut lines = guide.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        out.push_str(line);
        let Some(spec) = line.trim().strip_prefix("<!-- include: ").and_then(|s| s.strip_suffix(" -->")) else {
            continue;
        };
        let (path, lang) = spec.split_once(' ').expect("marker: <!-- include: PATH LANG -->");
        // Drop the old block (if any) that follows the marker.
        if lines.peek().is_some_and(|l| l.starts_with("```")) {
            lines.next();
            for l in lines.by_ref() {
                if l.trim_end() == "```" {
                    break;
                }
            }
        }
        let text = std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        out.push_str(&format!("```{lang}\n{text}```\n"));
        included.push(path.to_owned());
    }
    (out, included)
}

#[test]
fn the_guide_shows_the_plugins_the_tests_build() {
    let path = repo().join("docs/plugin-guide.md");
    let guide = std::fs::read_to_string(&path).expect("docs/plugin-guide.md");
    let (expanded, included) = expand(&guide);
    for expected in ["contrib/echo/src/main.rs", "contrib/go/executor/main.go", "contrib/python/reverse.py"] {
        assert!(included.iter().any(|p| p == expected), "the guide must include {expected}");
    }
    if std::env::var_os("PLUGBOARD_UPDATE_GUIDE").is_some() {
        std::fs::write(&path, &expanded).expect("rewrite the guide");
        return;
    }
    assert!(
        guide == expanded,
        "docs/plugin-guide.md is out of date with the plugin sources: run \
         PLUGBOARD_UPDATE_GUIDE=1 cargo test -p plugboard-tests --test guide"
    );
}
