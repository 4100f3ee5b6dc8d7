//! File permissions, the way ssh's `StrictModes` treats `~/.ssh`: what lastmile runs comes from
//! the config folder, so a config folder, `lastmile.toml`, `servers.d/` or server file that
//! someone else could change is refused; and what lastmile writes (the data folder, the logs) is
//! made private to its user.
//!
//! A path is unsafe when it is writable by others, writable by a group other than its owner's
//! private group (a umask-002 checkout of a repository gives `rw-rw-r--` with the user's own
//! group, which is fine), or owned by neither the invoking user nor root. Folders above the
//! config folder are not checked. Symbolic links are followed: the file read is the one judged.
//!
//! Only Unix modes are checked; on Windows [`check_config`] finds nothing (ACLs are not read).

use std::path::{Path, PathBuf};

use super::{Profile, server_file_paths};

/// A config file or folder that someone other than its user could change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePermissions {
    /// Every local user may write it.
    #[error(
        "{}: writable by every local user (mode {mode:04o}), who could change what lastmile runs\nhint: run `{fix}`",
        .path.display()
    )]
    WritableByOthers {
        /// The file or folder.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The command that fixes it.
        fix: String,
    },
    /// A group other than the owner's private group may write it.
    #[error(
        "{}: writable by group `{group}` (mode {mode:04o}), which is not the private group of its owner `{owner}`; its members could change what lastmile runs\nhint: run `{fix}`",
        .path.display()
    )]
    WritableByGroup {
        /// The file or folder.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The group's name (or number).
        group: String,
        /// The owner's name (or number).
        owner: String,
        /// The command that fixes it.
        fix: String,
    },
    /// Owned by a user who is neither the one running lastmile nor root.
    #[error(
        "{}: owned by `{owner}`, not by you (`{user}`) or root; its owner could change what lastmile runs\nhint: run `{fix}` as root, or use a config folder of your own",
        .path.display()
    )]
    ForeignOwner {
        /// The file or folder.
        path: PathBuf,
        /// Its owner's name (or number).
        owner: String,
        /// The invoking user's name (or number).
        user: String,
        /// The command that fixes it.
        fix: String,
    },
    /// Its permissions could not be read.
    #[error("{}: cannot read its permissions: {message}", .path.display())]
    Unreadable {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
}

/// Every problem with the permissions of the profile's config folder, `lastmile.toml`,
/// `servers.d/` and each server file that would be loaded. Missing paths are not problems.
pub fn check_config(profile: &Profile) -> Vec<UnsafePermissions> {
    #[cfg(unix)]
    {
        let servers_dir = profile.servers_dir();
        let mut paths = vec![
            profile.config_dir.clone(),
            profile.config_file(),
            servers_dir.clone(),
        ];
        // An unreadable servers.d is reported by the loader itself.
        paths.extend(server_file_paths(&servers_dir).unwrap_or_default());
        let invoking = nix::unistd::geteuid().as_raw();
        paths
            .iter()
            .flat_map(|path| match std::fs::metadata(path) {
                Ok(meta) => judge(path, Facts::of(&meta), invoking, &SystemAccounts),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => vec![UnsafePermissions::Unreadable {
                    path: path.clone(),
                    message: e.to_string(),
                }],
            })
            .collect()
    }
    #[cfg(not(unix))]
    {
        let _ = (profile, server_file_paths);
        Vec::new()
    }
}

/// Create `dir` (and missing parents) with mode 0700; if it exists with group or other bits,
/// and belongs to this user, take them away. Returns the mode it had when it was tightened.
pub fn create_private_dir(dir: &Path) -> std::io::Result<Option<u32>> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    tighten(dir)
}

/// Take group and other bits off a file or folder of this user's. A folder with the sticky bit
/// (`/tmp`, pointed at by mistake) or one owned by someone else is left alone.
#[cfg(unix)]
pub fn tighten(path: &Path) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(path)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 == 0 || mode & 0o1000 != 0 || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Ok(None);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !0o077))?;
    Ok(Some(mode))
}

