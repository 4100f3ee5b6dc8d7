//! The byte-level engine: find every span of the input that holds a secret in any covered form,
//! then replace those spans.
//!
//! Three passes, each cheap when it finds nothing to do:
//!
//! 1. **literal**: the patterns of [`forms`](super::forms) over the bytes as they are, screened
//!    (SIMD Teddy up to 64 patterns, a strided gram filter beyond) and confirmed with an
//!    aho-corasick automaton;
//! 2. **unescape**: only the stretches of JSON strings around a `\u`, `\/` or `\\` escape are
//!    decoded (the other escapes have one spelling, which pass 1 already knows), and all three
//!    passes run again over the decoded text, up to [`MAX_DEPTH`] levels of nesting (a JSON line
//!    inside a JSON string inside a JSON log line). A match is mapped back to the escape
//!    sequences it came from, so a replacement always covers whole escapes;
//! 3. **wrapped base64**: only runs of base64-alphabet characters that contain line breaks (`\n`,
//!    `\r\n`, or their two-character escapes) are joined and searched again.
//!
//! Spans are then snapped to whole escape sequences, merged, and — when the input is JSON and a
//! span is not inside one string — split so that the output stays valid JSON.

use aho_corasick::{AhoCorasick, Input};
use memchr::{memchr, memchr_iter, memchr2, memchr3, memrchr};

use super::forms::Form;

/// Nesting levels of JSON string escaping that are decoded.
const MAX_DEPTH: u8 = 3;

#[derive(Debug, Clone, Copy)]
pub(super) struct PatternInfo {
    pub(super) secret: usize,
    pub(super) form: Form,
}

/// A span of the input to replace with the label of `secret`; `quoted` when it stood outside
/// any JSON string and the label must be written as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Region {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) secret: usize,
    pub(super) quoted: bool,
}

/// The compiled patterns.
pub(super) struct Matcher {
    pub(super) patterns: Vec<PatternInfo>,
    /// Length of the longest pattern, in bytes.
    pub(super) longest: usize,
    /// Length of the shortest pattern: a wrapped run shorter than this holds no match.
    pub(super) shortest: usize,
    pub(super) automaton: AhoCorasick,
    pub(super) screen: Screen,
}

/// What says quickly where a match may be, so that clean input costs one cheap pass.
pub(super) enum Screen {
    /// Up to 64 patterns: one SIMD (Teddy) searcher finds where the next match starts; the
    /// automaton then confirms it there.
    Teddy(aho_corasick::packed::Searcher),
    /// More patterns (Teddy would need a pass per 64): a strided q-gram filter.
    Grams(GramScreen),
    /// No screen (no SIMD on this CPU, or a pattern shorter than a gram): the automaton alone.
    None,
}

impl Screen {
    pub(super) fn new(patterns: &[&[u8]]) -> Screen {
        if patterns.len() <= 64
            && let Some(teddy) = aho_corasick::packed::Config::new()
                .match_kind(aho_corasick::packed::MatchKind::LeftmostLongest)
                .builder()
                .extend(patterns)
                .build()
        {
            return Screen::Teddy(teddy);
        }
        GramScreen::new(patterns).map_or(Screen::None, Screen::Grams)
    }
}

/// Bytes per gram.
const Q: usize = 4;

/// The 4-byte substrings that start in the first `stride` bytes of every pattern, hashed into a
/// bitset. Every pattern is at least `stride + Q - 1` bytes long, so any occurrence holds a whole
/// gram at a position that is a multiple of `stride`, less than `stride` bytes into it: looking
/// up only those positions misses nothing, and reads a small fraction of the input (1 in 20 to
/// 40 positions for typical keys). A hit (or a rare false one) marks a window for the automaton.
pub(super) struct GramScreen {
    bits: Vec<u64>,
    log: u32,
    stride: usize,
}

