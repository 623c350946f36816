//! Links the firmware example for bare-metal ARM: cortex-m-rt's `link.x`
//! with the example's own `memory.x`. The search path is added for examples
//! only, so a firmware that depends on this crate keeps its own `memory.x`.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    if !(target.starts_with("thumbv") && target.contains("-none-")) {
        return;
    }
    let dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("firmware");
    fs::create_dir_all(&dir).expect("create the example's link directory");
    fs::write(dir.join("memory.x"), include_bytes!("memory.x")).expect("write memory.x");
    println!("cargo:rustc-link-arg-examples=-L{}", dir.display());
    println!("cargo:rustc-link-arg-examples=-Tlink.x");
}
