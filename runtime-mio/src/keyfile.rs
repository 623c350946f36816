//! Private key and pre-shared key files.
//!
//! A key file holds one key in WireGuard's text form (44 base64 characters;
//! surrounding whitespace such as a trailing newline is ignored), exactly what
//! `sdt genkey > x.key` or `wg genkey > x.key` writes.
//!
//! On Unix a key file that the group or others can access at all
//! (`mode & 0o077 != 0`) is refused, as `ssh` refuses such private keys: the
//! error names the file and its mode and says how to fix it. The file is
//! opened first and its mode read from the open file, so what is checked is
//! what is read. The text read is zeroized once parsed.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sdt_core::key::{KeyError, PresharedKey, PrivateKey};
use zeroize::Zeroizing;

/// Longest key file read: a key is 44 characters, this leaves room for
/// whitespace and refuses to slurp a wrongly named large file.
const MAX_KEY_FILE_LEN: u64 = 1024;

/// Why a key file was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyFileError {
    /// There is no file at the path.
    NotFound {
        /// The path as resolved.
        path: PathBuf,
    },
    /// The file could not be opened or read, or is not a regular file.
    Io {
        /// The path as resolved.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The group or others have some access to the file (Unix only).
    Permissions {
        /// The path as resolved.
        path: PathBuf,
        /// The file's permission bits (`mode & 0o7777`).
        mode: u32,
    },
    /// The file's content is not one key.
    Content {
        /// The path as resolved.
        path: PathBuf,
        /// What is wrong with the text.
        error: KeyError,
    },
}

impl KeyFileError {
    /// The key file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            KeyFileError::NotFound { path }
            | KeyFileError::Io { path, .. }
            | KeyFileError::Permissions { path, .. }
            | KeyFileError::Content { path, .. } => path,
        }
    }
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::NotFound { path } => {
                write!(f, "key file {} does not exist", path.display())
            }
            KeyFileError::Io { path, source } => {
                write!(f, "cannot read key file {}: {source}", path.display())
            }
            KeyFileError::Permissions { path, mode } => {
                let how = if mode & 0o044 != 0 {
                    "readable"
                } else {
                    "accessible"
                };
                write!(
                    f,
                    "{} is {how} by group or others (mode {mode:04o}); chmod 600 it",
                    path.display()
                )
            }
            KeyFileError::Content { path, error } => {
                write!(f, "key file {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyFileError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads a node's private key from `path`.
pub fn read_private_key(path: &Path) -> Result<PrivateKey, KeyFileError> {
    read_key(path)
}

/// Reads a pre-shared key from `path`.
pub fn read_preshared_key(path: &Path) -> Result<PresharedKey, KeyFileError> {
    read_key(path)
}

fn read_key<K: FromStr<Err = KeyError>>(path: &Path) -> Result<K, KeyFileError> {
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => KeyFileError::NotFound {
            path: path.to_owned(),
        },
        _ => KeyFileError::Io {
            path: path.to_owned(),
            source,
        },
    };
    let file = File::open(path).map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    if !meta.is_file() {
        return Err(io_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    check_mode(path, &meta)?;

    let mut bytes = Zeroizing::new(Vec::with_capacity(64));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    let content = |error| KeyFileError::Content {
        path: path.to_owned(),
        error,
    };
    if bytes.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(content(KeyError::WrongLength));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| content(KeyError::InvalidBase64))?;
    text.parse().map_err(content)
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), KeyFileError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const KEY: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

    /// Writes `content` to a fresh file with `mode` and returns its path.
    fn key_file(dir: &tempfile::TempDir, name: &str, content: &str, mode: u32) -> PathBuf {
        let path = dir.path().join(name);
        let mut f = File::create(&path).unwrap();
        f.write_all(content.as_bytes()).unwrap();
        set_mode(&path, mode);
        path
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(not(unix))]
    fn set_mode(_path: &Path, _mode: u32) {}

    #[test]
    fn reads_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(&dir, "x.key", &format!("{KEY}\n"), 0o600);
        let key = read_private_key(&path).unwrap();
        assert_eq!(key.to_string(), KEY);
        let psk = read_preshared_key(&path).unwrap();
        assert_eq!(psk.to_string(), KEY);
        // Owner read-only is fine too.
        let path = key_file(&dir, "ro.key", KEY, 0o400);
        assert!(read_private_key(&path).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn refuses_group_or_world_access() {
        let dir = tempfile::tempdir().unwrap();
        for (mode, word) in [
            (0o644, "readable"),
            (0o640, "readable"),
            (0o604, "readable"),
            (0o620, "accessible"),
            (0o601, "accessible"),
        ] {
            let path = key_file(&dir, "x.key", KEY, mode);
            let err = read_private_key(&path).unwrap_err();
            assert!(
                matches!(err, KeyFileError::Permissions { mode: m, .. } if m == mode),
                "{err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "{} is {word} by group or others (mode {mode:04o}); chmod 600 it",
                    path.display()
                )
            );
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.key");
        let err = read_private_key(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.key"), "{err}");
    }

    #[test]
    fn directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_private_key(dir.path()).unwrap_err();
        assert!(matches!(err, KeyFileError::Io { .. }), "{err:?}");
    }

    #[test]
    fn bad_content_names_file_and_key_error() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("garbage", "not a key!\n", KeyError::InvalidBase64),
            ("short", "AAAA\n", KeyError::WrongLength),
            ("empty", "", KeyError::WrongLength),
            ("two", &format!("{KEY}\n{KEY}\n"), KeyError::InvalidBase64),
            ("big", &"A".repeat(5000), KeyError::WrongLength),
        ];
        for (name, content, want) in cases {
            let path = key_file(&dir, name, content, 0o600);
            let err = read_private_key(&path).unwrap_err();
            match &err {
                KeyFileError::Content { error, .. } => assert_eq!(*error, want, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
            let text = err.to_string();
            assert!(
                text.contains(name) && text.contains(&want.to_string()),
                "{text}"
            );
        }
        let path = dir.path().join("binary");
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        set_mode(&path, 0o600);
        assert!(matches!(
            read_preshared_key(&path),
            Err(KeyFileError::Content {
                error: KeyError::InvalidBase64,
                ..
            })
        ));
    }
}
