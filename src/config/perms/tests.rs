use super::*;

/// alice (1000) and bob (1001) with private groups; `users` has both; `devs` lists alice alone;
/// `alice-shared` is named like a person but lists bob.
struct Fake;

impl Accounts for Fake {
    fn user_name(&self, uid: u32) -> Option<String> {
        match uid {
            0 => Some("root".into()),
            1000 => Some("alice".into()),
            1001 => Some("bob".into()),
            _ => None,
        }
    }
    fn group(&self, gid: u32) -> Option<GroupInfo> {
        let (name, members): (&str, &[&str]) = match gid {
            0 => ("root", &[]),
            1000 => ("alice", &[]),
            1001 => ("bob", &[]),
            100 => ("users", &["alice", "bob"]),
            1002 => ("devs", &["alice"]),
            1003 => ("alice", &["bob"]),
            _ => return None,
        };
        Some(GroupInfo {
            name: name.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
        })
    }
}

const ALICE: u32 = 1000;
const BOB: u32 = 1001;
const ROOT: u32 = 0;

fn judged(invoking: u32, uid: u32, gid: u32, mode: u32) -> Vec<UnsafePermissions> {
    judge(
        Path::new("/cfg/servers.d/x.toml"),
        Facts { mode, uid, gid },
        invoking,
        &Fake,
    )
}

fn fixes(problems: &[UnsafePermissions]) -> Vec<String> {
    problems
        .iter()
        .map(|p| match p {
            UnsafePermissions::WritableByOthers { fix, .. }
            | UnsafePermissions::WritableByGroup { fix, .. }
            | UnsafePermissions::ForeignOwner { fix, .. } => fix.clone(),
            UnsafePermissions::Unreadable { .. } => "unreadable".into(),
        })
        .collect()
}

#[test]
fn own_files_with_ordinary_modes_pass() {
    for mode in [0o600, 0o644, 0o700, 0o755, 0o400] {
        assert_eq!(judged(ALICE, ALICE, 1000, mode), vec![], "{mode:o}");
    }
}

#[test]
fn a_umask_002_checkout_writable_by_the_private_group_passes() {
    assert_eq!(judged(ALICE, ALICE, 1000, 0o664), vec![]);
    assert_eq!(judged(ALICE, ALICE, 1000, 0o775), vec![]);
    // A group that lists its owner as its only member is private too.
    assert_eq!(judged(ALICE, ALICE, 1002, 0o664), vec![]);
    // root's own group, for root's own files.
    assert_eq!(judged(ROOT, ROOT, 0, 0o664), vec![]);
}

#[test]
fn writable_by_a_shared_group_is_refused_with_the_chmod_that_fixes_it() {
    let p = judged(ALICE, ALICE, 100, 0o664);
    assert!(
        matches!(&p[..], [UnsafePermissions::WritableByGroup { group, owner, .. }] if group == "users" && owner == "alice"),
        "{p:?}"
    );
    assert_eq!(fixes(&p), ["chmod g-w /cfg/servers.d/x.toml"]);
    // Named after the owner, but bob may write: not private.
    assert_eq!(
        fixes(&judged(ALICE, ALICE, 1003, 0o664)),
        ["chmod g-w /cfg/servers.d/x.toml"]
    );
    // A group lastmile cannot look up is not known to be private.
    let unknown = judged(ALICE, ALICE, 4242, 0o664);
    assert!(
        matches!(&unknown[..], [UnsafePermissions::WritableByGroup { group, .. }] if group == "4242"),
        "{unknown:?}"
    );
    // root's files in a shared group, too.
    assert_eq!(fixes(&judged(ROOT, ROOT, 100, 0o775)).len(), 1);
}

#[test]
fn writable_by_others_is_refused_whatever_the_group() {
    assert_eq!(
        fixes(&judged(ALICE, ALICE, 1000, 0o666)),
        ["chmod o-w /cfg/servers.d/x.toml"]
    );
    assert_eq!(
        fixes(&judged(ALICE, ALICE, 1000, 0o777)),
        ["chmod o-w /cfg/servers.d/x.toml"]
    );
    // Both bits bad: one command takes both away.
    assert_eq!(
        fixes(&judged(ALICE, ALICE, 100, 0o777)),
        ["chmod go-w /cfg/servers.d/x.toml"]
    );
    assert_eq!(
        fixes(&judged(ROOT, ROOT, 0, 0o1777)),
        ["chmod o-w /cfg/servers.d/x.toml"]
    );
}