impl GramScreen {
    fn new(patterns: &[&[u8]]) -> Option<GramScreen> {
        let shortest = patterns.iter().map(|p| p.len()).min()?;
        if shortest < Q {
            return None;
        }
        let stride = shortest - Q + 1;
        // The first sampled position in an occurrence is less than `stride` bytes into it,
        // so only the grams that start there are needed.
        let grams = patterns.len() * stride;
        // About 32 bits per gram keeps false hits near 3%; 2^12 to 2^24 bits (512 B to 2 MiB).
        let log = (grams * 32)
            .next_power_of_two()
            .trailing_zeros()
            .clamp(12, 24);
        let mut screen = GramScreen {
            bits: vec![0; (1usize << log) / 64],
            log,
            stride,
        };
        for p in patterns {
            for w in p.windows(Q).take(stride) {
                let h = screen.hash(w);
                screen.bits[h / 64] |= 1 << (h % 64);
            }
        }
        Some(screen)
    }

    #[inline]
    fn hash(&self, w: &[u8]) -> usize {
        let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        (v.wrapping_mul(0x9E37_79B1) >> (32 - self.log)) as usize
    }

    /// Merged windows of `hay` that may hold a match of a pattern at most `longest` long.
    fn windows(&self, hay: &[u8], longest: usize) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        if hay.len() < Q {
            return out;
        }
        let mut i = 0;
        while i + Q <= hay.len() {
            let h = self.hash(&hay[i..i + Q]);
            if self.bits[h / 64] & (1 << (h % 64)) != 0 {
                // The occurrence starts at most `stride - 1` bytes before `i`.
                let a = (i + 1).saturating_sub(self.stride);
                let b = (i + longest).min(hay.len());
                match out.last_mut() {
                    Some(last) if a <= last.1 => last.1 = b,
                    _ => out.push((a, b)),
                }
            }
            i += self.stride;
        }
        out
    }
}

impl Matcher {
    /// Every span of `hay` to replace, sorted, merged and JSON-safe.
    pub(super) fn regions(&self, hay: &[u8]) -> Vec<Region> {
        let mut out = Vec::new();
        self.find_all(hay, 0, &mut out);
        if out.is_empty() {
            return out;
        }
        if memchr(b'\\', hay).is_some() {
            for r in &mut out {
                if let Some((s, _)) = escape_unit_around(hay, r.start) {
                    r.start = s;
                }
                if let Some((_, e)) = escape_unit_around(hay, r.end) {
                    r.end = e;
                }
            }
        }
        merge(&mut out);
        json_safe(hay, &mut out);
        out
    }

    fn find_all(&self, hay: &[u8], depth: u8, out: &mut Vec<Region>) {
        self.literal(hay, out);
        if depth < MAX_DEPTH {
            self.unescaped(hay, depth, out);
        }
        self.wrapped_base64(hay, out);
    }

    /// Pass 1: literal patterns over `hay` as it is.
    fn literal(&self, hay: &[u8], out: &mut Vec<Region>) {
        let mut done = 0usize; // bytes of `hay` already handled
        match &self.screen {
            Screen::Teddy(teddy) => {
                // Teddy finds where the next match starts (or that there is none, the common
                // case) much faster than the automaton scans; the automaton confirms it.
                while let Some(m) = teddy.find_in(hay, aho_corasick::Span::from(done..hay.len())) {
                    if !self.search(hay, m.start(), hay.len(), true, &mut done, out) {
                        break;
                    }
                }
            }
            Screen::Grams(grams) => {
                for (a, b) in grams.windows(hay, self.longest) {
                    if b > done {
                        self.search(hay, a.max(done), b, false, &mut done, out);
                    }
                }
            }
            Screen::None => {
                self.search(hay, 0, hay.len(), false, &mut done, out);
            }
        }
    }

