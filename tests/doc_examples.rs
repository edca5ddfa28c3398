//! Every example pipeline printed in README.md and docs/*.md runs.
//!
//! The rule, kept simple so that writers can follow it: a fenced block tagged `sh` holds commands
//! to run; each line starting with `$ ` is one command (a line ending in `\` continues on the
//! next), run by bash with `pipefail` from the repository root with `target/debug` first on
//! `PATH`, and must exit 0 and print something. Blocks tagged `console`, `text` or untagged are
//! shown, not run (servers, output, illustrations).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The runnable commands of one markdown text, with their line numbers.
fn commands(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut fence = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(tag) = line.trim_start().strip_prefix("```") {
            in_sh = !fence && tag.trim() == "sh";
            fence = !fence;
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some((at, mut cmd)) = pending.take() {
            cmd.push('\n');
            cmd.push_str(line);
            if line.ends_with('\\') {
                pending = Some((at, cmd));
            } else {
                out.push((at, cmd));
            }
        } else if let Some(cmd) = line.strip_prefix("$ ") {
            if cmd.ends_with('\\') {
                pending = Some((i + 1, cmd.to_string()));
            } else {
                out.push((i + 1, cmd.to_string()));
            }
        }
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn run(file: &Path, line: usize, cmd: &str) -> Result<(), String> {
    let path = format!(
        "{}:{}",
        root().join("target/debug").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .args(["-o", "pipefail", "-c", cmd])
        .current_dir(root())
        .env("PATH", path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("{}:{line}: `{cmd}` ran over 120 s", file.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    if !out.status.success() || out.stdout.is_empty() {
        return Err(format!(
            "{}:{line}: `{cmd}`: {} with stdout {:?}, stderr {}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

#[test]
fn every_example_pipeline_in_the_docs_runs() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, cmd) in commands(&text) {
            ran += 1;
            if let Err(e) = run(&file, line, &cmd) {
                failures.push(e);
            }
        }
    }
    assert!(
        ran > 0,
        "no runnable examples found: the `sh` block rule is not being followed"
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} examples failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_extractor_follows_the_rule() {
    let md = "```sh\n$ echo a \\\n  b\nnot a command\n$ true\n```\n```console\n$ false\n```\n```\n$ false\n```\n";
    assert_eq!(
        commands(md),
        [(2, "echo a \\\n  b".to_string()), (5, "true".to_string())]
    );
}

/// Each program's page lists every flag as `--help` prints it now (`pipeworks-docs --flags docs`
/// rewrites the blocks after a flag changes).
#[test]
fn every_program_page_lists_its_current_flags() {
    for entry in std::fs::read_dir(root().join("bin")).unwrap() {
        let name = entry
            .unwrap()
            .path()
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if name == "pipeworks-docs" {
            continue;
        }
        let page = std::fs::read_to_string(root().join(format!("docs/{name}.md")))
            .unwrap_or_else(|e| panic!("docs/{name}.md: {e}"));
        let out = Command::new(root().join(format!("target/debug/{name}")))
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        let block = page
            .split("\n## Every flag")
            .nth(1)
            .and_then(|s| s.split("```text\n").nth(1))
            .and_then(|s| s.split("\n```").next())
            .unwrap_or_else(|| panic!("docs/{name}.md has no \"## Every flag\" text block"));
        assert_eq!(
            block.trim_end(),
            help.trim_end(),
            "docs/{name}.md's flags differ from `{name} --help`: run `cargo run --features docs --bin pipeworks-docs -- --flags docs`"
        );
    }
}
