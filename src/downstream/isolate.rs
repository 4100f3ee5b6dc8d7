//! The isolation step every child passes through on Linux: lastmile starts
//! `lastmile __exec [--allow-kernel-keyring] -- PROGRAM ARGS…` (with the child's already-cleared
//! environment) and that small trampoline, before it execs PROGRAM:
//!
//! 1. sets `no_new_privs`, so nothing it execs can gain privileges (and seccomp may be installed);
//! 2. clears every capability set, the bounding set included, when it has any (lastmile runs
//!    as root): `CAP_SYS_PTRACE`, `CAP_SYS_ADMIN` and `CAP_PERFMON` each pass lastmile's
//!    non-dumpable flag, which otherwise keeps every process of the user out of lastmile's
//!    `/proc/<pid>/environ`, `mem`, `maps` and `fd`, and the rest reach it by other roads. A child
//!    never runs with capabilities;
//! 3. enters a Landlock domain of its own. Landlock keeps a process without `CAP_SYS_PTRACE` from
//!    ptrace-class access to processes outside its domain, which covers `/proc/<pid>/environ`,
//!    `mem`, `maps` and `fd`: the child cannot read those of lastmile or of a sibling child
//!    (siblings are dumpable again after their exec, so only this keeps them apart). The domain
//!    restricts nothing else: it handles only the creation of block devices;
//! 4. installs a seccomp filter that fails `keyctl`, `add_key`, `request_key`, `ptrace`,
//!    `process_vm_readv`, `process_vm_writev` and `pidfd_getfd` with `EPERM` — on the native
//!    entry points and the 32-bit ones (i386 and x32 on x86_64, AArch32 on aarch64), with the
//!    architecture checked first. No keyring is reachable without these calls: not the session
//!    keyring lastmile's store links its entries into, not the user or the persistent keyring.
//!
//! `--allow-kernel-keyring` (a server file's `allow_kernel_keyring = true`) leaves the three
//! keyring calls allowed; the rest stays. A step that cannot be set up fails the start loudly:
//! one line starting with [`FAILURE_PREFIX`] on stderr and exit code
//! [`ISOLATION_FAILED`](crate::exit_codes::ISOLATION_FAILED), which the gateway reports as the
//! child's start failure. Only a kernel without Landlock is tolerated, with a warning line: the
//! keyring and lastmile's own `/proc` files stay protected there (by the filter and lastmile's
//! non-dumpable flag), siblings' do not.
//!
//! The filter program is written here rather than with seccompiler's rule compiler because that
//! compiler checks for one architecture and kills every other, and knows nothing of x32's
//! numbers; seccompiler installs it. All of it without `unsafe` in this crate.
//!
//! Not done: joining a fresh anonymous session keyring (`KEYCTL_JOIN_SESSION_KEYRING`). No crate
//! offers it as a safe call without linking the C libkeyutils, and with every keyring call failing
//! it would change nothing the child can reach.

use std::ffi::OsString;

/// The hidden subcommand of the trampoline.
pub const SUBCOMMAND: &str = "__exec";
/// The trampoline's flag that keeps the kernel keyring reachable.
pub const KEYRING_FLAG: &str = "--allow-kernel-keyring";
/// How the trampoline's one failure line on stderr starts.
pub const FAILURE_PREFIX: &str = "lastmile __exec: isolation failed: ";
/// How the trampoline's warning line (no Landlock) starts.
pub const WARNING_PREFIX: &str = "lastmile __exec: warning: ";

/// What the trampoline sets up for one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Leave `keyctl`, `add_key` and `request_key` allowed (the server file opted out).
    pub kernel_keyring: bool,
}

/// Why the trampoline could not start a child.
#[derive(Debug, thiserror::Error)]
pub enum IsolateError {
    /// The command line is not `__exec [--allow-kernel-keyring] -- PROGRAM [ARGS…]`.
    #[error("usage: lastmile __exec [{KEYRING_FLAG}] -- PROGRAM [ARGS...]")]
    Usage,
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(String),
    /// The capabilities could not be dropped.
    #[error(
        "cannot drop the capabilities: {0}\nhint: run lastmile as an ordinary user, or give it CAP_SETPCAP along with the capabilities it has"
    )]
    Capabilities(String),
    /// Landlock is present but the domain could not be made.
    #[error("cannot enter a Landlock domain: {0}")]
    Landlock(String),
    /// There is no filter for the architecture lastmile was built for.
    #[error(
        "no seccomp filter for this architecture ({0})\nhint: lastmile isolates children on x86_64, aarch64 and riscv64 Linux"
    )]
    UnsupportedArch(&'static str),
    /// The kernel refused the filter.
    #[error(
        "cannot install the seccomp filter: {0}\nhint: the kernel needs CONFIG_SECCOMP_FILTER; a container runtime may forbid seccomp(2)"
    )]
    Seccomp(String),
    /// The program could not be executed.
    #[error("cannot run `{program}`: {error}")]
    Exec {
        /// The program.
        program: String,
        /// The OS error.
        error: String,
    },
    /// Not Linux: the trampoline is never used there.
    #[error("the isolation step exists on Linux only")]
    NotLinux,
}

