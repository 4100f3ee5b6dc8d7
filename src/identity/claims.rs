//! The claims a lastmile session token carries, as one typed struct. Handlers read these fields;
//! nothing re-parses the token.

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::Tier;

/// The claims of a session token.
///
/// Required: `iss`, `aud`, `sub`, `exp`, `jti`, `session_id`, `tier`. Unknown claims are ignored.
/// `nbf`, when present, must be a number (`null` is refused, as jsonwebtoken's validator does).
///
/// ```
/// use lastmile::identity::Claims;
/// let c: Claims = serde_json::from_str(r#"{"iss":"lastmile","aud":"lastmile","sub":"alice",
///     "exp":1800000000,"jti":"j","session_id":"s","tier":"user","scope":"a b"}"#).unwrap();
/// assert_eq!(c.scopes().collect::<Vec<_>>(), ["a", "b"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer; must equal the profile's `auth.issuer`.
    pub iss: String,
    /// Audience; must equal the profile's `auth.audience` (a single string, not an array).
    pub aud: String,
    /// Subject: who the session is for.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before, Unix seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_not_null"
    )]
    pub nbf: Option<u64>,
    /// Unique token id.
    pub jti: String,
    /// Session id the audit log binds every execution to.
    pub session_id: String,
    /// Permission tier.
    pub tier: Tier,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Kind of principal (`human`, `agent`, …), free-form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    /// Tier whose rate limit applies, when it differs from `tier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_tier: Option<Tier>,
}

impl Claims {
    /// The required claims, in the order their absence is reported.
    pub const REQUIRED: [&'static str; 7] =
        ["iss", "aud", "sub", "exp", "jti", "session_id", "tier"];

    /// The scopes, split on whitespace.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or("").split_whitespace()
    }
}

/// [`Claims`] borrowed from a verified token's payload: what
/// [`Verifier::verify_with`](super::Verifier::verify_with) hands its reader, so a caller that
/// keeps only some claims (a session keeps neither issuer nor audience) copies only those.
#[derive(Debug, PartialEq, Eq)]
pub struct ClaimsRef<'a> {
    /// Issuer.
    pub iss: &'a str,
    /// Audience.
    pub aud: &'a str,
    /// Subject.
    pub sub: &'a str,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    pub iat: Option<u64>,
    /// Not before, Unix seconds.
    pub nbf: Option<u64>,
    /// Unique token id.
    pub jti: &'a str,
    /// Session id.
    pub session_id: &'a str,
    /// Permission tier.
    pub tier: Tier,
    /// Space-separated scopes.
    pub scope: Option<&'a str>,
    /// Roles.
    pub roles: Vec<&'a str>,
    /// Kind of principal.
    pub user_type: Option<&'a str>,
    /// Tier whose rate limit applies, when it differs from `tier`.
    pub rate_limit_tier: Option<Tier>,
}

