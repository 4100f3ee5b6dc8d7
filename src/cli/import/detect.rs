//! Is this a credential? By name (KEY, TOKEN, SECRET, …) confirmed by the value's shape, or by a
//! well-known value format alone; and the `${VAR}` / `${VAR:-default}` references Claude's
//! configs allow. Nothing here ever returns or formats a value.

/// Words in a variable or flag name that mark it as holding a credential.
const CREDENTIAL_WORDS: [&str; 11] = [
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "CREDENTIAL",
    "CREDENTIALS",
    "AUTH",
    "COOKIE",
    "PAT",
];

/// Whether a name (an environment variable or a flag) says it holds a credential: one of its
/// words (split at `_`, `-`, `.`) is a credential word, or it ends in one (`APIKEY`).
pub(crate) fn name_says_credential(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let words: Vec<&str> = upper
        .split(['_', '-', '.'])
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().any(|w| {
        CREDENTIAL_WORDS.contains(w)
            || [
                "APIKEY",
                "ACCESSKEY",
                "SECRETKEY",
                "AUTHTOKEN",
                "PASSWORD",
                "TOKEN",
            ]
            .iter()
            .any(|suffix| w.ends_with(suffix))
    })
}

/// Values that name a mode or a setting, never a credential.
const PLAIN_WORDS: [&str; 14] = [
    "true", "false", "yes", "no", "none", "null", "oauth", "oauth2", "bearer", "basic", "token",
    "disabled", "enabled", "required",
];

/// Whether a value has the shape of a credential: at least 8 bytes with no whitespace, not a
/// path, plain URL or setting word, and either long or mixing letters with digits.
pub(crate) fn value_shaped_like_credential(value: &str) -> bool {
    let v = value.trim();
    if v.len() < 8 || v.chars().any(char::is_whitespace) {
        return false;
    }
    if PLAIN_WORDS.contains(&v.to_ascii_lowercase().as_str()) {
        return false;
    }
    if v.starts_with('/') || v.starts_with("./") || v.starts_with('~') || v.contains(":\\") {
        return false;
    }
    if v.contains("://") {
        return url_has_password(v);
    }
    if is_reference(v).is_some() {
        return false;
    }
    let has_digit = v.chars().any(|c| c.is_ascii_digit());
    let has_alpha = v.chars().any(|c| c.is_ascii_alphabetic());
    let has_upper = v.chars().any(|c| c.is_ascii_uppercase());
    let has_lower = v.chars().any(|c| c.is_ascii_lowercase());
    (has_alpha && has_digit) || (has_upper && has_lower && v.len() >= 12) || v.len() >= 24
}

/// Well-known credential formats, recognised by value alone.
pub(crate) fn well_known_format(value: &str) -> Option<&'static str> {
    let v = value.trim();
    const PREFIXES: [(&str, &str); 19] = [
        ("sk-ant-", "an Anthropic API key"),
        ("sk-proj-", "an OpenAI project key"),
        ("sk-", "an API key (sk-…)"),
        ("ghp_", "a GitHub personal access token"),
        ("gho_", "a GitHub OAuth token"),
        ("ghu_", "a GitHub user token"),
        ("ghs_", "a GitHub app token"),
        ("ghr_", "a GitHub refresh token"),
        ("github_pat_", "a GitHub fine-grained token"),
        ("glpat-", "a GitLab token"),
        ("xoxb-", "a Slack bot token"),
        ("xoxp-", "a Slack user token"),
        ("xapp-", "a Slack app token"),
        ("sk_live_", "a Stripe secret key"),
        ("rk_live_", "a Stripe restricted key"),
        ("sk_test_", "a Stripe test key"),
        ("npm_", "an npm token"),
        ("hf_", "a Hugging Face token"),
        ("-----BEGIN", "a private key"),
    ];
    for (prefix, what) in PREFIXES {
        if v.starts_with(prefix) && v.len() >= prefix.len() + 8 {
            return Some(what);
        }
    }
    let b = v.as_bytes();
    if b.len() == 20
        && (v.starts_with("AKIA") || v.starts_with("ASIA"))
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return Some("an AWS access key id");
    }
    if v.starts_with("AIza") && b.len() == 39 {
        return Some("a Google API key");
    }
    if v.starts_with("eyJ") && v.split('.').count() == 3 && v.len() > 30 {
        return Some("a JSON Web Token");
    }
    if v.contains("://") && url_has_password(v) {
        return Some("a URL with a password");
    }
    None
}

