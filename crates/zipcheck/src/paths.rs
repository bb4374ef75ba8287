//! Lexical path checks on raw name bytes, and the set of symlink entries used to spot paths
//! that an unpacker would resolve through a link.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher, RandomState};

/// Both separators count: an entry made on Windows may use either, and unpackers differ.
fn is_separator(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

/// Absolute (`/x`, `\x`) or drive-qualified (`C:x`): not relative to the package root.
fn has_root_prefix(path: &[u8]) -> bool {
    match path {
        [b'/' | b'\\', ..] => true,
        [drive, b':', ..] => drive.is_ascii_alphabetic(),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Component<'a> {
    Parent,
    Normal(&'a [u8]),
}

/// Path components left to right; empty and `.` components change nothing and are dropped.
fn components(path: &[u8]) -> impl Iterator<Item = Component<'_>> {
    path.split(|&b| is_separator(b))
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| {
            if c == b".." {
                Component::Parent
            } else {
                Component::Normal(c)
            }
        })
}

/// Whether `path` stays relative to the root and never climbs above it: not absolute, no
/// drive letter, no NUL, and no `..` that leaves the root at any point of the walk.
pub(crate) fn is_safe(path: &[u8]) -> bool {
    if path.contains(&0) || has_root_prefix(path) {
        return false;
    }
    let mut depth = 0usize;
    for component in components(path) {
        match component {
            Component::Parent => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return false,
            },
            Component::Normal(_) => depth += 1,
        }
    }
    true
}

/// The path `name` stands for once `.`, `..` and empty components are applied, with `/`
/// between components; `None` when it is not [`is_safe`]. Bytes that are not UTF-8 are
/// replaced, as in error messages.
pub fn normalized_path(name: &[u8]) -> Option<String> {
    if !is_safe(name) {
        return None;
    }
    let mut stack: Vec<&[u8]> = Vec::new();
    for component in components(name) {
        match component {
            Component::Parent => {
                stack.pop();
            }
            Component::Normal(c) => stack.push(c),
        }
    }
    Some(
        stack
            .iter()
            .map(|c| String::from_utf8_lossy(c))
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// The key of the root directory; every other directory's key is derived from its parent's.
const ROOT: u64 = 0;

/// The normalised paths of all symlink entries, each kept as one 64-bit key: memory grows
/// with the number of links, never with the length or depth of their names.
///
/// A path's key chains a keyed SipHash over its components (`key(a/b) = H(key(a), b)`), so
/// the key of every prefix comes out of one left-to-right walk and `..` is a pop of a
/// stack of keys. The hash keys are random per set, so an archive cannot be built to make
/// two paths collide; should two collide by chance, a path is taken for a link it is not,
/// which can only add a rejection, never let an entry through.
pub(crate) struct LinkSet {
    hasher: RandomState,
    links: HashSet<u64>,
    /// Components in the longest normalised link path: no directory deeper than that can
    /// be a link, so walks need not hash below it.
    max_depth: usize,
    /// Reused walk stack of directory keys, so a lookup allocates nothing once warm.
    stack: Vec<u64>,
}

impl Default for LinkSet {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            links: HashSet::new(),
            max_depth: 0,
            stack: Vec::new(),
        }
    }
}

impl LinkSet {
    fn child(&self, parent: u64, name: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u64(parent);
        h.write_usize(name.len());
        h.write(name);
        h.finish()
    }

    fn is_link(&self, key: u64) -> bool {
        key != ROOT && self.links.contains(&key)
    }

    /// Leaves `stack` holding the keys of the root and of every directory on the
    /// normalised `path`, the path itself last. `None` when the path is not safe.
    fn walk_normalized(&self, path: &[u8], stack: &mut Vec<u64>) -> Option<()> {
        if path.contains(&0) || has_root_prefix(path) {
            return None;
        }
        stack.clear();
        stack.push(ROOT);
        for component in components(path) {
            match component {
                Component::Parent => {
                    if stack.len() <= 1 {
                        return None;
                    }
                    stack.pop();
                }
                Component::Normal(name) => {
                    let parent = stack.last().copied().unwrap_or(ROOT);
                    stack.push(self.child(parent, name));
                }
            }
        }
        Some(())
    }

