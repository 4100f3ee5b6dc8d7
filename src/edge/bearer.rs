//! The token extractor chain: an ordered list of credential carriers walked over a request's
//! headers, first present wins.
//!
//! | method | carrier | presets |
//! | --- | --- | --- |
//! | [`Method::AuthorizationHeader`] | `Authorization: Bearer <token>` (RFC 6750 §2.1) | standard, browser, api |
//! | [`Method::ProxyHeader`] | the header an MCP proxy forwards the bearer in (`http.proxy_header`), `Bearer <token>` or the bare token | standard |
//! | [`Method::Cookie`] | the cookie `http.cookie_name` | standard, browser |
//!
//! A carrier that is **present but malformed** fails the request at once with its
//! [`Malformed`] reason; the chain does not fall through to a weaker carrier. A carrier that is
//! absent (or that holds another authentication scheme, or a `Cookie` header without our cookie)
//! is a [`Miss`], and when every method misses, [`NoCredential`] lists each method tried and why it
//! missed. [`challenge`] renders the RFC 6750 `WWW-Authenticate` value for a 401.
//!
//! Nothing here ever echoes a credential: reasons name what was wrong, never the bytes.

use cookie::Cookie;
use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE, HeaderName};
use secrecy::SecretString;

use crate::config::ExtractorPreset;
use crate::identity::MAX_TOKEN_BYTES;

/// One credential carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `Authorization: Bearer <token>`.
    AuthorizationHeader,
    /// The bearer an MCP proxy forwards in its own header.
    ProxyHeader,
    /// The session cookie.
    Cookie,
}

impl Method {
    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::AuthorizationHeader => "authorization_header",
            Method::ProxyHeader => "proxy_header",
            Method::Cookie => "cookie",
        }
    }

    /// The methods of a preset, in order.
    pub fn preset(preset: ExtractorPreset) -> &'static [Method] {
        match preset {
            ExtractorPreset::Standard => &[
                Method::AuthorizationHeader,
                Method::ProxyHeader,
                Method::Cookie,
            ],
            ExtractorPreset::Browser => &[Method::AuthorizationHeader, Method::Cookie],
            ExtractorPreset::Api => &[Method::AuthorizationHeader],
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one method found no credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MissReason {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    MissingHeader,
    /// An `Authorization` header with another scheme (`Basic`, `Digest`, …); the scheme is named
    /// only when it is a well-known one, never echoed from the request otherwise.
    #[error("the Authorization header uses {0}, not Bearer")]
    OtherScheme(SchemeName),
    /// An `Authorization` header that is not `scheme credentials` at all.
    #[error("the Authorization header is malformed: not `Bearer <token>`")]
    MalformedHeader,
    /// No proxy header.
    #[error("no {header} header")]
    MissingProxyHeader {
        /// The configured header name.
        header: String,
    },
    /// No `Cookie` header.
    #[error("no Cookie header")]
    MissingCookieHeader,
    /// A `Cookie` header without the session cookie.
    #[error("no cookie named {name}")]
    MissingCookie {
        /// The configured cookie name.
        name: String,
    },
    /// A `Cookie` header that is not valid text, and no session cookie could be read from it.
    #[error("the Cookie header is malformed and holds no readable cookie named {name}")]
    MalformedCookie {
        /// The configured cookie name.
        name: String,
    },
}

impl MissReason {
    /// A stable snake_case name.
    pub fn code(&self) -> &'static str {
        match self {
            MissReason::MissingHeader => "missing_header",
            MissReason::OtherScheme(_) => "other_scheme",
            MissReason::MalformedHeader => "malformed_header",
            MissReason::MissingProxyHeader { .. } => "missing_proxy_header",
            MissReason::MissingCookieHeader => "missing_cookie_header",
            MissReason::MissingCookie { .. } => "missing_cookie",
            MissReason::MalformedCookie { .. } => "malformed_cookie",
        }
    }
}

/// A scheme name as shown in a miss: a well-known one, or "another scheme".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemeName(Option<&'static str>);

