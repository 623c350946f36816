//! docs/config.md is the configuration reference: every key the parser
//! accepts has a row in it. The keys are read from the parser's own
//! `Raw*` structs (serde refuses every key not named there), so a key added
//! to the code without a line in the reference fails here.

use std::path::Path;

/// The field names of `struct NAME { ... }` in `source`.
fn fields(source: &str, name: &str) -> Vec<String> {
    let start = source
        .find(&format!("struct {name} {{"))
        .unwrap_or_else(|| panic!("struct {name} not found in config.rs"));
    let body = &source[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
    body.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.starts_with("#["))
        .filter_map(|l| l.split_once(':').map(|(f, _)| f.trim()))
        .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_config_key_has_a_row_in_docs_config_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/config.rs")).unwrap();
    let doc = std::fs::read_to_string(root.join("../docs/config.md")).unwrap();
    let mut checked = 0;
    for (table, raw) in [
        ("top level", "RawConfig"),
        ("[[peer]]", "RawPeer"),
        ("[[service]]", "RawService"),
    ] {
        for key in fields(&source, raw) {
            // `peer` and `service` at top level are the tables themselves.
            if raw == "RawConfig" && (key == "peer" || key == "service") {
                continue;
            }
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "docs/config.md has no row for the {table} key `{key}`"
            );
            checked += 1;
        }
    }
    // The three structs were found and read (not an empty pass).
    assert!(checked >= 25, "only {checked} keys read from config.rs");
}