impl IsolateError {
    /// The trampoline's exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            IsolateError::Usage => crate::exit_codes::USAGE,
            IsolateError::Exec { .. } => crate::exit_codes::EXEC_FAILED,
            _ => crate::exit_codes::ISOLATION_FAILED,
        }
    }

    /// The one line written on stderr: the prefix, then the message with its lines joined.
    pub fn stderr_line(&self) -> String {
        format!("{FAILURE_PREFIX}{}", self.to_string().replace('\n', "; "))
    }
}

/// The trampoline's arguments for a child: `__exec [flag] -- PROGRAM ARGS…`.
pub fn trampoline_args(
    policy: Policy,
    program: &std::path::Path,
    args: &[String],
) -> Vec<OsString> {
    let mut out = vec![OsString::from(SUBCOMMAND)];
    if policy.kernel_keyring {
        out.push(KEYRING_FLAG.into());
    }
    out.push("--".into());
    out.push(program.as_os_str().to_owned());
    out.extend(args.iter().map(OsString::from));
    out
}

/// Parse what follows `__exec`.
pub fn parse_args(args: &[OsString]) -> Result<(Policy, OsString, Vec<OsString>), IsolateError> {
    let mut policy = Policy {
        kernel_keyring: false,
    };
    let mut rest = args.iter();
    loop {
        match rest.next().and_then(|a| a.to_str()) {
            Some(KEYRING_FLAG) => policy.kernel_keyring = true,
            Some("--") => break,
            _ => return Err(IsolateError::Usage),
        }
    }
    let program = rest.next().cloned().ok_or(IsolateError::Usage)?;
    Ok((policy, program, rest.cloned().collect()))
}

/// Isolate this process and exec the program; returns only on failure. `warn` receives the line
/// to write on stderr when a layer is missing but the start may go on.
#[cfg(target_os = "linux")]
pub fn exec(
    policy: Policy,
    program: &OsString,
    args: &[OsString],
    warn: &mut dyn FnMut(String),
) -> IsolateError {
    use std::os::unix::process::CommandExt;
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        return IsolateError::NoNewPrivs(e.to_string());
    }
    if let Err(e) = drop_capabilities() {
        return e;
    }
    match enter_landlock_domain() {
        Ok(true) => {}
        Ok(false) => warn(format!(
            "{WARNING_PREFIX}this kernel has no Landlock; the child is not kept from other children's /proc files"
        )),
        Err(e) => return e,
    }
    let program_bytes = match seccomp::native_program(policy) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if let Err(e) = seccompiler::apply_filter(&program_bytes) {
        return IsolateError::Seccomp(e.to_string());
    }
    // The environment is inherited as it is: lastmile cleared it before starting us.
    let error = std::process::Command::new(program).args(args).exec();
    IsolateError::Exec {
        program: program.to_string_lossy().into_owned(),
        error: error.to_string(),
    }
}

/// Not Linux: children start directly and the trampoline is never used.
#[cfg(not(target_os = "linux"))]
pub fn exec(
    _policy: Policy,
    _program: &OsString,
    _args: &[OsString],
    _warn: &mut dyn FnMut(String),
) -> IsolateError {
    IsolateError::NotLinux
}

/// Clear every capability set, the bounding set first (that needs `CAP_SETPCAP`, so it goes
/// while we still have it). A process that cannot clear its bounding set passes only when it
/// could not get a capability back: it holds none and is not root (after an exec, root gets
/// the bounding set), and `no_new_privs` keeps file capabilities from granting any.
#[cfg(target_os = "linux")]
fn drop_capabilities() -> Result<(), IsolateError> {
    use caps::CapSet;
    let fail = |e: caps::errors::CapsError| IsolateError::Capabilities(e.to_string());
    let held = !caps::read(None, CapSet::Permitted)
        .map_err(fail)?
        .is_empty();
    if let Err(e) = caps::clear(None, CapSet::Bounding)
        && (held || nix::unistd::geteuid().is_root())
    {
        return Err(fail(e));
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(fail)?;
    }
    Ok(())
}