/// Take group and other bits off a file or folder of this user's (nothing to do off Unix).
#[cfg(not(unix))]
pub fn tighten(_path: &Path) -> std::io::Result<Option<u32>> {
    Ok(None)
}

/// What the rules need of one path's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(unix), allow(dead_code))] // the rules are pure and tested everywhere; only Unix applies them
pub(crate) struct Facts {
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl Facts {
    #[cfg(unix)]
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Facts {
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }
}

/// A group as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(unix), allow(dead_code))] // the rules are pure and tested everywhere; only Unix applies them
pub(crate) struct GroupInfo {
    /// Its name.
    pub name: String,
    /// Its listed (supplementary) members.
    pub members: Vec<String>,
}

/// The user and group database, behind a trait so the rules can be tested for any user,
/// whoever runs the tests.
#[cfg_attr(not(unix), allow(dead_code))] // the rules are pure and tested everywhere; only Unix applies them
pub(crate) trait Accounts {
    fn user_name(&self, uid: u32) -> Option<String>;
    fn group(&self, gid: u32) -> Option<GroupInfo>;
}

/// The system's user and group database (NSS included).
#[cfg(unix)]
struct SystemAccounts;

#[cfg(unix)]
impl Accounts for SystemAccounts {
    fn user_name(&self, uid: u32) -> Option<String> {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    }
    fn group(&self, gid: u32) -> Option<GroupInfo> {
        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .ok()
            .flatten()
            .map(|g| GroupInfo {
                name: g.name,
                members: g.mem,
            })
    }
}

/// The problems of one path owned and moded as `facts` say, for the user `invoking`.
#[cfg_attr(not(unix), allow(dead_code))] // the rules are pure and tested everywhere; only Unix applies them
pub(crate) fn judge(
    path: &Path,
    facts: Facts,
    invoking: u32,
    accounts: &dyn Accounts,
) -> Vec<UnsafePermissions> {
    let user_name = |uid: u32| accounts.user_name(uid).unwrap_or_else(|| uid.to_string());
    let mut problems = Vec::new();
    if facts.uid != invoking && facts.uid != 0 {
        let user = user_name(invoking);
        problems.push(UnsafePermissions::ForeignOwner {
            path: path.to_path_buf(),
            owner: user_name(facts.uid),
            fix: format!("chown {} {}", shell_quote(&user), shell_quote_path(path)),
            user,
        });
    }
    let group_writable = facts.mode & 0o020 != 0 && !is_private_group(facts, accounts);
    if facts.mode & 0o002 != 0 {
        let who = if group_writable { "go-w" } else { "o-w" };
        problems.push(UnsafePermissions::WritableByOthers {
            path: path.to_path_buf(),
            mode: facts.mode,
            fix: format!("chmod {who} {}", shell_quote_path(path)),
        });
    } else if group_writable {
        problems.push(UnsafePermissions::WritableByGroup {
            path: path.to_path_buf(),
            mode: facts.mode,
            group: accounts
                .group(facts.gid)
                .map(|g| g.name)
                .unwrap_or_else(|| facts.gid.to_string()),
            owner: user_name(facts.uid),
            fix: format!("chmod g-w {}", shell_quote_path(path)),
        });
    }
    problems
}

/// A user-private group: no listed member but the owner, and named after the owner or listing
/// the owner as its only member.
#[cfg_attr(not(unix), allow(dead_code))] // the rules are pure and tested everywhere; only Unix applies them
fn is_private_group(facts: Facts, accounts: &dyn Accounts) -> bool {
    let (Some(owner), Some(group)) = (accounts.user_name(facts.uid), accounts.group(facts.gid))
    else {
        return false;
    };
    group.members.iter().all(|m| *m == owner) && (group.name == owner || group.members.len() == 1)
}

#[cfg_attr(not(unix), allow(dead_code))] // the rules are pure and tested everywhere; only Unix applies them
fn shell_quote_path(path: &Path) -> String {
    shell_quote(&path.to_string_lossy())
}

/// `text` as one POSIX shell word.
#[cfg_attr(not(unix), allow(dead_code))] // the rules are pure and tested everywhere; only Unix applies them
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests;
