//! The mio daemon, for tests that run the smoltcp runtime against it.

/// The mio daemon's binary: `SDT_BIN`, or the `sdt` that `cargo test
/// --workspace` builds next to this test's own binary.
pub fn sdt_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("SDT_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let beside = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("sdt"))
        .filter(|p| p.exists());
    beside.unwrap_or_else(|| {
        panic!(
            "no `sdt` binary next to {}: run `cargo build -p sdt` first \
             (`cargo test --workspace` does), or set SDT_BIN",
            exe.display()
        )
    })
}