    /// Find matches in `hay[from..to]` and push their regions; with `once`, only the first.
    /// Returns whether a match was found.
    fn search(
        &self,
        hay: &[u8],
        mut from: usize,
        to: usize,
        once: bool,
        done: &mut usize,
        out: &mut Vec<Region>,
    ) -> bool {
        let ac = &self.automaton;
        let mut found = false;
        while from < to {
            let Some(m) = ac.find(Input::new(hay).span(from..to)) else {
                break;
            };
            found = true;
            let info = self.patterns[m.pattern().as_usize()];
            let (start, mut end) = self.region(hay, m, *done);
            // A match that begins inside this region but ends after it (two secrets that
            // overlap, or a secret right after an encoded one) extends the region, so no tail
            // of a secret is left in the clear. Such a match starts before `end`, so it ends
            // before `end + longest`: the probe never scans further than that.
            let mut probe = m.start() + 1;
            while probe < end {
                let limit = (end + self.longest).min(hay.len());
                match ac.find(Input::new(hay).span(probe..limit)) {
                    Some(m2) if m2.start() < end => {
                        end = end.max(self.region(hay, m2, *done).1);
                        probe = m2.start() + 1;
                    }
                    _ => break,
                }
            }
            out.push(Region {
                start,
                end,
                secret: info.secret,
                quoted: false,
            });
            *done = end;
            from = end;
            if once {
                break;
            }
        }
        found
    }

    /// The bytes a match replaces: the match, widened for a base64 middle (never below `floor`).
    fn region(&self, hay: &[u8], m: aho_corasick::Match, floor: usize) -> (usize, usize) {
        match self.patterns[m.pattern().as_usize()].form {
            Form::Plain => (m.start(), m.end()),
            Form::Base64 { url_safe } => widen(hay, m.start(), m.end(), floor, url_safe),
        }
    }

    /// Pass 2: decode the stretches around escapes with more than one spelling (`\u`, `\/`,
    /// `\\`), search the decoded text, and map what is found back onto the escapes.
    ///
    /// An encoded secret that holds such an escape lies within [`Matcher::reach`] bytes of it
    /// (its other characters are plain or have one spelling, at most 6 bytes each), so only
    /// those stretches are decoded: a long JSON string with one `\u` costs a few hundred bytes
    /// of decoding, not its whole length.
    fn unescaped(&self, hay: &[u8], depth: u8, out: &mut Vec<Region>) {
        let reach = self.reach();
        let mut clusters: Vec<(usize, usize)> = Vec::new();
        let mut next_escape = 0;
        for j in memchr_iter(b'\\', hay) {
            if j < next_escape {
                continue; // the escaped character of `\\`
            }
            next_escape = j + 2;
            if matches!(hay.get(j + 1), Some(b'u' | b'/' | b'\\')) {
                let end = (j + 6).min(hay.len());
                match clusters.last_mut() {
                    Some(c) if j < c.1 + 2 * reach => c.1 = end,
                    _ => clusters.push((j, end)),
                }
            }
        }
        for (a, b) in clusters {
            let mut lo = a.saturating_sub(reach);
            let mut hi = (b + reach).min(hay.len());
            // Never start or end inside an escape.
            if let Some((s, _)) = escape_unit_around(hay, lo) {
                lo = s;
            }
            if let Some((_, e)) = escape_unit_around(hay, hi) {
                hi = e;
            }
            let decoded = decode(&hay[lo..hi]);
            let mut found = Vec::new();
            self.find_all(&decoded.bytes, depth + 1, &mut found);
            for r in found {
                out.push(Region {
                    start: lo + decoded.from[r.start] as usize,
                    end: lo + decoded.to[r.end - 1] as usize,
                    ..r
                });
            }
        }
    }

    /// How far from an ambiguous escape the rest of an encoded secret can reach.
    fn reach(&self) -> usize {
        6 * self.longest + 16
    }

