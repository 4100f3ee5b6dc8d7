//! Building a child's command: the program resolved against PATH *before* the environment is
//! cleared, then a cleared environment holding only the platform base, the file's `env` and the
//! secrets handed in, and its own process group. On Linux the command is the isolation step,
//! `lastmile __exec -- PROGRAM ARGS…` (see [`super::isolate`]), which execs the program.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use process_wrap::tokio::CommandWrap;
use secrecy::{ExposeSecret, SecretString};

use crate::config::Server;

/// The variables a child inherits from lastmile's own environment, and nothing else.
#[cfg(unix)]
pub const BASE_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "TMPDIR"];
/// The variables a child inherits from lastmile's own environment, and nothing else.
#[cfg(windows)]
pub const BASE_ENV: &[&str] = &[
    "PATH",
    "PATHEXT",
    "SystemRoot",
    "SystemDrive",
    "COMSPEC",
    "WINDIR",
    "TEMP",
    "TMP",
    "USERPROFILE",
    "USERNAME",
    "APPDATA",
    "LOCALAPPDATA",
    "ProgramData",
    "ProgramFiles",
];

/// Why a child could not be started.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpawnError {
    /// The command is not an executable file and not on PATH.
    #[error(
        "command `{command}` not found{searched}\nhint: install it, or give its absolute path in `command`"
    )]
    NotFound {
        /// What the file says.
        command: String,
        /// Where it was looked for.
        searched: String,
    },
    /// Windows: the program is a batch file (`npx.cmd`) and an argument holds a character
    /// `cmd.exe` cannot be made to read literally (a line break, say); Rust refuses to start it
    /// rather than let `cmd.exe` run something else.
    #[error(
        "cannot start `{program}`: it is a batch file, and an argument in `args` holds a character cmd.exe cannot be given safely (such as a line break)\nhint: remove that character from `args`, or point `command` at the program the batch file runs (for npx: `node` with the package's script)"
    )]
    BatchArguments {
        /// The resolved batch file.
        program: String,
    },
    /// The OS refused to start it.
    #[error("cannot start `{program}`: {message}")]
    Os {
        /// The resolved program.
        program: String,
        /// The OS error.
        message: String,
    },
    /// The isolation step (`lastmile __exec`) failed; the program was never run.
    #[error("the isolation step failed, the server was not started: {reason}")]
    Isolation {
        /// The trampoline's own line, without its prefix.
        reason: String,
    },
}

