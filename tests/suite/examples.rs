//! The example plugins in the repository's `plugins/` folder, so they never
//! rot: they pass `plughost check`, all start, and the pipeline
//! `text.raw` → wordcount → `text.stats` → digest works.
//!
//! The list of examples is read from the folder, so a new example is covered
//! without touching this file.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::support::{ev, run_binary};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins");

/// Every example plugin's name (from its `plugin.yaml`), in folder order.
fn example_names() -> Vec<String> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(EXAMPLES)
        .expect("read plugins/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("plugin.yaml").is_file())
        .collect();
    folders.sort();
    let names: Vec<String> = folders.iter().map(|f| manifest_name(f)).collect();
    assert!(!names.is_empty(), "no example plugins in {EXAMPLES}");
    names
}

/// The top-level `name:` of a plugin folder's manifest.
fn manifest_name(folder: &Path) -> String {
    let text = std::fs::read_to_string(folder.join("plugin.yaml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("name:"))
        .map(|n| n.trim().trim_matches(['"', '\'']).to_owned())
        .unwrap_or_else(|| panic!("{} has no `name:` line", folder.display()))
}

#[test]
fn the_examples_pass_check() {
    crate::native::example_built();
    let run = run_binary(&["check", EXAMPLES], None);
    run.expect_code(0);
    assert_eq!(run.stdout, "", "{run}");
}

#[test]
fn the_examples_start_and_count_words() {
    crate::native::example_built();
    let input = ev(
        "text.raw",
        json!({"text": "the quick brown fox jumps over the lazy dog"}),
    );
    let run = run_binary(
        &[
            "run",
            "--plugins",
            EXAMPLES,
            "--input",
            "-",
            "--tap",
            ">",
            "--exit-when-idle",
        ],
        Some(&format!("{input}\n")),
    );
    run.expect_code(0);

    let mut started: Vec<String> = run
        .payloads("plughost.plugin.started")
        .iter()
        .map(|p| p["plugin"].as_str().unwrap().to_owned())
        .collect();
    started.sort();
    let mut expected = example_names();
    expected.sort();
    assert_eq!(started, expected, "every example starts\n{run}");
    assert!(run.on("plughost.plugin.failed").is_empty(), "{run}");
    assert!(run.dead_letters().is_empty(), "{run}");

    let from_input: Vec<_> = run
        .on("text.raw")
        .into_iter()
        .filter(|e| e["source"] == "host")
        .collect();
    assert_eq!(from_input.len(), 1, "{run}");
    let stats: Vec<_> = run
        .on("text.stats")
        .into_iter()
        .filter(|e| e["correlation_id"] == from_input[0]["id"])
        .collect();
    assert_eq!(stats.len(), 1, "one text.stats for the input\n{run}");
    assert_eq!(stats[0]["source"], "wordcount");
    assert_eq!(stats[0]["payload"]["words"], 9, "{run}");
    assert_eq!(stats[0]["payload"]["longest"], "quick", "{run}");
}
