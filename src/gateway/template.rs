//! RFC 6570 URI templates as resource routes: could a client's URI have come from a template a
//! child listed? The answer picks the child that serves a `resources/read` (and subscribe,
//! completion), so it runs on an async worker for every such request and must never stall it.
//!
//! A template is compiled once into a leading literal and a list of (gap, literal) steps. A URI is
//! matched by one left-to-right pass per step over the set of positions reachable so far, with
//! literal occurrences found by Knuth–Morris–Pratt: O(URI length × steps), no backtracking. A URI
//! longer than [`MAX_URI_LEN`] matches nothing and is not read at all.
//!
//! What an expression may match (a router only has to be right about which child a URI belongs
//! to; the child itself decides whether the resource exists):
//!
//! - `{var}`, `{+var}` (and any expression this module does not know): one character or more, any
//!   characters, `/` included — `file:///{path}` matches `file:///etc/hosts` as servers expect;
//! - `{/var*}`, `{?a,b}`, `{&a}`, `{#var}`, `{.var}`, `{;var}`: nothing (every variable undefined
//!   expands to the empty string), or the operator's own character followed by anything.
//!
//! A URI equal to the template's own text matches too: `completion/complete` names a template by
//! its text.

/// The longest resource URI matched against templates, in bytes. Longer ones are answered as an
/// unknown resource at once: no server needs such a URI, and the check costs nothing.
pub const MAX_URI_LEN: usize = 8 * 1024;

/// One resource template, compiled for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTemplate {
    source: String,
    head: String,
    steps: Vec<Step>,
}

/// A gap (one or more adjacent expressions) followed by a literal (empty only at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    gap: Gap,
    literal: Literal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    /// At least this many characters, any characters: one per `{var}` / `{+var}`.
    AtLeast(usize),
    /// Empty, or a character of the set followed by anything: `{/var*}`, `{?a,b}`, `{#var}`, …
    Optional(OpSet),
}

/// A set of the operator characters that start a non-empty expansion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct OpSet(u8);

impl OpSet {
    const OPS: &'static [u8; 6] = b"/?&#.;";

    fn of(op: u8) -> Option<Self> {
        Self::OPS
            .iter()
            .position(|c| *c == op)
            .map(|i| OpSet(1 << i))
    }

    fn contains(self, byte: u8) -> bool {
        Self::of(byte).is_some_and(|one| self.0 & one.0 != 0)
    }
}

impl Gap {
    /// The gap that matches what `self` followed by `next` matches.
    ///
    /// `AtLeast(a)` then anything optional is still `AtLeast(a)`: the optional part only adds
    /// characters, which "any characters" already covers. Two optional gaps give the union of
    /// their sets: "c…" followed by "d…" is itself "c…".
    fn then(self, next: Gap) -> Gap {
        match (self, next) {
            (Gap::AtLeast(a), Gap::AtLeast(b)) => Gap::AtLeast(a + b),
            (Gap::AtLeast(a), Gap::Optional(_)) | (Gap::Optional(_), Gap::AtLeast(a)) => {
                Gap::AtLeast(a)
            }
            (Gap::Optional(s), Gap::Optional(t)) => Gap::Optional(OpSet(s.0 | t.0)),
        }
    }

    /// The gap one `{…}` expression (its text between the braces) stands for.
    fn of_expression(expr: &str) -> Gap {
        match expr.as_bytes().first().and_then(|op| OpSet::of(*op)) {
            Some(set) => Gap::Optional(set),
            None => Gap::AtLeast(1),
        }
    }
}

/// A literal with its KMP failure table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Literal {
    text: String,
    fail: Vec<usize>,
}

