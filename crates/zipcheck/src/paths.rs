//! Lexical path checks on raw name bytes, and the tree of symlink entries used to spot paths
//! that an unpacker would resolve through a link.

use std::collections::HashMap;

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

/// The components of `path` once `..` is applied, or `None` when the path is absolute,
/// has a drive letter, contains NUL, or climbs above the root at any point.
pub(crate) fn normalize(path: &[u8]) -> Option<Vec<&[u8]>> {
    if path.contains(&0) || has_root_prefix(path) {
        return None;
    }
    let mut stack = Vec::new();
    for component in components(path) {
        match component {
            Component::Parent => {
                stack.pop()?;
            }
            Component::Normal(name) => stack.push(name),
        }
    }
    Some(stack)
}

#[derive(Debug, Clone, Copy)]
struct Node {
    id: u64,
    link: bool,
}

const ROOT: Node = Node { id: 0, link: false };

/// Prefix tree of the normalised paths of all symlink entries. Children are keyed by the
/// parent's id plus one component, so a lookup hashes each component once, however deep
/// or long a hostile name is.
#[derive(Default)]
pub(crate) struct LinkTree {
    children: HashMap<Vec<u8>, Node>,
    next_id: u64,
    scratch: Vec<u8>,
}

impl LinkTree {
    pub(crate) fn insert(&mut self, path: &[&[u8]]) {
        let mut parent = ROOT;
        for (i, name) in path.iter().enumerate() {
            let key = child_key(parent.id, name);
            let next_id = &mut self.next_id;
            let node = self.children.entry(key).or_insert_with(|| {
                *next_id = next_id.saturating_add(1);
                Node {
                    id: *next_id,
                    link: false,
                }
            });
            if i + 1 == path.len() {
                node.link = true;
            }
            parent = *node;
        }
    }

    fn child(&mut self, parent: Option<Node>, name: &[u8]) -> Option<Node> {
        let parent = parent?;
        self.scratch.clear();
        self.scratch.extend_from_slice(&parent.id.to_le_bytes());
        self.scratch.extend_from_slice(name);
        self.children.get(self.scratch.as_slice()).copied()
    }

    /// Whether walking the raw `path` left to right steps through a symlink entry, i.e. a
    /// link is followed by any further component (`link/x`, `link/..`). The raw walk matters:
    /// `link/../x` normalises to `x`, but an unpacker resolves `link` first.
    pub(crate) fn passes_through_link(&mut self, path: &[u8]) -> bool {
        // `None` marks a directory with no links below it.
        let mut stack = vec![Some(ROOT)];
        for component in components(path) {
            let top = stack.last().copied().flatten();
            if top.is_some_and(|node| node.link) {
                return true;
            }
            match component {
                Component::Parent => {
                    if stack.len() <= 1 {
                        return true;
                    }
                    stack.pop();
                }
                Component::Normal(name) => {
                    let child = self.child(top, name);
                    stack.push(child);
                }
            }
        }
        false
    }

    /// Whether a symlink at the normalised `link_path` pointing to `target` leaves the root,
    /// resolving the target lexically from the link's parent directory.
    ///
    /// Lexical `..` is only trustworthy over real directories: after the walk has gone
    /// through another link (`up -> ..`, then `x -> up/..`) a `..` is rejected, since the
    /// link may lead somewhere whose parent is outside.
    pub(crate) fn target_escapes(&mut self, link_path: &[&[u8]], target: &[u8]) -> bool {
        if target.contains(&0) || has_root_prefix(target) {
            return true;
        }
        // A link standing for the root itself would replace the package directory.
        let Some((_, parent)) = link_path.split_last() else {
            return true;
        };
        let mut stack = vec![Some(ROOT)];
        let mut through_link = false;
        for name in parent {
            let top = stack.last().copied().flatten();
            through_link |= top.is_some_and(|node| node.link);
            let child = self.child(top, name);
            stack.push(child);
        }
        for component in components(target) {
            let top = stack.last().copied().flatten();
            let top_is_link = top.is_some_and(|node| node.link);
            match component {
                Component::Parent => {
                    if top_is_link || through_link || stack.len() <= 1 {
                        return true;
                    }
                    stack.pop();
                }
                Component::Normal(name) => {
                    through_link |= top_is_link;
                    let child = self.child(top, name);
                    stack.push(child);
                }
            }
        }
        false
    }
}

fn child_key(parent: u64, name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + name.len());
    key.extend_from_slice(&parent.to_le_bytes());
    key.extend_from_slice(name);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safe(path: &str) -> bool {
        normalize(path.as_bytes()).is_some()
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
        let path = normalize(b"a/./b/../c/").expect("safe");
        assert_eq!(path, vec![&b"a"[..], &b"c"[..]]);
    }

    fn tree(links: &[&str]) -> LinkTree {
        let mut tree = LinkTree::default();
        for link in links {
            let path = normalize(link.as_bytes()).expect("safe link name");
            tree.insert(&path);
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
        assert!(!tree.passes_through_link(b"a"));
        assert!(!tree.passes_through_link(b"a/"));
        assert!(!tree.passes_through_link(b"ab/file"));
        assert!(!tree.passes_through_link(b"x/y/other"));
        assert!(!tree.passes_through_link(b"x/y"));
        assert!(!tree.passes_through_link(b"b/c"));
    }

    fn escapes(links: &[&str], link: &str, target: &str) -> bool {
        let mut tree = tree(links);
        let path = normalize(link.as_bytes()).expect("safe link name");
        tree.target_escapes(&path, target.as_bytes())
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
