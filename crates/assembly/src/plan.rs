//! Which resources go into the package, which uploaded entries they replace, and the path
//! collisions that make the package unsafe.
//!
//! Directories are found by walking each path's prefixes with a chained key (`key(a/b) =
//! H(key(a), "b")`), so a path of any depth costs one hash per component; a key that hits
//! is confirmed by comparing the actual strings, so no collision is reported that is not
//! one. Memory grows with the resources (held by the caller anyway), never with the
//! uploaded entries.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher, RandomState};

use packages_zipcheck::normalized_path;

use crate::source::invalid;
use crate::{AssembleError, Resource};

/// The key of the package root; every other path's key is derived from its parent's.
const ROOT: u64 = 0;

/// What becomes of an uploaded entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Keep,
    /// A resource names its path: the resource's bytes take its place.
    Replace,
}

pub(crate) struct Plan<'r> {
    resources: &'r [Resource],
    keys: RandomState,
    /// The resource that wins each path: the last one naming it.
    by_path: HashMap<&'r str, usize>,
    /// Keys of the winning resources' paths.
    file_keys: HashSet<u64>,
    /// Keys of every directory above a winning resource, each with one such resource.
    dir_keys: HashMap<u64, usize>,
    /// Indices of the winning resources, in the order given.
    order: Vec<usize>,
}

impl<'r> Plan<'r> {
    /// Checks the resources among themselves: every path normalised and usable as an entry
    /// name, and no resource where another one needs a directory.
    pub(crate) fn new(resources: &'r [Resource]) -> Result<Self, AssembleError> {
        let mut by_path = HashMap::with_capacity(resources.len());
        for (index, resource) in resources.iter().enumerate() {
            let path = resource.path.as_str();
            let normalised = normalized_path(path.as_bytes());
            if path.is_empty()
                || normalised.as_deref() != Some(path)
                || u16::try_from(path.len()).is_err()
            {
                return Err(unsafe_path(path));
            }
            by_path.insert(path, index);
        }
        let mut order: Vec<usize> = by_path.values().copied().collect();
        order.sort_unstable();

        let mut plan = Self {
            resources,
            keys: RandomState::new(),
            by_path,
            file_keys: HashSet::with_capacity(order.len()),
            dir_keys: HashMap::new(),
            order,
        };
        for &index in &plan.order {
            let Some(resource) = resources.get(index) else {
                continue;
            };
            let mut prefixes = prefixes(&plan.keys, &resource.path).peekable();
            while let Some((_, key)) = prefixes.next() {
                if prefixes.peek().is_some() {
                    plan.dir_keys.entry(key).or_insert(index);
                } else {
                    plan.file_keys.insert(key);
                }
            }
        }
        for &index in &plan.order {
            if let Some(resource) = resources.get(index) {
                plan.check_directories(&resource.path)?;
            }
        }
        Ok(plan)
    }

    /// The winning resources, in the order given.
    pub(crate) fn order(&self) -> &[usize] {
        &self.order
    }

    pub(crate) fn resources(&self) -> &'r [Resource] {
        self.resources
    }

    /// Decides an uploaded entry's fate from its raw name, or finds the collision it
    /// makes with a resource.
    pub(crate) fn classify(&self, name: &[u8], is_dir: bool) -> Result<Fate, AssembleError> {
        let path = normalized_path(name).ok_or_else(|| {
            invalid(format!(
                "entry '{}' escapes the package root",
                String::from_utf8_lossy(name)
            ))
        })?;
        if path.is_empty() {
            // The root itself (`./`): no resource can be there.
            return Ok(Fate::Keep);
        }
        let key = self.check_directories(&path)?;
        let named = self.by_path.contains_key(path.as_str());
        if is_dir {
            // A resource cannot become a file where the package has a directory.
            return if named {
                Err(unsafe_path(&path))
            } else {
                Ok(Fate::Keep)
            };
        }
        if named {
            return Ok(Fate::Replace);
        }
        // A kept file or symlink where a resource needs a directory: unpacking would
        // fail, or, through a symlink, write outside the package.
        if let Some(resource) = self
            .dir_keys
            .get(&key)
            .and_then(|&index| self.resources.get(index))
            && resource
                .path
                .strip_prefix(path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        {
            return Err(unsafe_path(&resource.path));
        }
        Ok(Fate::Keep)
    }

    /// Fails when a directory above the normalised `path` is a resource's path; returns
    /// the key of `path` itself.
    fn check_directories(&self, path: &str) -> Result<u64, AssembleError> {
        let mut prefixes = prefixes(&self.keys, path).peekable();
        while let Some((end, key)) = prefixes.next() {
            if prefixes.peek().is_none() {
                return Ok(key);
            }
            if self.file_keys.contains(&key)
                && let Some(directory) = path.get(..end)
                && self.by_path.contains_key(directory)
            {
                return Err(unsafe_path(directory));
            }
        }
        Ok(ROOT)
    }
}