    /// Pass 3: join runs of base64-alphabet characters broken by line breaks, search the joined
    /// text, and map what is found back.
    fn wrapped_base64(&self, hay: &[u8], out: &mut Vec<Region>) {
        let mut pos = 0;
        while let Some(off) = memchr3(b'\n', b'\r', b'\\', &hay[pos..]) {
            let p = pos + off;
            let brk = break_len(hay, p);
            if brk == 0 {
                pos = p + 1;
                continue;
            }
            if p == 0
                || !is_run_char(hay[p - 1])
                || !hay.get(p + brk).is_some_and(|&c| is_run_char(c))
            {
                pos = p + brk;
                continue;
            }
            let start = run_start(hay, p);
            let end = run_end(hay, p);
            // Join only when the run could hold the shortest pattern.
            if end - start < self.shortest {
                pos = end.max(p + brk);
                continue;
            }
            let mut joined = Vec::new();
            let mut map: Vec<u32> = Vec::new();
            let mut k = start;
            while k < end {
                let b = break_len(hay, k);
                if b > 0 {
                    k += b;
                } else {
                    joined.push(hay[k]);
                    map.push(k as u32);
                    k += 1;
                }
            }
            if joined.len() >= self.shortest {
                let mut found = Vec::new();
                self.literal(&joined, &mut found);
                for r in found {
                    out.push(Region {
                        start: map[r.start] as usize,
                        end: map[r.end - 1] as usize + 1,
                        ..r
                    });
                }
            }
            pos = end.max(p + brk);
        }
    }
}

/// Characters of a base64 run: both alphabets and padding.
static RUN_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=');
        i += 1;
    }
    t
};

#[inline]
fn is_run_char(b: u8) -> bool {
    RUN_CHARS[usize::from(b)]
}

/// Length of the line break at `p`: `\r\n`, `\n`, `\r`, or the escapes `\r\n`, `\n`, `\r`
/// inside a JSON string; 0 if there is none.
fn break_len(hay: &[u8], p: usize) -> usize {
    match hay[p] {
        b'\r' if hay.get(p + 1) == Some(&b'\n') => 2,
        b'\n' | b'\r' => 1,
        b'\\' => match hay.get(p + 1) {
            Some(b'r') if hay.get(p + 2..p + 4) == Some(b"\\n") => 4,
            Some(b'n' | b'r') => 2,
            _ => 0,
        },
        _ => 0,
    }
}

/// Start of the run that holds the line break at `p`.
fn run_start(hay: &[u8], p: usize) -> usize {
    let mut k = p;
    while k > 0 {
        let c = hay[k - 1];
        if matches!(c, b'n' | b'r') && k >= 2 && hay[k - 2] == b'\\' {
            k -= 2;
        } else if is_run_char(c) || c == b'\n' || c == b'\r' {
            k -= 1;
        } else {
            break;
        }
    }
    k
}

/// End of the run that holds the line break at `p`.
fn run_end(hay: &[u8], p: usize) -> usize {
    let mut k = p;
    while k < hay.len() {
        let b = break_len(hay, k);
        if b > 0 {
            k += b;
        } else if is_run_char(hay[k]) {
            k += 1;
        } else {
            break;
        }
    }
    k
}

/// Widen a base64 match over the neighbouring characters that still carry bits of the value:
/// up to 3 alphabet characters before (never into already-handled text) and up to 3 after,
/// then `=` padding.
fn widen(bytes: &[u8], start: usize, end: usize, floor: usize, url_safe: bool) -> (usize, usize) {
    let is_alpha = |b: u8| {
        b.is_ascii_alphanumeric()
            || if url_safe {
                b == b'-' || b == b'_'
            } else {
                b == b'+' || b == b'/'
            }
    };
    let mut s = start;
    while s > floor && start - s < 3 && is_alpha(bytes[s - 1]) {
        s -= 1;
    }
    let mut e = end;
    while e < bytes.len() && e - end < 3 && is_alpha(bytes[e]) {
        e += 1;
    }
    let pad_from = e;
    while e < bytes.len() && e - pad_from < 2 && bytes[e] == b'=' {
        e += 1;
    }
    (s, e)
}

/// Decoded text with, for each decoded byte, the span of the input it came from.
pub(super) struct Decoded {
    pub(super) bytes: Vec<u8>,
    pub(super) from: Vec<u32>,
    pub(super) to: Vec<u32>,
}

