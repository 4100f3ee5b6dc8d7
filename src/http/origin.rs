//! `Host` and `Origin` checks against DNS rebinding and cross-site requests, and the CORS answers
//! for the pages that are allowed.
//!
//! A page on any site can make a browser send requests to `127.0.0.1`; with DNS rebinding it can
//! even read the answers, because the browser believes it is talking to the page's own host. Two
//! checks close that: the `Host` header must name lastmile (a loopback name or the bound address,
//! with the bound port, or a host the profile lists), and a request that carries an `Origin` —
//! every browser request that could be cross-site does — must be lastmile's own (it serves no
//! page, so nothing but lastmile can claim it) or one the profile lists. Every localhost port
//! counts as the same site to a browser, so no other origin is allowed by default: a local web
//! client is allowed by listing it.

use std::net::SocketAddr;

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, HeaderValue};

/// Why a request's `Host` or `Origin` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginRefusal {
    /// No `Host` header (HTTP/1.1 requires one).
    #[error("the request has no Host header")]
    MissingHost,
    /// `Host` names something else than lastmile.
    #[error(
        "Host {host:?} is not this server (DNS rebinding?)\nhint: list the name under `allowed_hosts` in [http] if a proxy in front uses it"
    )]
    HostNotAllowed {
        /// The header as sent (a host name, not a secret).
        host: String,
    },
    /// `Origin` is not listed.
    #[error(
        "Origin {origin:?} is not allowed\nhint: list it under `allowed_origins` in [http] if that page is yours"
    )]
    OriginNotAllowed {
        /// The header as sent.
        origin: String,
    },
}

impl OriginRefusal {
    /// A stable snake_case name.
    pub fn code(&self) -> &'static str {
        match self {
            OriginRefusal::MissingHost => "missing_host",
            OriginRefusal::HostNotAllowed { .. } => "host_not_allowed",
            OriginRefusal::OriginNotAllowed { .. } => "origin_not_allowed",
        }
    }
}

/// The hosts and origins one listener accepts.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Accepted `Host` values, lowercase, each with and without the port.
    hosts: Vec<String>,
    /// Accepted `Origin` values, lowercase, without a trailing slash.
    origins: Vec<String>,
    /// Whether allowed origins may send credentials (cookies): the `browser` preset.
    credentials: bool,
}

impl OriginPolicy {
    /// The policy of a listener bound to `bound`, with the profile's extra hosts and origins.
    pub fn new(
        bound: SocketAddr,
        extra_hosts: &[String],
        origins: &[String],
        credentials: bool,
    ) -> Self {
        let port = bound.port();
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "[::1]".to_string(),
        ];
        names.push(match bound {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        });
        let mut hosts = Vec::new();
        // lastmile's own origin: no page is served from it, so nothing a browser runs can
        // claim it but lastmile itself (a rebound name has its own, foreign, origin).
        let mut allowed: Vec<String> = names
            .iter()
            .map(|name| format!("http://{name}:{port}"))
            .collect();
        for name in names {
            hosts.push(format!("{name}:{port}"));
            hosts.push(name);
        }
        hosts.extend(extra_hosts.iter().map(|h| h.to_ascii_lowercase()));
        allowed.extend(
            origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase()),
        );
        OriginPolicy {
            hosts,
            origins: allowed,
            credentials,
        }
    }

    /// Check a request's `Host` and `Origin`; the allowed origin, if one was sent.
    pub fn check(&self, headers: &HeaderMap) -> Result<Option<HeaderValue>, OriginRefusal> {
        let host = headers.get(HOST).ok_or(OriginRefusal::MissingHost)?;
        let host_text = String::from_utf8_lossy(host.as_bytes()).to_ascii_lowercase();
        if !self.hosts.contains(&host_text) {
            return Err(OriginRefusal::HostNotAllowed {
                host: printable(&host_text),
            });
        }
        let Some(origin) = headers.get(ORIGIN) else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(origin.as_bytes()).to_ascii_lowercase();
        if self.origins.contains(&text) {
            Ok(Some(origin.clone()))
        } else {
            Err(OriginRefusal::OriginNotAllowed {
                origin: printable(&text),
            })
        }
    }

    /// The CORS headers of an answer to an allowed `origin` (and of its preflight).
    pub fn cors(&self, origin: &HeaderValue, headers: &mut HeaderMap, preflight: bool) {
        use http::header::{
            ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
            ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
            ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, VARY,
        };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("mcp-session-id, www-authenticate, retry-after"),
        );
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if preflight {
            headers.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
            );
            headers.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id",
                ),
            );
            headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
    }
}

/// A header value fit for an error message: printable ASCII, at most 100 characters.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(100)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn policy() -> OriginPolicy {
        OriginPolicy::new(
            "127.0.0.1:8931".parse().unwrap(),
            &["mcp.internal".into()],
            &["http://localhost:6274".into()],
            false,
        )
    }

    #[test]
    fn loopback_names_with_the_bound_port_pass() {
        for host in [
            "127.0.0.1:8931",
            "localhost:8931",
            "LOCALHOST:8931",
            "[::1]:8931",
            "localhost",
            "mcp.internal",
        ] {
            assert_eq!(
                policy().check(&headers(&[("host", host)])),
                Ok(None),
                "{host}"
            );
        }
    }

    #[test]
    fn a_rebound_name_or_another_port_is_refused() {
        for host in [
            "attacker.example:8931",
            "localhost:80",
            "127.0.0.2:8931",
            "localhost.:8931",
        ] {
            let e = policy().check(&headers(&[("host", host)])).unwrap_err();
            assert_eq!(e.code(), "host_not_allowed", "{host}");
        }
        assert_eq!(
            policy().check(&HeaderMap::new()).unwrap_err(),
            OriginRefusal::MissingHost
        );
    }

    #[test]
    fn only_listed_origins_pass() {
        let ok = policy()
            .check(&headers(&[
                ("host", "localhost:8931"),
                ("origin", "http://localhost:6274"),
            ]))
            .unwrap();
        assert_eq!(ok.unwrap(), "http://localhost:6274");
        // lastmile's own origin, under any of its names.
        for own in [
            "http://127.0.0.1:8931",
            "http://localhost:8931",
            "http://[::1]:8931",
        ] {
            assert!(
                policy()
                    .check(&headers(&[("host", "localhost:8931"), ("origin", own)]))
                    .is_ok(),
                "{own}"
            );
        }
        for origin in [
            "http://localhost:3000",
            "null",
            "http://attacker.example",
            "https://localhost:6274",
        ] {
            let e = policy()
                .check(&headers(&[("host", "localhost:8931"), ("origin", origin)]))
                .unwrap_err();
            assert_eq!(e.code(), "origin_not_allowed", "{origin}");
        }
    }

    #[test]
    fn credentials_are_allowed_only_for_the_browser_preset() {
        let origin = HeaderValue::from_static("http://localhost:6274");
        let mut h = HeaderMap::new();
        policy().cors(&origin, &mut h, true);
        assert!(h.get("access-control-allow-credentials").is_none());
        assert!(
            h["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("mcp-session-id")
        );
        let browser = OriginPolicy::new("127.0.0.1:1".parse().unwrap(), &[], &[], true);
        let mut h = HeaderMap::new();
        browser.cors(&origin, &mut h, false);
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert!(h.get("access-control-allow-methods").is_none());
    }
}
