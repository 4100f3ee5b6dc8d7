//! Permission tiers: the enforcement boundary a session holds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A session's permission tier. Server files list the tiers that may use them; rate limits are
/// scaled by tier.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Operators: every server is theirs unless a file says otherwise.
    Admin,
    /// A person using Claude.
    User,
    /// A machine identity.
    Service,
    /// Another agent (agent-to-agent).
    A2a,
    /// An MCP client acting on its own behalf.
    Mcp,
    /// No verified identity (optional mode without a valid token).
    Anonymous,
}

impl Tier {
    /// Every tier, in a fixed order.
    pub const ALL: [Tier; 6] = [
        Tier::Admin,
        Tier::User,
        Tier::Service,
        Tier::A2a,
        Tier::Mcp,
        Tier::Anonymous,
    ];

    /// The tier's name as written in tokens and config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Admin => "admin",
            Tier::User => "user",
            Tier::Service => "service",
            Tier::A2a => "a2a",
            Tier::Mcp => "mcp",
            Tier::Anonymous => "anonymous",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown tier `{s}` (expected one of admin, user, service, a2a, mcp, anonymous)"
                )
            })
    }
}