    /// Records a symlink entry's name. Returns `false` when the name is not safe. A name
    /// that normalises to the root itself is not recorded: its target check rejects it.
    pub(crate) fn insert(&mut self, name: &[u8]) -> bool {
        let mut stack = std::mem::take(&mut self.stack);
        let found = self.walk_normalized(name, &mut stack).is_some();
        if found
            && stack.len() > 1
            && let Some(&key) = stack.last()
        {
            self.links.insert(key);
            self.max_depth = self.max_depth.max(stack.len() - 1);
        }
        self.stack = stack;
        found
    }

    /// Whether walking the raw `path` left to right steps through a symlink entry, i.e. a
    /// link is followed by any further component (`link/x`, `link/..`). The raw walk matters:
    /// `link/../x` normalises to `x`, but an unpacker resolves `link` first.
    pub(crate) fn passes_through_link(&mut self, path: &[u8]) -> bool {
        let mut stack = std::mem::take(&mut self.stack);
        let result = self.passes_through_link_with(path, &mut stack);
        self.stack = stack;
        result
    }

    fn passes_through_link_with(&self, path: &[u8], stack: &mut Vec<u64>) -> bool {
        stack.clear();
        stack.push(ROOT);
        // Directories entered below `max_depth`, which cannot be links: counted, not hashed.
        let mut beyond = 0usize;
        for component in components(path) {
            let top = stack.last().copied().unwrap_or(ROOT);
            if beyond == 0 && self.is_link(top) {
                return true;
            }
            match component {
                Component::Parent => {
                    if beyond > 0 {
                        beyond -= 1;
                    } else if stack.len() <= 1 {
                        return true;
                    } else {
                        stack.pop();
                    }
                }
                Component::Normal(name) => {
                    if beyond > 0 || stack.len() > self.max_depth {
                        beyond += 1;
                    } else {
                        stack.push(self.child(top, name));
                    }
                }
            }
        }
        false
    }

    /// Whether a symlink entry named `link_name` pointing to `target` leaves the root,
    /// resolving the target lexically from the link's parent directory.
    ///
    /// Lexical `..` is only trustworthy over real directories: after the walk has gone
    /// through another link (`up -> ..`, then `x -> up/..`) a `..` is rejected, since the
    /// link may lead somewhere whose parent is outside.
    pub(crate) fn target_escapes(&mut self, link_name: &[u8], target: &[u8]) -> bool {
        let mut stack = std::mem::take(&mut self.stack);
        let result = self.target_escapes_with(link_name, target, &mut stack);
        self.stack = stack;
        result
    }