impl<'a> ClaimsRef<'a> {
    /// Read the claims of the shape lastmile issues — one JSON object of known claims, each at
    /// most once, strings without escapes or control characters, whole numbers without sign,
    /// fraction or exponent — borrowing every string from `payload`.
    ///
    /// `None` for anything else. It never accepts what the owned serde parse of [`Claims`]
    /// refuses, and what it accepts it reads to equal claims (a test holds it to that); the
    /// verifier hands everything it declines to that parse, which accepts or names the reason.
    pub(crate) fn scan(payload: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut s = Scan { text, at: 0 };
        let (mut iss, mut aud, mut sub, mut exp, mut iat, mut nbf) =
            (None, None, None, None, None, None);
        let (mut jti, mut session_id, mut tier, mut scope) = (None, None, None, None);
        let (mut roles, mut user_type, mut rate_limit_tier) = (None, None, None);
        s.expect(b'{')?;
        loop {
            let key = s.string()?;
            s.expect(b':')?;
            match key {
                "iss" => once(&mut iss, s.string()?)?,
                "aud" => once(&mut aud, s.string()?)?,
                "sub" => once(&mut sub, s.string()?)?,
                "exp" => once(&mut exp, s.number()?)?,
                "iat" => once(&mut iat, s.number()?)?,
                "nbf" => once(&mut nbf, s.number()?)?,
                "jti" => once(&mut jti, s.string()?)?,
                "session_id" => once(&mut session_id, s.string()?)?,
                "tier" => once(&mut tier, s.string()?.parse::<Tier>().ok()?)?,
                "scope" => once(&mut scope, s.string()?)?,
                "roles" => {
                    let list = s.strings()?;
                    once(&mut roles, list)?
                }
                "user_type" => once(&mut user_type, s.string()?)?,
                "rate_limit_tier" => once(&mut rate_limit_tier, s.string()?.parse::<Tier>().ok()?)?,
                _ => return None,
            }
            match s.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        s.skip_space();
        if s.at != payload.len() {
            return None;
        }
        Some(ClaimsRef {
            iss: iss?,
            aud: aud?,
            sub: sub?,
            exp: exp?,
            iat,
            nbf,
            jti: jti?,
            session_id: session_id?,
            tier: tier?,
            scope,
            roles: roles.unwrap_or_default(),
            user_type,
            rate_limit_tier,
        })
    }

    /// Owned claims, for a payload the scan declined and serde parsed.
    pub(crate) fn of(claims: &'a Claims) -> Self {
        ClaimsRef {
            iss: &claims.iss,
            aud: &claims.aud,
            sub: &claims.sub,
            exp: claims.exp,
            iat: claims.iat,
            nbf: claims.nbf,
            jti: &claims.jti,
            session_id: &claims.session_id,
            tier: claims.tier,
            scope: claims.scope.as_deref(),
            roles: claims.roles.iter().map(String::as_str).collect(),
            user_type: claims.user_type.as_deref(),
            rate_limit_tier: claims.rate_limit_tier,
        }
    }

    /// The scopes, split on whitespace.
    pub fn scopes(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.scope.unwrap_or("").split_whitespace()
    }

    /// Every claim, owned.
    pub fn to_owned_claims(&self) -> Claims {
        Claims {
            iss: self.iss.to_owned(),
            aud: self.aud.to_owned(),
            sub: self.sub.to_owned(),
            exp: self.exp,
            iat: self.iat,
            nbf: self.nbf,
            jti: self.jti.to_owned(),
            session_id: self.session_id.to_owned(),
            tier: self.tier,
            scope: self.scope.map(str::to_owned),
            roles: self.roles.iter().map(|r| (*r).to_owned()).collect(),
            user_type: self.user_type.map(str::to_owned),
            rate_limit_tier: self.rate_limit_tier,
        }
    }
}

/// Set a claim seen for the first time; `None` (decline) for a duplicate, which serde refuses.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// Whether any of the eight bytes may be a quote, a backslash or a control byte.
fn may_end_string(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    (has_zero(word ^ (ONES * u64::from(b'"')))
        | has_zero(word ^ (ONES * u64::from(b'\\')))
        | below_space)
        != 0
}

/// A cursor over JSON text; every method returns `None` where the strict shape ends.
struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    /// JSON's four whitespace bytes, as serde_json skips them.
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.text.as_bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        self.skip_space();
        let b = *self.text.as_bytes().get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// A string with no escape and no control character (which JSON forbids raw).
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let bytes = self.text.as_bytes();
        // Eight bytes at a time up to the chunk that may hold the end (SWAR: the test has false
        // positives, never false negatives), then byte by byte.
        while let Some(chunk) = bytes.get(self.at..self.at + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if may_end_string(u64::from_le_bytes(word)) {
                break;
            }
            self.at += 8;
        }
        loop {
            match *bytes.get(self.at)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        let out = self.text.get(start..self.at)?;
        self.at += 1;
        Some(out)
    }

    /// A whole number that fits u64, written as JSON allows: no sign, no leading zero, and not
    /// followed by a fraction or an exponent (serde refuses those for an integer claim).
    fn number(&mut self) -> Option<u64> {
        self.skip_space();
        let bytes = self.text.as_bytes();
        let start = self.at;
        let digits = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        // u64 holds every 19-digit number, so only a 20th digit needs checking.
        if digits == 0 || digits > 20 || (digits > 1 && bytes[start] == b'0') {
            return None;
        }
        let value = |d: &u8| u64::from(d - b'0');
        let head = &bytes[start..start + digits.min(19)];
        let mut n = head.iter().fold(0u64, |n, d| n * 10 + value(d));
        if digits == 20 {
            n = n.checked_mul(10)?.checked_add(value(&bytes[start + 19]))?;
        }
        self.at = start + digits;
        if let Some(b'.' | b'e' | b'E') = bytes.get(self.at) {
            return None;
        }
        Some(n)
    }

    /// An array of such strings.
    fn strings(&mut self) -> Option<Vec<&'a str>> {
        self.expect(b'[')?;
        let mut out = Vec::new();
        self.skip_space();
        if self.text.as_bytes().get(self.at) == Some(&b']') {
            self.at += 1;
            return Some(out);
        }
        loop {
            out.push(self.string()?);
            match self.next()? {
                b',' => {}
                b']' => return Some(out),
                _ => return None,
            }
        }
    }
}

/// `nbf` present means a number: `"nbf": null` is an error, not an absent claim.
fn number_not_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    u64::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::may_end_string;

    #[test]
    fn the_word_test_never_misses_a_quote_a_backslash_or_a_control_byte() {
        for background in [b'a', b'~', 0x7f, 0xc3, 0xff, b' '] {
            for at in 0..8 {
                for byte in 0..=255u8 {
                    let mut word = [background; 8];
                    word[at] = byte;
                    if byte == b'"' || byte == b'\\' || byte < 0x20 {
                        assert!(may_end_string(u64::from_le_bytes(word)), "{word:?}");
                    }
                }
            }
            assert!(!may_end_string(u64::from_le_bytes([background; 8])));
        }
    }
}