/// Undo JSON string escaping. Anything that is not a valid escape is kept as it is.
pub(super) fn decode(seg: &[u8]) -> Decoded {
    let mut d = Decoded {
        bytes: Vec::with_capacity(seg.len()),
        from: Vec::with_capacity(seg.len()),
        to: Vec::with_capacity(seg.len()),
    };
    let push = |d: &mut Decoded, b: u8, from: usize, to: usize| {
        d.bytes.push(b);
        d.from.push(from as u32);
        d.to.push(to as u32);
    };
    let mut i = 0;
    while i < seg.len() {
        if seg[i] != b'\\' {
            push(&mut d, seg[i], i, i + 1);
            i += 1;
            continue;
        }
        let len = escape_len(seg, i);
        let simple = match seg.get(i + 1) {
            Some(b'"') => Some(b'"'),
            Some(b'\\') => Some(b'\\'),
            Some(b'/') => Some(b'/'),
            Some(b'b') => Some(8),
            Some(b'f') => Some(12),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            _ => None,
        };
        if let Some(b) = simple {
            push(&mut d, b, i, i + 2);
            i += 2;
            continue;
        }
        let ch = match len {
            6 => hex4(seg, i + 2).and_then(char::from_u32),
            12 => match (hex4(seg, i + 2), hex4(seg, i + 8)) {
                (Some(hi), Some(lo)) => {
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                }
                _ => None,
            },
            _ => None,
        };
        match ch {
            Some(c) => {
                let mut buf = [0u8; 4];
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    push(&mut d, b, i, i + len);
                }
                i += len;
            }
            None => {
                push(&mut d, b'\\', i, i + 1);
                i += 1;
            }
        }
    }
    d
}

fn hex4(hay: &[u8], at: usize) -> Option<u32> {
    let digits = hay.get(at..at + 4)?;
    let mut v = 0u32;
    for &c in digits {
        v = v * 16 + char::from(c).to_digit(16)?;
    }
    Some(v)
}

/// Length of the escape that starts at `s` (a backslash): 2, 6 for `\uXXXX`, 12 for a
/// surrogate pair, 0 if it is no valid escape.
fn escape_len(hay: &[u8], s: usize) -> usize {
    match hay.get(s + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => 2,
        Some(b'u') => match hex4(hay, s + 2) {
            Some(0xD800..=0xDBFF) => {
                let lo = (hay.get(s + 6..s + 8) == Some(b"\\u"))
                    .then(|| hex4(hay, s + 8))
                    .flatten();
                match lo {
                    Some(0xDC00..=0xDFFF) => 12,
                    _ => 0,
                }
            }
            Some(0xDC00..=0xDFFF) | None => 0,
            Some(_) => 6,
        },
        _ => 0,
    }
}

/// The escape sequence `p` falls strictly inside, if any.
fn escape_unit_around(hay: &[u8], p: usize) -> Option<(usize, usize)> {
    let lo = p.saturating_sub(11);
    let s = lo + memrchr(b'\\', &hay[lo..p])?;
    // An odd run of backslashes before `s` means `s` is itself escaped: it ends an escape.
    let run = hay[..s].iter().rev().take_while(|&&b| b == b'\\').count();
    if run % 2 == 1 {
        return (p == s).then_some((s - 1, s + 1));
    }
    let len = escape_len(hay, s);
    if s < p && p < s + len {
        return Some((s, s + len));
    }
    // On or inside the low half of a surrogate pair, which belongs to the pair before it.
    if s >= 6 && p < s + 6 && escape_len(hay, s - 6) == 12 {
        return Some((s - 6, s + 6));
    }
    None
}

/// Sort and merge overlapping regions (the earlier one's label wins).
fn merge(regions: &mut Vec<Region>) {
    regions.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<Region> = Vec::with_capacity(regions.len());
    for r in regions.drain(..) {
        match merged.last_mut() {
            Some(last) if r.start < last.end => {
                last.end = last.end.max(r.end);
                last.quoted |= r.quoted;
            }
            _ => merged.push(r),
        }
    }
    *regions = merged;
}