    fn target_escapes_with(&self, link_name: &[u8], target: &[u8], stack: &mut Vec<u64>) -> bool {
        if target.contains(&0) || has_root_prefix(target) {
            return true;
        }
        if self.walk_normalized(link_name, stack).is_none() {
            return true;
        }
        // A link standing for the root itself would replace the package directory.
        if stack.len() <= 1 {
            return true;
        }
        // Resolve from the parent: drop the link itself; a link among the directories
        // above it makes every later `..` untrustworthy.
        stack.pop();
        let depth = stack.len();
        let mut through_link = stack
            .get(..depth.saturating_sub(1))
            .unwrap_or_default()
            .iter()
            .any(|&key| self.is_link(key));
        for component in components(target) {
            let top = stack.last().copied().unwrap_or(ROOT);
            let top_is_link = self.is_link(top);
            match component {
                Component::Parent => {
                    if top_is_link || through_link || stack.len() <= 1 {
                        return true;
                    }
                    stack.pop();
                }
                Component::Normal(name) => {
                    through_link |= top_is_link;
                    stack.push(self.child(top, name));
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safe(path: &str) -> bool {
        let safe = is_safe(path.as_bytes());
        assert_eq!(normalized_path(path.as_bytes()).is_some(), safe, "{path}");
        safe
    }

    #[test]
    fn relative_paths_that_stay_inside_are_safe() {
        for path in [
            "a",
            "a/b/c.txt",
            "dir/",
            "bar/../cat",
            "./a",
            "a//b",
            "a/./b",
            "a\\b",
            "...",
            "..foo",
            "ab:c",
            "&&hello::??/x",
            "1:x",
        ] {
            assert!(safe(path), "{path} should be safe");
        }
    }

    #[test]
    fn escaping_paths_are_unsafe() {
        for path in [
            "/etc/passwd",
            "\\evil",
            "C:\\evil",
            "c:evil",
            "../evil",
            "..\\evil",
            "a/../../x",
            "a\\..\\..\\x",
            "..",
            "a/b/../../..",
            "a\0b",
        ] {
            assert!(!safe(path), "{path} should be unsafe");
        }
    }

    #[test]
    fn climbing_out_and_back_in_is_unsafe() {
        // Resolved left to right, `../root/x` leaves the root before coming back.
        assert!(!safe("../zipcheck/x"));
        assert!(!safe("a/../../a/x"));
    }

    #[test]
    fn normalize_applies_parent_components() {
        assert_eq!(normalized_path(b"a/./b/../c/").as_deref(), Some("a/c"));
        assert_eq!(normalized_path(b"a\\b//c").as_deref(), Some("a/b/c"));
        assert_eq!(normalized_path(b"a/..").as_deref(), Some(""));
        assert_eq!(normalized_path(b"../a"), None);
    }

    fn tree(links: &[&str]) -> LinkSet {
        let mut tree = LinkSet::default();
        for link in links {
            assert!(tree.insert(link.as_bytes()), "safe link name {link}");
        }
        tree
    }

    #[test]
    fn entries_through_links_are_detected() {
        let mut tree = tree(&["a", "x/y/link"]);
        assert!(tree.passes_through_link(b"a/file"));
        assert!(tree.passes_through_link(b"a\\file"));
        assert!(tree.passes_through_link(b"./a/./file"));
        assert!(tree.passes_through_link(b"x/y/link/z"));
        assert!(tree.passes_through_link(b"a/../b"));
        assert!(tree.passes_through_link(b"b/../a/c"));
        // Deeper than any link, then back up and through one.
        assert!(tree.passes_through_link(b"q/w/e/r/t/../../../../../a/file"));
        assert!(tree.passes_through_link(b"x/y/q/w/e/../../../link/z"));
        assert!(!tree.passes_through_link(b"x/y/q/w/e/../../../other/z"));
        assert!(!tree.passes_through_link(b"a"));
        assert!(!tree.passes_through_link(b"a/"));
        assert!(!tree.passes_through_link(b"ab/file"));
        assert!(!tree.passes_through_link(b"x/y/other"));
        assert!(!tree.passes_through_link(b"x/y"));
        assert!(!tree.passes_through_link(b"b/c"));
    }

    fn escapes(links: &[&str], link: &str, target: &str) -> bool {
        let mut tree = tree(links);
        tree.target_escapes(link.as_bytes(), target.as_bytes())
    }

    #[test]
    fn link_targets_resolve_from_the_parent_directory() {
        assert!(!escapes(&["a/link"], "a/link", "../x"));
        assert!(escapes(&["a/link"], "a/link", "../../x"));
        assert!(!escapes(&["link"], "link", "x/../y"));
        assert!(escapes(&["link"], "link", ".."));
        assert!(!escapes(&["link"], "link", "."));
        assert!(!escapes(&["link"], "link", ""));
        assert!(escapes(&["link"], "link", "/etc/passwd"));
        assert!(escapes(&["link"], "link", "C:\\Windows"));
        assert!(escapes(&["a/link"], "a/link", "..\\..\\x"));
        assert!(escapes(&["a/b/link"], "a/b/link", "../../../x"));
        assert!(!escapes(&["a/b/link"], "a/b/link", "../../x"));
        assert!(escapes(&["a/link"], "a/link", "x\0y"));
    }

    #[test]
    fn parent_steps_after_another_link_are_rejected() {
        let links = ["d/up", "d/x"];
        // `d/up -> ..` itself stays inside; `d/x -> up/..` only looks like it does.
        assert!(!escapes(&links, "d/up", ".."));
        assert!(escapes(&links, "d/x", "up/.."));
        assert!(escapes(&links, "d/x", "up/sub/../.."));
        // Going into a link without climbing back is fine: the link is checked on its own.
        assert!(!escapes(&links, "d/x", "up/file"));
        assert!(!escapes(&links, "d/x", "up"));
    }
}