/// Enter a Landlock domain of our own. `Ok(false)`: the kernel has no Landlock.
#[cfg(target_os = "linux")]
fn enter_landlock_domain() -> Result<bool, IsolateError> {
    use landlock::{AccessFs, Ruleset, RulesetAttr, RulesetStatus};
    let status = Ruleset::default()
        .handle_access(AccessFs::MakeBlock)
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| IsolateError::Landlock(e.to_string()))?;
    Ok(status.ruleset != RulesetStatus::NotEnforced)
}

/// Make this process non-dumpable: a process of the same user can then neither ptrace it nor
/// read its `/proc/<pid>/environ`, `mem` or `fd`. The kernel resets the flag on exec, so
/// children are not affected. A no-op off Linux.
pub fn make_non_dumpable() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("cannot make lastmile non-dumpable: {e}");
    }
}

/// The seccomp program: written out as data, so that every architecture's table is tested on
/// any machine.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) mod seccomp {
    use super::{IsolateError, Policy};

    /// One classic BPF instruction (the layout of `struct sock_filter`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Insn {
        pub code: u16,
        pub jt: u8,
        pub jf: u8,
        pub k: u32,
    }

    /// BPF_LD | BPF_W | BPF_ABS (the first two are zero).
    const LD_W_ABS: u16 = 0x20;
    const JMP_JEQ_K: u16 = 0x05 | 0x10;
    const JMP_JGE_K: u16 = 0x05 | 0x30;
    const RET_K: u16 = 0x06;
    /// Offsets in `struct seccomp_data`.
    const NR_OFFSET: u32 = 0;
    const ARCH_OFFSET: u32 = 4;

    pub(crate) const RET_ALLOW: u32 = 0x7fff_0000;
    pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
    pub(crate) const RET_EPERM: u32 = 0x0005_0000 | 1;

    pub(crate) const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    pub(crate) const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
    pub(crate) const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;
    pub(crate) const AUDIT_ARCH_ARM: u32 = 40 | 0x4000_0000;
    pub(crate) const AUDIT_ARCH_RISCV64: u32 = 243 | 0x8000_0000 | 0x4000_0000;
    /// x32 system calls come in as x86_64 with this bit set in the number.
    pub(crate) const X32_BIT: u32 = 0x4000_0000;

    /// The calls one architecture's entry point denies, by number.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Table {
        pub arch: u32,
        /// add_key, request_key, keyctl.
        pub keyring: [u32; 3],
        /// ptrace, process_vm_readv, process_vm_writev, pidfd_getfd.
        pub process: [u32; 4],
    }

    pub(crate) const X86_64: Table = Table {
        arch: AUDIT_ARCH_X86_64,
        keyring: [248, 249, 250],
        process: [101, 310, 311, 438],
    };
    /// x32's own numbers (the X32 bit is added); before Linux 5.4 the x86_64 numbers of the
    /// "64" calls were reachable with the bit too, so those are denied as well.
    pub(crate) const X32: Table = Table {
        arch: AUDIT_ARCH_X86_64,
        keyring: [248, 249, 250],
        process: [521, 539, 540, 438],
    };
    const X32_LEGACY: [u32; 3] = [101, 310, 311];
    pub(crate) const I386: Table = Table {
        arch: AUDIT_ARCH_I386,
        keyring: [286, 287, 288],
        process: [26, 347, 348, 438],
    };
    /// The generic table (aarch64, riscv64).
    pub(crate) const AARCH64: Table = Table {
        arch: AUDIT_ARCH_AARCH64,
        keyring: [217, 218, 219],
        process: [117, 270, 271, 438],
    };
    pub(crate) const RISCV64: Table = Table {
        arch: AUDIT_ARCH_RISCV64,
        ..AARCH64
    };
    /// AArch32 (EABI) on an aarch64 kernel.
    pub(crate) const ARM: Table = Table {
        arch: AUDIT_ARCH_ARM,
        keyring: [309, 310, 311],
        process: [26, 376, 377, 438],
    };

    fn stmt(code: u16, k: u32) -> Insn {
        Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    /// `if A == k { return EPERM }` as two instructions.
    fn deny(out: &mut Vec<Insn>, nr: u32) {
        out.push(Insn {
            code: JMP_JEQ_K,
            jt: 0,
            jf: 1,
            k: nr,
        });
        out.push(stmt(RET_K, RET_EPERM));
    }

    fn denied(table: &Table, policy: Policy) -> Vec<u32> {
        let mut nrs = table.process.to_vec();
        if !policy.kernel_keyring {
            nrs.extend(table.keyring);
        }
        nrs
    }

    /// The block for one architecture: load the number, deny the listed ones, allow the rest.
    fn block(table: &Table, x32: bool, policy: Policy) -> Result<Vec<Insn>, IsolateError> {
        let mut out = vec![stmt(LD_W_ABS, NR_OFFSET)];
        if x32 {
            let mut sub = Vec::new();
            let mut nrs = denied(&X32, policy);
            nrs.extend(X32_LEGACY);
            for nr in nrs {
                deny(&mut sub, nr | X32_BIT);
            }
            sub.push(stmt(RET_K, RET_ALLOW));
            out.push(Insn {
                code: JMP_JGE_K,
                jt: 0,
                jf: jump(sub.len())?,
                k: X32_BIT,
            });
            out.extend(sub);
        }
        for nr in denied(table, policy) {
            deny(&mut out, nr);
        }
        out.push(stmt(RET_K, RET_ALLOW));
        Ok(out)
    }

    fn jump(len: usize) -> Result<u8, IsolateError> {
        u8::try_from(len)
            .map_err(|_| IsolateError::Seccomp("the filter program is too long".into()))
    }

    /// The whole program: dispatch on the architecture, one block each; any other architecture
    /// is killed (it cannot occur on a kernel of these families).
    pub(crate) fn program(
        arches: &[(Table, bool)],
        policy: Policy,
    ) -> Result<Vec<Insn>, IsolateError> {
        let mut out = vec![stmt(LD_W_ABS, ARCH_OFFSET)];
        for (table, x32) in arches {
            let body = block(table, *x32, policy)?;
            out.push(Insn {
                code: JMP_JEQ_K,
                jt: 0,
                jf: jump(body.len())?,
                k: table.arch,
            });
            out.extend(body);
        }
        out.push(stmt(RET_K, RET_KILL_PROCESS));
        Ok(out)
    }

    /// The architectures of the machine lastmile was built for.
    pub(crate) fn native_arches() -> Result<Vec<(Table, bool)>, IsolateError> {
        if cfg!(target_arch = "x86_64") {
            Ok(vec![(X86_64, true), (I386, false)])
        } else if cfg!(target_arch = "aarch64") {
            Ok(vec![(AARCH64, false), (ARM, false)])
        } else if cfg!(target_arch = "riscv64") {
            Ok(vec![(RISCV64, false)])
        } else {
            Err(IsolateError::UnsupportedArch(std::env::consts::ARCH))
        }
    }

    /// The program for this machine, in seccompiler's form.
    #[cfg(target_os = "linux")]
    pub(crate) fn native_program(policy: Policy) -> Result<seccompiler::BpfProgram, IsolateError> {
        Ok(program(&native_arches()?, policy)?
            .into_iter()
            .map(|i| seccompiler::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect())
    }

    /// Run the program on one system call, as the kernel would (the subset of classic BPF the
    /// program uses). For tests.
    #[cfg(test)]
    pub(crate) fn run(program: &[Insn], arch: u32, nr: u32) -> u32 {
        let mut pc = 0usize;
        let mut acc = 0u32;
        loop {
            let i = program[pc];
            match i.code {
                LD_W_ABS => {
                    acc = match i.k {
                        NR_OFFSET => nr,
                        ARCH_OFFSET => arch,
                        other => panic!("load of offset {other}"),
                    }
                }
                JMP_JEQ_K | JMP_JGE_K => {
                    let taken = if i.code == JMP_JEQ_K {
                        acc == i.k
                    } else {
                        acc >= i.k
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                other => panic!("instruction {other:#x}"),
            }
            pc += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::seccomp::*;
    use super::*;

    const ISOLATED: Policy = Policy {
        kernel_keyring: false,
    };
    const OPTED_OUT: Policy = Policy {
        kernel_keyring: true,
    };

    #[test]
    fn args_round_trip_and_keep_the_program_after_the_separator() {
        let args = trampoline_args(
            OPTED_OUT,
            std::path::Path::new("/bin/echo"),
            &["--".into(), "x".into()],
        );
        let (policy, program, rest) = parse_args(&args[1..]).unwrap();
        assert_eq!(policy, OPTED_OUT);
        assert_eq!(program, "/bin/echo");
        assert_eq!(rest, vec![OsString::from("--"), OsString::from("x")]);
        let args = trampoline_args(ISOLATED, std::path::Path::new("/bin/echo"), &[]);
        assert_eq!(parse_args(&args[1..]).unwrap().0, ISOLATED);
        for bad in [&[][..], &["--".into()][..], &["-x".into(), "--".into()][..]] {
            assert!(matches!(parse_args(bad), Err(IsolateError::Usage)));
        }
    }

    #[test]
    fn failure_line_is_one_line_with_the_prefix() {
        let line = IsolateError::Seccomp("EINVAL".into()).stderr_line();
        assert!(line.starts_with(FAILURE_PREFIX));
        assert!(!line.contains('\n'));
        assert!(line.contains("hint:"));
        assert_eq!(
            IsolateError::Seccomp(String::new()).exit_code(),
            crate::exit_codes::ISOLATION_FAILED
        );
    }

    /// Every architecture the program knows, with the x32 block where it applies.
    fn all() -> Vec<(Table, bool)> {
        vec![
            (X86_64, true),
            (I386, false),
            (AARCH64, false),
            (ARM, false),
            (RISCV64, false),
        ]
    }

    #[test]
    fn denied_calls_get_eperm_on_every_entry_point() {
        let p = program(&all(), ISOLATED).unwrap();
        for (table, _) in all() {
            for nr in table.keyring.iter().chain(&table.process) {
                assert_eq!(
                    run(&p, table.arch, *nr),
                    RET_EPERM,
                    "{:#x} {nr}",
                    table.arch
                );
            }
        }
        for nr in X32
            .keyring
            .iter()
            .chain(&X32.process)
            .chain(&[101, 310, 311])
        {
            assert_eq!(
                run(&p, AUDIT_ARCH_X86_64, nr | X32_BIT),
                RET_EPERM,
                "x32 {nr}"
            );
        }
    }

    #[test]
    fn other_calls_are_allowed_and_unknown_arches_killed() {
        let p = program(&all(), ISOLATED).unwrap();
        // read, write, openat, execve on x86_64; read on i386; openat on aarch64; x32 read.
        for (arch, nr) in [
            (AUDIT_ARCH_X86_64, 0),
            (AUDIT_ARCH_X86_64, 1),
            (AUDIT_ARCH_X86_64, 257),
            (AUDIT_ARCH_X86_64, 59),
            (AUDIT_ARCH_I386, 3),
            (AUDIT_ARCH_AARCH64, 56),
            (AUDIT_ARCH_X86_64, X32_BIT),
            // the i386 keyctl number means something else (a 64-bit call) on x86_64
            (AUDIT_ARCH_X86_64, 288),
        ] {
            assert_eq!(run(&p, arch, nr), RET_ALLOW, "{arch:#x} {nr}");
        }
        assert_eq!(run(&p, 0x1234, 250), RET_KILL_PROCESS);
        let native = program(&native_arches().unwrap(), ISOLATED).unwrap();
        assert_eq!(
            run(&native, AUDIT_ARCH_ARM | 0x8000_0000, 0),
            RET_KILL_PROCESS
        );
    }

    #[test]
    fn opting_out_allows_the_keyring_calls_only() {
        let p = program(&all(), OPTED_OUT).unwrap();
        for (table, _) in all() {
            for nr in table.keyring {
                assert_eq!(run(&p, table.arch, nr), RET_ALLOW);
            }
            for nr in table.process {
                assert_eq!(run(&p, table.arch, nr), RET_EPERM);
            }
        }
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, 250 | X32_BIT), RET_ALLOW);
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, 521 | X32_BIT), RET_EPERM);
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn x86_64_numbers_match_the_c_library() {
        use nix::libc;
        let n = |x: libc::c_long| x as u32;
        assert_eq!(
            X86_64.keyring,
            [
                n(libc::SYS_add_key),
                n(libc::SYS_request_key),
                n(libc::SYS_keyctl)
            ]
        );
        assert_eq!(
            X86_64.process,
            [
                n(libc::SYS_ptrace),
                n(libc::SYS_process_vm_readv),
                n(libc::SYS_process_vm_writev),
                n(libc::SYS_pidfd_getfd)
            ]
        );
    }

    #[cfg(all(target_os = "linux", target_arch = "aarch64"))]
    #[test]
    fn aarch64_numbers_match_the_c_library() {
        use nix::libc;
        let n = |x: libc::c_long| x as u32;
        assert_eq!(
            AARCH64.keyring,
            [
                n(libc::SYS_add_key),
                n(libc::SYS_request_key),
                n(libc::SYS_keyctl)
            ]
        );
        assert_eq!(AARCH64.process[0], n(libc::SYS_ptrace));
    }
}