impl std::fmt::Display for SchemeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(s) => write!(f, "the {s} scheme"),
            None => f.write_str("another scheme"),
        }
    }
}

/// Schemes named back to the client; anything else might be a credential sent without a scheme.
const KNOWN_SCHEMES: &[&str] = &[
    "Basic",
    "Digest",
    "Negotiate",
    "NTLM",
    "DPoP",
    "Token",
    "HOBA",
    "Mutual",
    "AWS4-HMAC-SHA256",
];

/// One method and why it missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    /// The method.
    pub method: Method,
    /// Why it found nothing.
    pub reason: MissReason,
}

/// Every method missed: the list, in the order tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NoCredential {
    /// Each method and why it missed.
    pub misses: Vec<Miss>,
}

impl std::fmt::Display for NoCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no bearer credential (")?;
        for (i, m) in self.misses.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", m.method, m.reason)?;
        }
        f.write_str(")")
    }
}

/// A present credential that cannot be a token: the request fails at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The carrier appears more than once (two `Authorization` headers, two session cookies with
    /// different values): which one is meant is not guessed.
    #[error("{method} is present more than once")]
    Repeated {
        /// The method.
        method: Method,
    },
    /// `Bearer` with nothing after it.
    #[error("{method} holds an empty bearer token")]
    Empty {
        /// The method.
        method: Method,
    },
    /// Characters outside RFC 6750's `b64token` (or more than one token).
    #[error("{method} holds characters a bearer token cannot have")]
    BadCharacters {
        /// The method.
        method: Method,
    },
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("{method} holds a token of {len} bytes, over the {max}-byte limit")]
    TooLong {
        /// The method.
        method: Method,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl Malformed {
    /// A stable snake_case name.
    pub fn code(&self) -> &'static str {
        match self {
            Malformed::Repeated { .. } => "repeated_credential",
            Malformed::Empty { .. } => "empty_token",
            Malformed::BadCharacters { .. } => "malformed_token",
            Malformed::TooLong { .. } => "oversized_token",
        }
    }

    /// The method whose credential was malformed.
    pub fn method(&self) -> Method {
        match self {
            Malformed::Repeated { method }
            | Malformed::Empty { method }
            | Malformed::BadCharacters { method }
            | Malformed::TooLong { method, .. } => *method,
        }
    }
}

/// What the chain found.
#[derive(Debug)]
pub enum Extraction {
    /// A well-formed token from this method (not yet verified).
    Found {
        /// The method that had it.
        method: Method,
        /// The token.
        token: SecretString,
    },
    /// Every method missed.
    Missing(NoCredential),
    /// A present credential is malformed.
    Malformed(Malformed),
}

/// Why the chain cannot be set up from `[http]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainSetupError {
    /// `http.proxy_header` is not a header name.
    #[error(
        "`http.proxy_header = {0:?}` is not a valid HTTP header name\nhint: use letters, digits and dashes, e.g. `x-forwarded-authorization`"
    )]
    BadProxyHeader(String),
    /// `http.proxy_header` is the `Authorization` or `Cookie` header.
    #[error("`http.proxy_header` cannot be {0}: that carrier is a method of its own")]
    ReservedProxyHeader(String),
    /// `http.cookie_name` is not a cookie name.
    #[error(
        "`http.cookie_name = {0:?}` is not a valid cookie name\nhint: use letters, digits, `-` and `_`"
    )]
    BadCookieName(String),
}