/// `(end, key)` of every prefix of a normalised path that ends at a component boundary,
/// the whole path last.
fn prefixes<'p>(keys: &'p RandomState, path: &'p str) -> impl Iterator<Item = (usize, u64)> + 'p {
    let mut key = ROOT;
    let mut end = 0;
    path.split('/').map(move |component| {
        let mut hasher = keys.build_hasher();
        hasher.write_u64(key);
        hasher.write_usize(component.len());
        hasher.write(component.as_bytes());
        key = hasher.finish();
        if end > 0 {
            end += 1;
        }
        end += component.len();
        (end, key)
    })
}

pub(crate) fn unsafe_path(path: &str) -> AssembleError {
    AssembleError::UnsafePath {
        path: path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(paths: &[&str]) -> Vec<Resource> {
        paths
            .iter()
            .map(|path| Resource {
                path: (*path).to_owned(),
                mode: 0o644,
                sha1: String::new(),
                size: 0,
            })
            .collect()
    }

    fn unsafe_of(result: Result<impl Sized, AssembleError>) -> String {
        match result {
            Err(AssembleError::UnsafePath { path }) => path,
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("expected a collision"),
        }
    }

    #[test]
    fn paths_must_come_normalised() {
        for path in [
            "", "/abs", "a/../b", "./a", "a//b", "a/", "../x", "a\\b", "C:x",
        ] {
            let given = resources(&[path]);
            assert_eq!(unsafe_of(Plan::new(&given)), path, "{path:?}");
        }
        let long = "x".repeat(70_000);
        assert_eq!(unsafe_of(Plan::new(&resources(&[&long]))), long);
    }

    #[test]
    fn a_resource_cannot_be_a_directory_of_another() {
        let given = resources(&["lib/a.jar", "lib", "z"]);
        assert_eq!(unsafe_of(Plan::new(&given)), "lib");
        let given = resources(&["a/b", "a/b/c/d"]);
        assert_eq!(unsafe_of(Plan::new(&given)), "a/b");
        let given = resources(&["ab", "ab.c/d", "a/bc"]);
        assert!(Plan::new(&given).is_ok());
    }

    #[test]
    fn the_last_resource_for_a_path_wins() {
        let given = resources(&["a", "b", "a", "c"]);
        let plan = Plan::new(&given).expect("valid");
        assert_eq!(plan.order(), &[1, 2, 3]);
    }

    #[test]
    fn uploaded_entries_are_kept_replaced_or_collide() {
        let given = resources(&["lib/a.jar", "top", "deep/x/y"]);
        let plan = Plan::new(&given).expect("valid");
        assert_eq!(plan.classify(b"lib/a.jar", false).ok(), Some(Fate::Replace));
        assert_eq!(
            plan.classify(b"./lib//a.jar", false).ok(),
            Some(Fate::Replace)
        );
        assert_eq!(
            plan.classify(b"lib\\a.jar", false).ok(),
            Some(Fate::Replace)
        );
        assert_eq!(plan.classify(b"lib/", true).ok(), Some(Fate::Keep));
        assert_eq!(plan.classify(b"lib/b.jar", false).ok(), Some(Fate::Keep));
        assert_eq!(plan.classify(b"./", true).ok(), Some(Fate::Keep));
        assert_eq!(plan.classify(b"top2", false).ok(), Some(Fate::Keep));
        // An uploaded directory where a resource is a file.
        assert_eq!(unsafe_of(plan.classify(b"top/", true)), "top");
        assert_eq!(unsafe_of(plan.classify(b"top/inner.txt", false)), "top");
        assert_eq!(unsafe_of(plan.classify(b"top/x/", true)), "top");
        // An uploaded file or symlink where a resource needs a directory.
        assert_eq!(unsafe_of(plan.classify(b"deep/x", false)), "deep/x/y");
        assert_eq!(unsafe_of(plan.classify(b"deep", false)), "deep/x/y");
        assert_eq!(plan.classify(b"deep/", true).ok(), Some(Fate::Keep));
        assert!(matches!(
            plan.classify(b"../out", false),
            Err(AssembleError::InvalidUpload(_))
        ));
    }
}
