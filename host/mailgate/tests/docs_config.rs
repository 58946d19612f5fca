//! The docs check: every configuration key docs/configuration.md documents
//! is accepted by the parser, and every key the parser accepts is
//! documented there.
//!
//! What counts as documented: the first column of a table whose header's
//! first cell is `key`, under the section heading that names the table
//! (`## Top level`, ``## `[limits]` ``, ``## `[[dkim]]` ``, ...); a
//! top-level key that is itself a table is documented by its section. What
//! the parser accepts comes from the parser itself: every table is
//! `deny_unknown_fields`, so an unknown key's error lists the keys it
//! expects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mailgate::config::Config;

const DOCS: &str = include_str!("../../../docs/configuration.md");
const BASE: &str = "hostname = \"mx.example.org\"\ndata_dir = \"/tmp/mailgate-docs-check\"\n";
const PROBE: &str = "docs_check_unknown_key";

/// Section (`""` for the top level, `plugins`, `dkim`, ...) -> documented keys.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut sections: Vec<String> = Vec::new();
    let mut in_key_table = false;
    for line in DOCS.lines() {
        // `## `: a section; `### ` naming a table (`[[plugin]]`): a
        // subsection of its own.
        let heading = line.strip_prefix("## ").or_else(|| {
            line.strip_prefix("### ")
                .filter(|h| h.trim_start().starts_with("`["))
        });
        if let Some(heading) = heading {
            sections = if heading.trim() == "Top level" {
                vec![String::new()]
            } else {
                // ``[plugins]` and `[[plugin]]`` names two tables.
                heading
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|t| t.trim_matches(['[', ']']).to_string())
                    .collect()
            };
            in_key_table = false;
            continue;
        }
        let Some(row) = line.strip_prefix('|') else {
            in_key_table = false;
            continue;
        };
        let first = row.split('|').next().unwrap_or("").trim();
        if first == "key" {
            in_key_table = true;
            continue;
        }
        if !in_key_table || first.starts_with("---") {
            continue;
        }
        // `fuel`, `default_fuel`: two keys in one row.
        let section = sections.first().cloned().unwrap_or_default();
        for key in first.split(',').map(|k| k.trim().trim_matches('`')) {
            out.entry(section.clone())
                .or_default()
                .insert(key.to_string());
        }
    }
    out
}

/// The keys the parser accepts in `section` ("" = top level).
fn accepted(section: &str, array: bool) -> BTreeSet<String> {
    let text = match (section, array) {
        ("", _) => format!("{PROBE} = 1\n{BASE}"),
        (s, false) => format!("{BASE}[{s}]\n{PROBE} = 1\n"),
        (s, true) => format!("{BASE}[[{s}]]\n{PROBE} = 1\n"),
    };
    let err = Config::parse(&text, Path::new("probe.toml"))
        .expect_err("an unknown key is refused")
        .to_string();
    assert!(
        err.contains(&format!("unknown field `{PROBE}`")),
        "[{section}]: {err}"
    );
    let expected = err.split("expected").nth(1).unwrap_or("");
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn every_documented_key_is_accepted_and_every_accepted_key_documented() {
    let docs = documented();
    let top = accepted("", false);
    let mut problems = Vec::new();
    // Top-level keys that are tables: documented by their section.
    let sections: BTreeSet<&str> = docs.keys().map(String::as_str).collect();
    for key in &top {
        let as_section = sections.contains(key.as_str());
        let as_key = docs.get("").is_some_and(|d| d.contains(key));
        if !as_section && !as_key {
            problems.push(format!(
                "top-level key `{key}` is accepted but not documented"
            ));
        }
    }
    for (section, keys) in &docs {
        let parsed = if section.is_empty() {
            top.clone()
        } else {
            if !top.contains(section) {
                problems.push(format!(
                    "section [{section}] is documented but not accepted"
                ));
                continue;
            }
            let array = matches!(section.as_str(), "dkim" | "plugin");
            accepted(section, array)
        };
        for key in keys {
            if !parsed.contains(key) {
                problems.push(format!(
                    "[{section}] `{key}` is documented but not accepted"
                ));
            }
        }
        if section.is_empty() {
            continue;
        }
        for key in &parsed {
            if !keys.contains(key) {
                problems.push(format!(
                    "[{section}] `{key}` is accepted but not documented"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/configuration.md and the parser disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_sees_the_tables() {
    let docs = documented();
    assert!(docs[""].contains("hostname"));
    assert!(docs["limits"].contains("max_message_size"));
    assert!(docs["plugins"].contains("default_fuel"));
    assert!(docs["plugin"].contains("grants"));
    assert!(accepted("limits", false).contains("max_message_size"));
    assert!(accepted("plugin", true).contains("grants"));
}