/// Find the program a server file names: a path with a separator is taken as is (relative to the
/// file's folder); a bare name is looked up on `path_var` (the child's PATH). The result is
/// absolute: the child may start in another folder (`cwd`), and must run the very file that was
/// found here, not one at the same relative path there.
pub fn resolve_program(
    command: &str,
    base_dir: &Path,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, SpawnError> {
    let found = find_program(command, base_dir, path_var)?;
    std::path::absolute(&found).map_err(|e| SpawnError::NotFound {
        command: command.to_string(),
        searched: format!(" at {} ({e})", found.display()),
    })
}

fn find_program(
    command: &str,
    base_dir: &Path,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, SpawnError> {
    let as_path = Path::new(command);
    if as_path.components().count() > 1 || as_path.is_absolute() {
        let full = if as_path.is_absolute() {
            as_path.to_path_buf()
        } else {
            base_dir.join(as_path)
        };
        // Windows: `../bin/server` names `../bin/server.exe`, as it does for CreateProcess, even
        // beside an extensionless file of that name (which Windows cannot run).
        #[cfg(windows)]
        if let Some(found) = first_pathext(full.parent(), &full) {
            return Ok(found);
        }
        if is_executable(&full) {
            return Ok(full);
        }
        return Err(SpawnError::NotFound {
            command: command.to_string(),
            searched: format!(" at {}", full.display()),
        });
    }
    if let Some(path_var) = path_var {
        for dir in std::env::split_paths(path_var) {
            #[cfg(not(windows))]
            let candidates = [dir.join(command)];
            #[cfg(windows)]
            let candidates = super::windows::pathext_candidates(
                &dir,
                command,
                std::env::var_os("PATHEXT").as_deref(),
            );
            if let Some(found) = candidates.into_iter().find(|c| is_executable(c)) {
                return Ok(found);
            }
        }
    }
    Err(SpawnError::NotFound {
        command: command.to_string(),
        searched: " on PATH".into(),
    })
}

#[cfg(windows)]
fn first_pathext(dir: Option<&Path>, full: &Path) -> Option<PathBuf> {
    let name = full.file_name()?.to_str()?;
    let pathext = std::env::var_os("PATHEXT");
    super::windows::pathext_candidates(dir?, name, pathext.as_deref())
        .into_iter()
        .find(|c| is_executable(c))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// The environment a child gets: base variables from lastmile's own environment, then the file's
/// `env`, then the secrets. Secret values stay in `SecretString` until they enter the command.
pub struct ChildEnv {
    plain: Vec<(OsString, OsString)>,
    secrets: Vec<(String, SecretString)>,
}

impl std::fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildEnv")
            .field("plain", &self.plain)
            .field(
                "secrets",
                &self.secrets.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ChildEnv {
    /// Base + the server file's `env` (which may override a base variable).
    pub fn for_server(server: &Server) -> Self {
        Self::from_parts(std::env::vars_os(), &server.def.env)
    }

    /// As [`Self::for_server`], from an explicit parent environment (for tests).
    pub fn from_parts(
        parent: impl IntoIterator<Item = (OsString, OsString)>,
        file_env: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        let mut plain: Vec<(OsString, OsString)> = parent
            .into_iter()
            .filter(|(k, _)| BASE_ENV.iter().any(|b| super::windows::same_var(k, b)))
            .filter(|(k, _)| !file_env.contains_key(&*k.to_string_lossy()))
            .collect();
        plain.extend(
            file_env
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        plain.sort();
        ChildEnv {
            plain,
            secrets: Vec::new(),
        }
    }

    /// Add a secret variable.
    pub fn add_secret(&mut self, name: String, value: SecretString) {
        self.secrets.push((name, value));
    }

    /// Add a plain variable (lastmile's own, e.g. the custom-secrets allowlist).
    pub fn add_plain(&mut self, name: &str, value: &str) {
        self.plain.push((name.into(), value.into()));
    }

    /// The PATH the child will see, used to resolve a bare command name.
    pub fn path_var(&self) -> Option<&OsStr> {
        self.plain
            .iter()
            .find(|(k, _)| super::windows::same_var(k, "PATH"))
            .map(|(_, v)| v.as_os_str())
    }

    /// Names of every variable (never values).
    pub fn names(&self) -> Vec<String> {
        self.plain
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .chain(self.secrets.iter().map(|(k, _)| k.clone()))
            .collect()
    }
}

/// Name a failed spawn of `wrap` (built by [`build_command`] for `command`).
pub fn spawn_failed(command: &str, wrap: &CommandWrap, error: std::io::Error) -> SpawnError {
    let program = Path::new(wrap.command().as_std().get_program());
    if super::windows::is_batch_refusal(program, &error) {
        return SpawnError::BatchArguments {
            program: program.display().to_string(),
        };
    }
    SpawnError::Os {
        program: command.to_string(),
        message: error.to_string(),
    }
}

/// A ready-to-spawn command for one server: cleared environment, own process group, killed on
/// drop, and on Linux started through the isolation step.
pub fn build_command(server: &Server, env: &ChildEnv) -> Result<CommandWrap, SpawnError> {
    let program = resolve_program(&server.def.command, server.base_dir(), env.path_var())?;
    let mut cmd = isolated_command(server, &program)?;
    cmd.env_clear();
    for (k, v) in &env.plain {
        cmd.env(k, v);
    }
    for (k, v) in &env.secrets {
        // The one place a secret value leaves its SecretString: into the child's environment.
        cmd.env(k, v.expose_secret());
    }
    if let Some(cwd) = &server.def.cwd {
        cmd.current_dir(server.base_dir().join(cwd));
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut wrap = CommandWrap::from(cmd);
    // A session of its own, not only a process group: a child in lastmile's session keeps its
    // controlling terminal, and with it could type into the user's shell (TIOCSTI) or read
    // keystrokes. The session's process group is still the child's pid, for the reaper.
    #[cfg(unix)]
    wrap.wrap(process_wrap::tokio::ProcessSession);
    #[cfg(windows)]
    super::windows::wrap(&mut wrap);
    wrap.wrap(process_wrap::tokio::KillOnDrop);
    Ok(wrap)
}

/// lastmile's own executable, as the kernel keeps it open.
#[cfg(target_os = "linux")]
const SELF_EXE: &str = "/proc/self/exe";

/// `lastmile __exec [--allow-kernel-keyring] -- PROGRAM ARGS…`: nothing secret in argv.
#[cfg(target_os = "linux")]
fn isolated_command(
    server: &Server,
    program: &Path,
) -> Result<tokio::process::Command, SpawnError> {
    let policy = super::isolate::Policy {
        kernel_keyring: server.def.allow_kernel_keyring,
    };
    if policy.kernel_keyring {
        tracing::warn!(
            server = %server.name,
            "KERNEL KEYRING ALLOWED (allow_kernel_keyring = true in {}): this server can read every keyring entry of the profile, the signing secret and the audit key included",
            server.path.display()
        );
    }
    // The running binary itself, even if an upgrade has replaced or removed its file since.
    let mut cmd = tokio::process::Command::new(SELF_EXE);
    cmd.args(super::isolate::trampoline_args(
        policy,
        program,
        &server.def.args,
    ));
    Ok(cmd)
}

/// Elsewhere the program starts directly (see the README's threat model).
#[cfg(not(target_os = "linux"))]
fn isolated_command(
    server: &Server,
    program: &Path,
) -> Result<tokio::process::Command, SpawnError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&server.def.args);
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keeps_only_base_and_file() {
        let parent = vec![
            ("PATH".into(), "/bin".into()),
            ("HOME".into(), "/home/x".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "leak".into()),
            ("LASTMILE_TOKEN".into(), "leak".into()),
        ];
        let mut file = std::collections::BTreeMap::new();
        file.insert("HOME".to_string(), "/srv".to_string());
        file.insert("MODE".to_string(), "demo".to_string());
        let env = ChildEnv::from_parts(parent, &file);
        let names = env.names();
        assert!(names.contains(&"PATH".to_string()));
        assert!(names.contains(&"MODE".to_string()));
        assert!(
            !names
                .iter()
                .any(|n| n == "AWS_SECRET_ACCESS_KEY" || n == "LASTMILE_TOKEN")
        );
        assert_eq!(env.plain.iter().filter(|(k, _)| k == "HOME").count(), 1);
        assert!(env.plain.iter().any(|(k, v)| k == "HOME" && v == "/srv"));
    }

    #[test]
    fn secrets_are_not_in_debug() {
        let mut env = ChildEnv::from_parts(Vec::new(), &Default::default());
        env.add_secret("TOKEN".into(), SecretString::from("canary-value-123"));
        let dbg = format!("{env:?}");
        assert!(dbg.contains("TOKEN"));
        assert!(!dbg.contains("canary-value-123"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_command_is_the_isolation_step_with_no_secret_in_argv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("srv.toml");
        let mut def =
            crate::config::parse_server_file("command = \"/bin/sh\"\nargs = [\"-c\", \"true\"]\n")
                .unwrap();
        let argv = |def: &crate::config::ServerDef| {
            let server = Server {
                name: "srv".into(),
                path: path.clone(),
                def: def.clone(),
            };
            let mut env = ChildEnv::from_parts(Vec::new(), &Default::default());
            env.add_secret("TOKEN".into(), SecretString::from("canary-in-env-only"));
            let wrap = build_command(&server, &env).unwrap();
            let std = wrap.command().as_std();
            assert_eq!(std.get_program(), SELF_EXE);
            std.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(argv(&def), ["__exec", "--", "/bin/sh", "-c", "true"]);
        def.allow_kernel_keyring = true;
        let opted_out = argv(&def);
        assert_eq!(
            opted_out,
            [
                "__exec",
                "--allow-kernel-keyring",
                "--",
                "/bin/sh",
                "-c",
                "true"
            ]
        );
        assert!(!opted_out.iter().any(|a| a.contains("canary")));
    }

    #[test]
    fn resolves_on_path_and_relative() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_program(
            "definitely-not-here-xyz",
            dir.path(),
            Some(OsStr::new("/nonexistent")),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not found"));
        #[cfg(unix)]
        let (name, path) = ("sh", OsString::from("/usr/bin:/bin"));
        // Found through PATHEXT: `cmd` is `cmd.exe`.
        #[cfg(windows)]
        let (name, path) = (
            "cmd",
            std::path::Path::new(&std::env::var_os("SystemRoot").unwrap())
                .join("system32")
                .into_os_string(),
        );
        let found = resolve_program(name, dir.path(), Some(&path)).unwrap();
        assert!(found.is_absolute());
        assert!(resolve_program("./missing", dir.path(), None).is_err());
    }
}