#[test]
fn files_of_another_user_are_refused_but_root_s_are_not() {
    assert_eq!(judged(ALICE, ROOT, 0, 0o644), vec![]);
    let p = judged(ALICE, BOB, 1001, 0o644);
    assert!(
        matches!(&p[..], [UnsafePermissions::ForeignOwner { owner, user, .. }] if owner == "bob" && user == "alice"),
        "{p:?}"
    );
    assert_eq!(fixes(&p), ["chown alice /cfg/servers.d/x.toml"]);
    // root running on someone else's config folder is refused too (ssh's rule: you or root).
    assert_eq!(
        fixes(&judged(ROOT, ALICE, 1000, 0o644)),
        ["chown root /cfg/servers.d/x.toml"]
    );
    // An owner with no name shows as a number, its group is not known to be private, and every
    // problem of the path is reported.
    let p = judged(ALICE, 5555, 5555, 0o666);
    assert_eq!(
        fixes(&p),
        [
            "chown alice /cfg/servers.d/x.toml",
            "chmod go-w /cfg/servers.d/x.toml"
        ]
    );
    assert!(p[0].to_string().contains("owned by `5555`"), "{}", p[0]);
}

#[test]
fn messages_name_the_path_the_mode_and_the_exact_command() {
    let p = judge(
        Path::new("/home/al ice/it's/servers.d"),
        Facts {
            mode: 0o40777 & 0o7777,
            uid: ALICE,
            gid: 1000,
        },
        ALICE,
        &Fake,
    );
    let text = p[0].to_string();
    assert_eq!(
        text,
        "/home/al ice/it's/servers.d: writable by every local user (mode 0777), who could change what lastmile runs\nhint: run `chmod o-w '/home/al ice/it'\\''s/servers.d'`"
    );
}

#[cfg(unix)]
mod on_disk {
    use super::super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }
    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn private_folders_are_created_0700_and_tightened_when_looser() {
        let tmp = tempfile::tempdir().unwrap();
        let nested = tmp.path().join("data/logs");
        assert_eq!(create_private_dir(&nested).unwrap(), None);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&tmp.path().join("data")), 0o700);

        chmod(&nested, 0o755);
        assert_eq!(create_private_dir(&nested).unwrap(), Some(0o755));
        assert_eq!(mode(&nested), 0o700);

        // A sticky shared folder (a data folder pointed at /tmp by mistake) is left alone.
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o1777);
        assert_eq!(create_private_dir(&shared).unwrap(), None);
        assert_eq!(mode(&shared), 0o1777);
    }

    #[test]
    fn check_config_walks_the_folder_the_toml_servers_d_and_each_loaded_file() {
        let tmp = tempfile::tempdir().unwrap();
        let profile = Profile {
            name: "t".into(),
            config_dir: tmp.path().join("cfg"),
            data_dir: tmp.path().join("data"),
        };
        // Nothing there yet: nothing to report.
        assert_eq!(check_config(&profile), vec![]);
        let servers = profile.servers_dir();
        std::fs::create_dir_all(&servers).unwrap();
        chmod(&profile.config_dir, 0o755);
        for name in ["a.toml", "b.toml", ".hidden.toml", "notes.txt"] {
            std::fs::write(servers.join(name), "command = \"x\"\n").unwrap();
            chmod(&servers.join(name), 0o666);
        }
        std::fs::write(profile.config_file(), "").unwrap();
        chmod(&profile.config_file(), 0o646);
        chmod(&servers, 0o777);
        chmod(&servers.join("b.toml"), 0o644);
        let found: Vec<PathBuf> = check_config(&profile)
            .into_iter()
            .map(|p| match p {
                UnsafePermissions::WritableByOthers { path, .. } => path,
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(
            found,
            [
                profile.config_file(),
                servers.clone(),
                servers.join("a.toml")
            ]
        );
    }
}