/// When `hay` is JSON, rewrite regions that are not inside one string: the parts inside strings
/// are replaced there; a number or literal outside strings is replaced whole by a quoted label;
/// structure (quotes, commas, brackets, colons, whitespace) stays.
fn json_safe(hay: &[u8], regions: &mut Vec<Region>) {
    let first = hay.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{' | b'[' | b'"')) {
        return;
    }
    let strings = string_spans(hay);
    let inside = |r: &Region| {
        let i = strings.partition_point(|&(_, e)| e < r.end);
        strings
            .get(i)
            .is_some_and(|&(s, e)| s <= r.start && r.end <= e)
    };
    if regions.iter().all(inside) {
        return;
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(hay).is_err() {
        return;
    }
    let mut fixed = Vec::with_capacity(regions.len());
    for r in regions.drain(..) {
        if inside(&r) {
            fixed.push(r);
            continue;
        }
        let mut k = r.start;
        while k < r.end {
            let i = strings.partition_point(|&(_, e)| e <= k);
            match strings.get(i) {
                Some(&(s, e)) if s <= k => {
                    // Inside a string: up to its end.
                    let end = r.end.min(e);
                    if end > k {
                        fixed.push(Region { start: k, end, ..r });
                    }
                    k = end.max(k + 1);
                }
                next => {
                    // Outside strings, up to the next string's opening quote.
                    let stop = next.map_or(r.end, |&(s, _)| r.end.min(s.saturating_sub(1)));
                    let mut j = k;
                    while j < stop.max(k + 1) && j < hay.len() {
                        if is_token_char(hay[j]) {
                            let mut s = j;
                            while s > 0 && is_token_char(hay[s - 1]) {
                                s -= 1;
                            }
                            let mut e = j;
                            while e < hay.len() && is_token_char(hay[e]) {
                                e += 1;
                            }
                            fixed.push(Region {
                                start: s,
                                end: e,
                                quoted: true,
                                ..r
                            });
                            j = e;
                        } else {
                            j += 1;
                        }
                    }
                    k = j.max(k + 1);
                }
            }
        }
    }
    merge(&mut fixed);
    *regions = fixed;
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+')
}

/// The contents (between the quotes) of every JSON string in `hay`, in order.
fn string_spans(hay: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut pos = 0;
    while let Some(q) = memchr(b'"', &hay[pos..]) {
        let start = pos + q + 1;
        let mut i = start;
        let end = loop {
            match memchr2(b'"', b'\\', &hay[i.min(hay.len())..]) {
                None => break hay.len(),
                Some(k) if hay[i + k] == b'"' => break i + k,
                Some(k) => i += k + 2,
            }
        };
        spans.push((start, end));
        pos = (end + 1).min(hay.len());
        if end >= hay.len() {
            break;
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_maps_every_byte_to_its_escape() {
        let d = decode(br#"a\u0062\/\ud83d\ude00\n\q"#);
        assert_eq!(d.bytes, "ab/\u{1F600}\n\\q".as_bytes());
        assert_eq!((d.from[1], d.to[1]), (1, 7));
        assert_eq!((d.from[2], d.to[2]), (7, 9));
        for i in 3..7 {
            assert_eq!((d.from[i], d.to[i]), (9, 21));
        }
        assert_eq!((d.from[7], d.to[7]), (21, 23));
        assert_eq!((d.from[8], d.to[8]), (23, 24));
    }

    #[test]
    fn escape_units_are_found_from_inside() {
        let hay = br#"x\u0041\\\ud83d\ude00y"#;
        assert_eq!(escape_unit_around(hay, 3), Some((1, 7)));
        assert_eq!(escape_unit_around(hay, 7), None);
        assert_eq!(escape_unit_around(hay, 8), Some((7, 9)));
        assert_eq!(escape_unit_around(hay, 9), None);
        assert_eq!(escape_unit_around(hay, 15), Some((9, 21)));
        assert_eq!(escape_unit_around(hay, 18), Some((9, 21)));
        assert_eq!(escape_unit_around(hay, 21), None);
    }

    #[test]
    fn string_spans_skip_escaped_quotes() {
        let hay = br#"{"a\"b":"c","d":1}"#;
        assert_eq!(string_spans(hay), vec![(2, 6), (9, 10), (13, 14)]);
    }
}