/// The ordered methods and their settings.
#[derive(Debug, Clone)]
pub struct ExtractorChain {
    methods: &'static [Method],
    proxy_header: HeaderName,
    cookie_name: String,
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(t: &[u8]) -> bool {
    let body = t.iter().rposition(|b| *b != b'=').map_or(0, |i| i + 1);
    body > 0
        && t[..body].iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

fn check_token(method: Method, token: &[u8]) -> Result<SecretString, Malformed> {
    if token.is_empty() {
        return Err(Malformed::Empty { method });
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Malformed::TooLong {
            method,
            len: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    if !is_b64token(token) {
        return Err(Malformed::BadCharacters { method });
    }
    // b64token is ASCII, so this cannot fail; an error would still be reported, never unwrapped.
    std::str::from_utf8(token)
        .map(|s| SecretString::from(s.to_string()))
        .map_err(|_| Malformed::BadCharacters { method })
}

/// Split `scheme SP credentials`; `None` when the value is not of that shape. A tab separates
/// as a space does, and `Bearer` alone has empty credentials: `Bearer` and `Bearer<TAB>junk`
/// name a bearer token, so they fail as one rather than pass as no header at all.
fn split_scheme(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = match value.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(end) => end,
        None if value.eq_ignore_ascii_case(b"bearer") => value.len(),
        None => return None,
    };
    let (scheme, rest) = value.split_at(end);
    let scheme_ok = !scheme.is_empty()
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b));
    scheme_ok.then(|| (scheme, trim_spaces(rest)))
}

fn trim_spaces(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end.max(start)]
}

/// Whether a cookie name is an RFC 6265 token.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl ExtractorChain {
    /// The chain of `preset`, with the proxy's header and the cookie's name.
    pub fn new(
        preset: ExtractorPreset,
        proxy_header: &str,
        cookie_name: &str,
    ) -> Result<Self, ChainSetupError> {
        let header = HeaderName::from_bytes(proxy_header.as_bytes())
            .map_err(|_| ChainSetupError::BadProxyHeader(proxy_header.to_string()))?;
        if header == AUTHORIZATION || header == COOKIE {
            return Err(ChainSetupError::ReservedProxyHeader(header.to_string()));
        }
        if !is_cookie_name(cookie_name) {
            return Err(ChainSetupError::BadCookieName(cookie_name.to_string()));
        }
        Ok(ExtractorChain {
            methods: Method::preset(preset),
            proxy_header: header,
            cookie_name: cookie_name.to_string(),
        })
    }

    /// The methods, in order.
    pub fn methods(&self) -> &'static [Method] {
        self.methods
    }

    /// Walk the methods over `headers`.
    pub fn extract(&self, headers: &HeaderMap) -> Extraction {
        let mut misses = Vec::with_capacity(self.methods.len());
        for &method in self.methods {
            let outcome = match method {
                Method::AuthorizationHeader => self.read_authorization(headers),
                Method::ProxyHeader => self.read_proxy_header(headers),
                Method::Cookie => self.read_cookie(headers),
            };
            match outcome {
                Ok(token) => return Extraction::Found { method, token },
                Err(Step::Miss(reason)) => misses.push(Miss { method, reason }),
                Err(Step::Malformed(m)) => return Extraction::Malformed(m),
            }
        }
        Extraction::Missing(NoCredential { misses })
    }

    fn read_authorization(&self, headers: &HeaderMap) -> Result<SecretString, Step> {
        let method = Method::AuthorizationHeader;
        let mut all = headers.get_all(AUTHORIZATION).iter();
        let Some(value) = all.next() else {
            return Err(Step::Miss(MissReason::MissingHeader));
        };
        if all.next().is_some() {
            return Err(Step::Malformed(Malformed::Repeated { method }));
        }
        let Some((scheme, credentials)) = split_scheme(value.as_bytes()) else {
            return Err(Step::Miss(MissReason::MalformedHeader));
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            let known = KNOWN_SCHEMES
                .iter()
                .find(|k| scheme.eq_ignore_ascii_case(k.as_bytes()))
                .copied();
            return Err(Step::Miss(MissReason::OtherScheme(SchemeName(known))));
        }
        check_token(method, credentials).map_err(Step::Malformed)
    }

    fn read_proxy_header(&self, headers: &HeaderMap) -> Result<SecretString, Step> {
        let method = Method::ProxyHeader;
        let mut all = headers.get_all(&self.proxy_header).iter();
        let Some(value) = all.next() else {
            return Err(Step::Miss(MissReason::MissingProxyHeader {
                header: self.proxy_header.to_string(),
            }));
        };
        if all.next().is_some() {
            return Err(Step::Malformed(Malformed::Repeated { method }));
        }
        let raw = trim_spaces(value.as_bytes());
        // `Bearer <token>`, or `Bearer` alone (empty), or the bare token.
        let has_scheme = raw.len() >= 6
            && raw[..6].eq_ignore_ascii_case(b"bearer")
            && (raw.len() == 6 || raw[6] == b' ');
        let token = if has_scheme {
            trim_spaces(&raw[6..])
        } else {
            raw
        };
        check_token(method, token).map_err(Step::Malformed)
    }

    fn read_cookie(&self, headers: &HeaderMap) -> Result<SecretString, Step> {
        let method = Method::Cookie;
        let mut any_header = false;
        let mut unreadable = false;
        let mut found: Option<SecretString> = None;
        // HTTP/2 may split cookies over several `Cookie` headers; read them all.
        for value in headers.get_all(COOKIE) {
            any_header = true;
            let Ok(text) = value.to_str() else {
                unreadable = true;
                continue;
            };
            for cookie in Cookie::split_parse(text) {
                let Ok(cookie) = cookie else {
                    unreadable = true;
                    continue;
                };
                if cookie.name() != self.cookie_name {
                    continue;
                }
                let token =
                    check_token(method, cookie.value().as_bytes()).map_err(Step::Malformed)?;
                if let Some(prev) = &found {
                    use secrecy::ExposeSecret;
                    // A second cookie of our name (a sibling site can set one): refuse unless it is
                    // the same value.
                    if prev.expose_secret() != token.expose_secret() {
                        return Err(Step::Malformed(Malformed::Repeated { method }));
                    }
                }
                found = Some(token);
            }
        }
        match (found, any_header, unreadable) {
            (Some(token), _, _) => Ok(token),
            (None, false, _) => Err(Step::Miss(MissReason::MissingCookieHeader)),
            (None, true, true) => Err(Step::Miss(MissReason::MalformedCookie {
                name: self.cookie_name.clone(),
            })),
            (None, true, false) => Err(Step::Miss(MissReason::MissingCookie {
                name: self.cookie_name.clone(),
            })),
        }
    }
}

