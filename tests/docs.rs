//! The generated man pages and shell completions (`make docs`): every program has them, mandoc
//! renders every page without an error, and a real bash completes from the generated script.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every program of the repository: the files in bin/ other than the generator itself.
fn programs() -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("bin"))
            .expect("bin/")
            .map(|e| {
                e.unwrap()
                    .path()
                    .file_stem()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n != "pipeworks-docs")
            .collect();
    names.sort();
    names
}

/// Run the generator (built by `make test` with `--features docs`) into a fresh directory.
fn generate() -> (tempfile::TempDir, PathBuf) {
    let exe = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/pipeworks-docs");
    assert!(
        exe.exists(),
        "{} is missing: build it with `cargo build --features docs --bin pipeworks-docs` (make test does)",
        exe.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(&exe).arg(dir.path()).status().unwrap();
    assert!(status.success(), "pipeworks-docs failed: {status}");
    let path = dir.path().to_path_buf();
    (dir, path)
}

#[test]
fn every_program_has_a_man_page_that_mandoc_renders_without_errors() {
    let (_keep, dir) = generate();
    for name in programs() {
        let page = dir.join(format!("man/man1/{name}.1"));
        assert!(page.exists(), "no man page for {name}");
        let lint = Command::new("mandoc")
            .args(["-T", "lint", "-W", "error"])
            .arg(&page)
            .output()
            .expect("mandoc (make test installs it)");
        assert!(
            lint.status.success(),
            "mandoc -T lint {name}.1: {}{}",
            String::from_utf8_lossy(&lint.stdout),
            String::from_utf8_lossy(&lint.stderr)
        );
        let source = std::fs::read_to_string(&page).unwrap();
        assert!(
            source.contains(&format!(".TH {name} 1")) && source.contains("help"),
            "{name}.1 lacks its title or its options:\n{source}"
        );
        for shell in [
            format!("bash/{name}.bash"),
            format!("zsh/_{name}"),
            format!("fish/{name}.fish"),
        ] {
            assert!(dir.join(&shell).exists(), "no {shell} completion");
        }
    }
}

/// What bash offers for `words` (the last one is being completed) with the generated script.
fn complete(dir: &Path, words: &[&str]) -> Vec<String> {
    let script = format!(
        r#"source "$1"
fn=$(complete -p {prog} | sed -E 's/.*-F ([^ ]+).*/\1/')
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
"$fn" {prog} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        prog = words[0],
        words = words.join(" "),
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script, "complete"])
        .arg(dir.join(format!("bash/{}.bash", words[0])))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_window_agg_min_to_minutes() {
    let (_keep, dir) = generate();
    assert_eq!(complete(&dir, &["window-agg", "--min"]), ["--minutes"]);
    // And a value-less prefix offers every flag that starts with it.
    let offered = complete(&dir, &["allocate", "--st"]);
    assert!(
        offered.contains(&"--strategy".to_string()) && offered.contains(&"--state".to_string()),
        "{offered:?}"
    );
}
