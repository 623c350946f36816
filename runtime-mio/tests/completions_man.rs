//! `sdt completions SHELL` and `sdt man`: what they print is a script each
//! shell accepts and manual pages mandoc finds no error in, covering every
//! subcommand (both are generated from the clap definitions, so a new
//! subcommand shows up in them by itself; this pins that it does).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{require_tool, run, SDT};

/// The subcommands a user can type (`help` is clap's own).
const SUBCOMMANDS: &[&str] = &[
    "genkey",
    "pubkey",
    "genpsk",
    "check",
    "run",
    "reload",
    "status",
    "completions",
    "man",
    "demo",
];

fn sdt(args: &[&str]) -> support::Ran {
    let ran = run(
        Command::new(SDT).args(args).env_remove("RUST_LOG"),
        Duration::from_secs(10),
    );
    assert!(ran.ok(), "sdt {args:?}: {ran}");
    ran
}

/// `program ARGS` with `input` on stdin; its status and stderr.
fn with_stdin(program: &str, args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each shell parses its script without error (`-n`: read, do not run),
/// and the script names every subcommand and `status --socket`.
#[test]
fn completion_scripts_parse_in_their_shells() {
    for (shell, check, marker) in [
        ("bash", &["-n"][..], "complete -F _sdt"),
        ("zsh", &["-n"][..], "#compdef sdt"),
        ("fish", &["--no-execute"][..], "complete -c sdt"),
    ] {
        require_tool(shell);
        let script = sdt(&["completions", shell]).stdout;
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: {sub} missing");
        }
        assert!(
            script.contains("socket"),
            "{shell}: status --socket missing"
        );
        let (ok, stderr) = with_stdin(shell, check, &script);
        assert!(ok, "{shell} refuses its completion script: {stderr}");
    }
}

/// The completions are really usable in bash: completing `sdt st` offers
/// `status` and completing `sdt completions ` offers the shells.
#[test]
fn bash_completes_subcommands_and_shells() {
    require_tool("bash");
    let script = sdt(&["completions", "bash"]).stdout;
    let probe = format!(
        "{script}\n\
         COMP_WORDS=(sdt st); COMP_CWORD=1; _sdt sdt st sdt; echo \"${{COMPREPLY[*]}}\"\n\
         COMP_WORDS=(sdt completions ''); COMP_CWORD=2; _sdt sdt '' completions; \
         echo \"${{COMPREPLY[*]}}\"\n"
    );
    let out = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(out.status.success() && lines.len() == 2, "{text}");
    assert_eq!(lines[0], "status", "{text}");
    for shell in ["bash", "zsh", "fish"] {
        assert!(lines[1].split(' ').any(|w| w == shell), "{text}");
    }
}

/// `sdt man` is sdt(1) with every subcommand and the exit statuses;
/// `--dir` writes it and one page per subcommand, each free of mandoc
/// errors and rendered by `man`.
#[test]
fn man_pages_render_without_errors() {
    require_tool("mandoc");
    let page = sdt(&["man"]).stdout;
    assert!(
        page.starts_with(".ie") || page.contains("\n.TH sdt 1"),
        "{page}"
    );
    assert!(page.contains(".SH \"EXIT STATUS\""), "{page}");
    assert!(page.contains("configuration or usage error"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(page.contains(&format!("sdt\\-{sub}(1)")), "{sub} missing");
    }
    assert!(
        !page.contains("sdt\\-help(1)"),
        "names a page that is not written"
    );

    let dir = support::temp_dir();
    let listed = sdt(&["man", "--dir", dir.path().to_str().unwrap()]).stdout;
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = SUBCOMMANDS
        .iter()
        .map(|s| format!("sdt-{s}.1"))
        .chain(["sdt.1".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(names, expected, "{listed}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sdt.1")).unwrap(),
        page
    );
    for name in &names {
        let path = dir.path().join(name);
        let lint = run(
            Command::new("mandoc")
                .args(["-T", "lint", "-W", "error"])
                .arg(&path),
            Duration::from_secs(10),
        );
        assert!(lint.ok(), "{name}: {lint}");
        let text = run(
            Command::new("mandoc").args(["-T", "utf8"]).arg(&path),
            Duration::from_secs(10),
        );
        // The header line, which is not set in bold: `sdt-run(1)`.
        let title = format!("{}(1)", name.trim_end_matches(".1"));
        assert!(text.ok() && text.stdout.contains(&title), "{name}: {text}");
    }
    let run_page = run(
        Command::new("mandoc")
            .args(["-T", "utf8"])
            .arg(dir.path().join("sdt-run.1")),
        Duration::from_secs(10),
    );
    assert!(run_page.stdout.contains("NOTIFY_SOCKET"), "{run_page}");
}
