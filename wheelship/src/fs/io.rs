//! The one way an I/O error gets the path it is about: `result.at("read", &path)` gives
//! `cannot read `/srv/app/x`: No such file or directory`, the reason without Rust's
//! ` (os error N)`.

use std::path::Path;

use crate::cli::io_reason;

/// Attaches what was being done, and to which path, to an I/O error.
pub trait At<T>: Sized {
    /// `cannot <what> `<path>`: <reason>`.
    fn at(self, what: &str, path: impl AsRef<Path>) -> anyhow::Result<T>;

    /// `<noun> `<path>`: <reason>`, for a path that names a thing (`env`, `--find-links`).
    fn about(self, noun: &str, path: impl AsRef<Path>) -> anyhow::Result<T>;
}

impl<T> At<T> for std::io::Result<T> {
    fn at(self, what: &str, path: impl AsRef<Path>) -> anyhow::Result<T> {
        self.about(&format!("cannot {what}"), path)
    }

    fn about(self, noun: &str, path: impl AsRef<Path>) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("{noun} `{}`: {}", path.as_ref().display(), io_reason(&e)))
    }
}

impl<T> At<T> for rustix::io::Result<T> {
    fn at(self, what: &str, path: impl AsRef<Path>) -> anyhow::Result<T> {
        self.map_err(std::io::Error::from).at(what, path)
    }

    fn about(self, noun: &str, path: impl AsRef<Path>) -> anyhow::Result<T> {
        self.map_err(std::io::Error::from).about(noun, path)
    }
}

#[cfg(test)]
mod tests {
    use super::At;

    #[test]
    fn the_message_names_the_path() {
        let e = std::fs::read("/no/such/file").at("read", "/no/such/file");
        assert_eq!(
            e.unwrap_err().to_string(),
            "cannot read `/no/such/file`: No such file or directory"
        );
    }
}
