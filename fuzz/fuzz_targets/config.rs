//! The daemon's configuration file: `sdt::config::Config::parse` on any
//! UTF-8 text.
//!
//! Asserts, besides no panic: every error displays as one line (the module
//! promises `FILE:LINE: key `KEY`: message`, which `sdt check` prints), so
//! no line feed or carriage return may appear in it.
//!
//! `Config::parse` resolves `host:port` endpoints and reads key files named
//! by the text. Run this target without a network (`unshare -rn`, as
//! `smoke.sh` does when it can) so that resolving fails at once rather than
//! asking a name server.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sdt::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(text, Path::new("fuzz.toml")) {
        let shown = e.to_string();
        assert!(
            !shown.contains(['\n', '\r']),
            "error is not one line: {shown:?}"
        );
        assert!(shown.starts_with("fuzz.toml"), "{shown:?}");
    }
});