enum Step {
    Miss(MissReason),
    Malformed(Malformed),
}

/// An RFC 6750 §3 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// The request lacks a credential: no error code is sent (§3.1).
    None,
    /// `invalid_request`: a malformed request (a repeated or malformed credential).
    InvalidRequest,
    /// `invalid_token`: the token is malformed, expired, revoked or badly signed.
    InvalidToken,
}

/// Quote a value for an auth-param: only printable ASCII, `"` and `\` escaped.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// The `WWW-Authenticate` value of a 401 (RFC 6750 §3): `Bearer realm="…"`, the error code and
/// description when a credential was refused, and `resource_metadata` (RFC 9728) when known so
/// that SDK clients can start OAuth discovery. `description` must hold no credential (the
/// reasons in this module and [`crate::identity::Rejection`] hold none).
pub fn challenge(
    realm: &str,
    error: BearerError,
    description: Option<&str>,
    resource_metadata: Option<&str>,
) -> String {
    let mut v = format!("Bearer realm={}", quoted(realm));
    let code = match error {
        BearerError::None => None,
        BearerError::InvalidRequest => Some("invalid_request"),
        BearerError::InvalidToken => Some("invalid_token"),
    };
    if let Some(code) = code {
        v.push_str(&format!(", error=\"{code}\""));
        if let Some(d) = description {
            v.push_str(&format!(", error_description={}", quoted(d)));
        }
    }
    if let Some(url) = resource_metadata {
        v.push_str(&format!(", resource_metadata={}", quoted(url)));
    }
    v
}

/// The JSON body of a 401 when every method missed: `error`, a one-line `message`, and `tried`,
/// each method with its miss code and words.
pub fn no_credential_body(none: &NoCredential) -> serde_json::Value {
    serde_json::json!({
        "error": "unauthorized",
        "reason": "no_credential",
        "message": none.to_string(),
        "tried": none.misses.iter().map(|m| serde_json::json!({
            "method": m.method.as_str(),
            "missed": m.reason.code(),
            "message": m.reason.to_string(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests;