impl Literal {
    fn new(text: String) -> Self {
        let p = text.as_bytes();
        let mut fail = vec![0; p.len()];
        let mut k = 0;
        for i in 1..p.len() {
            while k > 0 && p[i] != p[k] {
                k = fail[k - 1];
            }
            if p[i] == p[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Literal { text, fail }
    }

    /// Every start of an occurrence in `s` at or after `from`, ascending (overlaps included).
    fn occurrences(&self, s: &[u8], from: usize, steps: &mut u64, mut found: impl FnMut(usize)) {
        let p = self.text.as_bytes();
        if p.is_empty() {
            return;
        }
        let mut k = 0;
        for (i, byte) in s.iter().enumerate().skip(from) {
            *steps += 1;
            while k > 0 && *byte != p[k] {
                *steps += 1;
                k = self.fail[k - 1];
            }
            if *byte == p[k] {
                k += 1;
            }
            if k == p.len() {
                found(i + 1 - k);
                k = self.fail[k - 1];
            }
        }
    }
}

impl UriTemplate {
    /// Compile a template. Never fails: an unclosed `{` is a literal, as is everything else that
    /// is not an expression.
    pub fn parse(template: &str) -> Self {
        let mut head = String::new();
        let mut steps = Vec::new();
        // The gap being built and the literal after it (before the first gap: `head`).
        let mut gap: Option<Gap> = None;
        let mut literal = String::new();
        let mut rest = template;
        let mut push_literal = |text: &str, gap: &Option<Gap>, literal: &mut String| {
            if gap.is_some() {
                literal.push_str(text);
            } else {
                head.push_str(text);
            }
        };
        while let Some(open) = rest.find('{') {
            push_literal(&rest[..open], &gap, &mut literal);
            let Some(close) = rest[open..].find('}') else {
                push_literal(&rest[open..], &gap, &mut literal);
                rest = "";
                break;
            };
            let expr = Gap::of_expression(&rest[open + 1..open + close]);
            gap = Some(match gap {
                None => expr,
                Some(g) if literal.is_empty() => g.then(expr),
                Some(g) => {
                    steps.push(Step {
                        gap: g,
                        literal: Literal::new(std::mem::take(&mut literal)),
                    });
                    expr
                }
            });
            rest = &rest[open + close + 1..];
        }
        push_literal(rest, &gap, &mut literal);
        if let Some(g) = gap {
            steps.push(Step {
                gap: g,
                literal: Literal::new(literal),
            });
        }
        UriTemplate {
            source: template.to_string(),
            head,
            steps,
        }
    }

    /// Whether `uri` could have been produced by this template (or is the template itself).
    pub fn matches(&self, uri: &str) -> bool {
        self.matches_counting(uri).0
    }

    /// [`Self::matches`], with the number of elementary steps it took.
    pub(crate) fn matches_counting(&self, uri: &str) -> (bool, u64) {
        if uri.len() > MAX_URI_LEN {
            return (false, 0);
        }
        if uri == self.source {
            return (true, 1);
        }
        self.matches_unbounded(uri)
    }

    /// The match itself, for a URI of any length: O(len × steps).
    fn matches_unbounded(&self, uri: &str) -> (bool, u64) {
        let mut steps = 1u64;
        let s = uri.as_bytes();
        let n = s.len();
        if !uri.starts_with(&self.head) {
            return (false, steps);
        }
        let Some((last, middle)) = self.steps.split_last() else {
            return (n == self.head.len(), steps);
        };
        if !uri.ends_with(&last.literal.text) || n < self.head.len() + last.literal.text.len() {
            return (false, steps);
        }
        // Positions right after the part of the template matched so far, ascending.
        let mut reach = vec![self.head.len()];
        for step in middle {
            let ok = Admits::new(step.gap, &reach, uri, &mut steps);
            let mut next = Vec::new();
            let mut cursor = 0;
            let len = step.literal.text.len();
            step.literal.occurrences(s, reach[0], &mut steps, |q| {
                if ok.admits(q, &reach, &mut cursor) {
                    next.push(q + len);
                }
            });
            if next.is_empty() {
                return (false, steps);
            }
            reach = next;
        }
        // The last literal must end the URI, so it can only start at one place.
        let ok = Admits::new(last.gap, &reach, uri, &mut steps);
        let q = n - last.literal.text.len();
        let mut cursor = 0;
        (ok.admits(q, &reach, &mut cursor), steps)
    }
}

/// Which gap ends `q` are reachable from a set of start positions.
enum Admits {
    /// Any `q` at or after this position.
    From(usize),
    /// `q` in the start set (empty gap), or after a start whose character opens the gap.
    EmptyOrAfter(Option<usize>),
    Never,
}

impl Admits {
    fn new(gap: Gap, reach: &[usize], uri: &str, steps: &mut u64) -> Self {
        let s = uri.as_bytes();
        match gap {
            // The earliest start gives the earliest end; later ends are reachable from it too.
            Gap::AtLeast(k) => {
                let mut end = reach[0];
                let mut chars = uri[end..].chars();
                for _ in 0..k {
                    *steps += 1;
                    match chars.next() {
                        Some(c) => end += c.len_utf8(),
                        None => return Admits::Never,
                    }
                }
                Admits::From(end)
            }
            Gap::Optional(set) => {
                let first = reach.iter().find(|p| {
                    *steps += 1;
                    s.get(**p).is_some_and(|b| set.contains(*b))
                });
                Admits::EmptyOrAfter(first.copied())
            }
        }
    }

    /// Whether a gap may end at `q`. Calls come with ascending `q`; `cursor` walks `reach`.
    fn admits(&self, q: usize, reach: &[usize], cursor: &mut usize) -> bool {
        match self {
            Admits::From(from) => q >= *from,
            Admits::Never => false,
            Admits::EmptyOrAfter(opener) => {
                if opener.is_some_and(|p| q > p) {
                    return true;
                }
                while *cursor < reach.len() && reach[*cursor] < q {
                    *cursor += 1;
                }
                reach.get(*cursor) == Some(&q)
            }
        }
    }
}

#[cfg(test)]
mod tests;
