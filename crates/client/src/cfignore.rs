//! Which files of the pushed directory stay home: the patterns of its `.cfignore`
//! (gitignore syntax, as the cf CLI reads it), plus the names the cf CLI always leaves
//! out.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::ClientError;

/// What the cf CLI never uploads, at any depth (its `DefaultIgnoreLines`). They come
/// after the `.cfignore` lines, so a `!.git` there cannot bring them back.
pub const ALWAYS_IGNORED: &[&str] = &[
    ".cfignore",
    ".DS_Store",
    ".git",
    ".gitignore",
    ".hg",
    ".svn",
    "_darcs",
    "manifest.yaml",
    "manifest.yml",
];

pub struct CfIgnore {
    matcher: Gitignore,
}

impl CfIgnore {
    /// The rules for `root`: its `.cfignore`, if any, and [`ALWAYS_IGNORED`].
    pub fn load(root: &Path) -> Result<CfIgnore, ClientError> {
        let path = root.join(".cfignore");
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ClientError::io(format!("{}", path.display()), e)),
        };
        CfIgnore::parse(root, &text, &path)
    }

    /// The rules of `text` (a `.cfignore`, read from `origin`) for `root`.
    pub fn parse(root: &Path, text: &str, origin: &Path) -> Result<CfIgnore, ClientError> {
        let mut builder = GitignoreBuilder::new(root);
        let lines = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .chain(ALWAYS_IGNORED.iter().copied());
        for line in lines {
            builder
                .add_line(Some(origin.to_path_buf()), line)
                .map_err(|e| ClientError::Ignore {
                    path: origin.to_path_buf(),
                    detail: e.to_string(),
                })?;
        }
        let matcher = builder.build().map_err(|e| ClientError::Ignore {
            path: origin.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(CfIgnore { matcher })
    }

    /// Whether `relative` (a path under the root) stays home: it matches, or a directory
    /// above it does (git's rule: a file of an ignored directory cannot be re-included).
    pub fn ignores(&self, relative: &Path, is_dir: bool) -> bool {
        let mut above = PathBuf::new();
        let mut parts = relative.components().peekable();
        while let Some(part) = parts.next() {
            above.push(part);
            let last = parts.peek().is_none();
            if self
                .matcher
                .matched(&above, if last { is_dir } else { true })
                .is_ignore()
            {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rules(text: &str) -> CfIgnore {
        CfIgnore::parse(Path::new("/app"), text, Path::new("/app/.cfignore")).unwrap()
    }

    #[test]
    fn the_cf_cli_defaults_apply_at_any_depth_and_cannot_be_re_included() {
        let r = rules("!.git\n!manifest.yml\n");
        for (path, dir) in [
            (".cfignore", false),
            (".git", true),
            (".git/config", false),
            ("sub/.git/HEAD", false),
            (".gitignore", false),
            ("lib/.DS_Store", false),
            (".svn", true),
            (".hg/store", false),
            ("_darcs", true),
            ("manifest.yml", false),
            ("nested/manifest.yaml", false),
        ] {
            assert!(r.ignores(Path::new(path), dir), "{path} is always ignored");
        }
        for path in ["index.html", "src/main.rs", "gitlog", "manifest.yml.txt"] {
            assert!(!r.ignores(Path::new(path), false), "{path} is pushed");
        }
    }

    #[test]
    fn cfignore_lines_follow_gitignore_syntax() {
        let r = rules(
            "# comment\r\n\
             *.log\r\n\
             /tmp\n\
             build/\n\
             docs/**/*.pdf\n\
             !keep.log\n\
             secret.txt\n",
        );
        let cases = [
            ("app.log", false, true),
            ("logs/app.log", false, true),
            ("keep.log", false, false),
            ("tmp", true, true),
            ("tmp/x", false, true),
            // Anchored: only at the root.
            ("src/tmp", true, false),
            ("build", true, true),
            ("build/out.bin", false, true),
            ("sub/build/out.bin", false, true),
            // A directory-only pattern leaves a file of that name alone.
            ("build", false, false),
            ("docs/a/b/c.pdf", false, true),
            ("docs/readme.md", false, false),
            ("secret.txt", false, true),
            ("conf/secret.txt", false, true),
            ("# comment", false, false),
            ("index.html", false, false),
        ];
        for (path, dir, ignored) in cases {
            assert_eq!(r.ignores(Path::new(path), dir), ignored, "{path}");
        }
    }

    #[test]
    fn a_file_of_an_ignored_directory_stays_ignored_even_if_re_included() {
        let r = rules("vendor/\n!vendor/keep.txt\n");
        assert!(r.ignores(Path::new("vendor/keep.txt"), false));
    }

    #[test]
    fn no_cfignore_means_only_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let r = CfIgnore::load(dir.path()).unwrap();
        assert!(!r.ignores(Path::new("a.log"), false));
        assert!(r.ignores(Path::new(".git"), true));
        std::fs::write(dir.path().join(".cfignore"), "*.log\n").unwrap();
        let r = CfIgnore::load(dir.path()).unwrap();
        assert!(r.ignores(Path::new("a.log"), false));
    }
}