/// `scheme://user:password@host…`
pub(crate) fn url_has_password(v: &str) -> bool {
    let Some((_, rest)) = v.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => userinfo
            .split_once(':')
            .is_some_and(|(_, pw)| !pw.is_empty()),
        None => false,
    }
}

/// Whether an environment entry holds a credential, and why (never the value).
pub(crate) fn env_credential(name: &str, value: &str) -> Option<String> {
    if let Some(what) = well_known_format(value) {
        return Some(format!("its value has the format of {what}"));
    }
    if name_says_credential(name) && value_shaped_like_credential(value) {
        return Some("its name says credential and its value has a credential's shape".into());
    }
    None
}

/// A whole-value `${VAR}` or `${VAR:-default}` reference: the variable and the default.
pub(crate) fn is_reference(value: &str) -> Option<(String, Option<String>)> {
    let inner = value.trim().strip_prefix("${")?.strip_suffix('}')?;
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (inner, None),
    };
    let ok = !name.is_empty()
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    ok.then(|| (name.to_string(), default))
}

/// A credential found in `args`: its index and how it was recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArgCredential {
    /// Index in `args` of the word holding the value.
    pub index: usize,
    /// The flag that names it (`--api-key`), if any.
    pub flag: Option<String>,
    /// Why it is a credential.
    pub why: String,
}

/// Credentials in an argument list: `--api-key VALUE`, `--token=VALUE`, a URL with a password,
/// or a value of a well-known format.
pub(crate) fn arg_credentials(args: &[String]) -> Vec<ArgCredential> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) {
            if let Some((name, value)) = flag.split_once('=') {
                if name_says_credential(name) && value_shaped_like_credential(value) {
                    found.push(ArgCredential {
                        index: i,
                        flag: Some(format!("--{name}")),
                        why: format!("`--{name}` takes a credential"),
                    });
                    i += 1;
                    continue;
                }
            } else if name_says_credential(flag)
                && let Some(next) = args.get(i + 1)
                && !next.starts_with('-')
                && value_shaped_like_credential(next)
            {
                found.push(ArgCredential {
                    index: i + 1,
                    flag: Some(a.clone()),
                    why: format!("`{a}` takes a credential"),
                });
                i += 2;
                continue;
            }
        }
        if let Some(what) = well_known_format(a.split_once('=').map_or(a.as_str(), |(_, v)| v)) {
            found.push(ArgCredential {
                index: i,
                flag: None,
                why: format!("it has the format of {what}"),
            });
        }
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_confirmed_by_shape() {
        assert!(env_credential("GITHUB_TOKEN", "abc123def456ghi789").is_some());
        assert!(env_credential("MY_API_KEY", "Zx81kq0pl2mN").is_some());
        assert!(env_credential("AUTH_MODE", "oauth").is_none());
        assert!(env_credential("AUTH_TYPE", "bearer").is_none());
        assert!(env_credential("KEY_FILE", "/home/me/key.pem").is_none());
        assert!(env_credential("TOKEN_URL", "https://example.com/token").is_none());
        assert!(env_credential("LOG_LEVEL", "debug").is_none());
        assert!(
            env_credential("MONKEY", "bananas2024").is_none(),
            "MONKEY is not KEY"
        );
    }

    #[test]
    fn well_known_values_whatever_the_name() {
        assert!(env_credential("X", "ghp_abcdefghijklmnopqrstuvwxyz0123456789").is_some());
        assert!(env_credential("CONN", "postgresql://u:pw@db:5432/app").is_some());
        assert!(env_credential("CONN", "postgresql://u@db:5432/app").is_none());
        assert!(env_credential("ID", "AKIAABCDEFGHIJKLMNOP").is_some());
        assert!(env_credential("NOTE", "sk-").is_none());
    }

    #[test]
    fn references() {
        assert_eq!(
            is_reference("${GITHUB_TOKEN}"),
            Some(("GITHUB_TOKEN".into(), None))
        );
        assert_eq!(
            is_reference("${LEVEL:-info}"),
            Some(("LEVEL".into(), Some("info".into())))
        );
        assert_eq!(is_reference("x${A}"), None);
    }

    #[test]
    fn credentials_in_args() {
        let args: Vec<String> = [
            "-y",
            "server",
            "--api-key",
            "abcd1234efgh",
            "--token=zzz12345abc",
            "--auth-mode",
            "oauth",
            "postgresql://me:pw@localhost/db",
            "--verbose",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let found = arg_credentials(&args);
        let idx: Vec<usize> = found.iter().map(|c| c.index).collect();
        assert_eq!(idx, vec![3, 4, 7], "{found:?}");
        assert!(arg_credentials(&["--api-key".into(), "${KEY}".into()]).is_empty());
    }
}
