//! The user nta runs as once attached (`--user`). Started as root, nta
//! loads and attaches as root, then every thread switches to this user
//! (see `least_privilege`), so a flaw in the parts that face traffic,
//! HTTP clients and config files is a flaw of an unprivileged user, not
//! of root. Like tcpdump's `-Z`: the default is the user `nta` when it
//! exists.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use nix::unistd::{Group, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("--user {0}: no such user (give a name from /etc/passwd or UID[:GID])")]
    NoUser(String),
    #[error("--user {0}: no such group")]
    NoGroup(String),
    #[error("--user {spec}: looking it up: {source}")]
    Lookup { spec: String, source: nix::Error },
    #[error(
        "--user {spec}: switching users needs root, and nta runs as uid {uid} (under systemd's User=, leave --user out)"
    )]
    NotRoot { spec: String, uid: u32 },
    #[error(
        "{what} {path}: nta runs as {user} once attached and cannot write there; `chown {user} {path}`, or choose another directory or --user"
    )]
    NotWritable {
        what: &'static str,
        path: PathBuf,
        user: String,
    },
}

/// Who nta becomes after attaching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The user taken when `--user` is not given (and it exists).
pub const DEFAULT_USER: &str = "nta";

/// The spelling that keeps root (no switch).
pub const KEEP_ROOT: &str = "root";

impl Identity {
    /// What `--user` asks for, given who runs nta: `None` is no switch
    /// (not started as root, `--user root`, or no `nta` user when
    /// `--user` was left out).
    pub fn resolve(spec: Option<&str>) -> Result<Option<Identity>, IdentityError> {
        let me = Uid::current().as_raw();
        match spec {
            None => match lookup(DEFAULT_USER) {
                Ok(id) if me == 0 => Ok(Some(id)),
                Ok(_) => Ok(None),
                Err(IdentityError::NoUser(_)) => {
                    if me == 0 {
                        tracing::warn!(
                            "no user {DEFAULT_USER:?}: nta stays root (with no capabilities) once attached; create it (`useradd --system --no-create-home --shell /usr/sbin/nologin nta`) or give --user"
                        );
                    }
                    Ok(None)
                }
                Err(e) => Err(e),
            },
            Some(KEEP_ROOT) => Ok(None),
            Some(spec) => {
                let id = lookup(spec)?;
                if id.uid == me {
                    Ok(None)
                } else if me != 0 {
                    Err(IdentityError::NotRoot {
                        spec: spec.to_string(),
                        uid: me,
                    })
                } else {
                    Ok(Some(id))
                }
            }
        }
    }

    /// Refuses a directory this user could not create files in (rotation
    /// and atomic saves create files beside the one they replace), so it
    /// fails at start, not at the first rotation hours later.
    pub fn check_writable(&self, what: &'static str, dir: &Path) -> Result<(), IdentityError> {
        // A missing directory fails when nta opens the file, as before.
        let Ok(meta) = std::fs::metadata(dir) else {
            return Ok(());
        };
        // The primary group alone: nta drops supplementary groups.
        let bits = if meta.uid() == self.uid {
            meta.mode() >> 6
        } else if meta.gid() == self.gid {
            meta.mode() >> 3
        } else {
            meta.mode()
        };
        // Write and search.
        if bits & 0o3 == 0o3 {
            Ok(())
        } else {
            Err(IdentityError::NotWritable {
                what,
                path: dir.to_path_buf(),
                user: self.name.clone(),
            })
        }
    }
}

/// Who owns what this process writes, once set: the identity it becomes
/// after attaching. Process-wide because it is a fact about the process
/// that directories created before the switch must already respect.
static WRITER: OnceLock<(u32, u32)> = OnceLock::new();

impl Identity {
    /// From now on, directories nta creates belong to this identity and
    /// existing ones must (see [`writer`]). Set once, before outputs open.
    pub fn own_what_is_written(&self) {
        let _ = WRITER.set((self.uid, self.gid));
    }
}

/// The uid and gid that own what nta writes: the identity it becomes,
/// else the one it runs as.
pub fn writer() -> (u32, u32) {
    *WRITER.get_or_init(|| {
        (
            Uid::effective().as_raw(),
            nix::unistd::Gid::effective().as_raw(),
        )
    })
}

/// `NAME`, `NAME:GROUP`, `UID` or `UID:GID`.
fn lookup(spec: &str) -> Result<Identity, IdentityError> {
    let err = |source| IdentityError::Lookup {
        spec: spec.to_string(),
        source,
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (name, uid, primary) = match user.parse::<u32>() {
        Ok(uid) => match User::from_uid(Uid::from_raw(uid)).map_err(err)? {
            Some(u) => (u.name, uid, u.gid.as_raw()),
            // A bare number (a container's uid) needs no passwd entry;
            // its group is the same number unless given.
            None => (uid.to_string(), uid, uid),
        },
        Err(_) => {
            let u = User::from_name(user)
                .map_err(err)?
                .ok_or_else(|| IdentityError::NoUser(spec.to_string()))?;
            (u.name, u.uid.as_raw(), u.gid.as_raw())
        }
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => Group::from_name(g)
                .map_err(err)?
                .map(|g| g.gid.as_raw())
                .ok_or_else(|| IdentityError::NoGroup(spec.to_string()))?,
        },
    };
    Ok(Identity { name, uid, gid })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use nix::unistd::Gid;

    use super::*;

    #[test]
    fn names_and_numbers_resolve() {
        let nobody = lookup("nobody").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((nobody.uid, nobody.name.as_str()), (65534, "nobody"));
        assert_eq!(
            lookup("65534").map(|i| i.name).ok().as_deref(),
            Some("nobody")
        );
        let numeric = lookup("4242:4343").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((numeric.uid, numeric.gid), (4242, 4343));
        assert_eq!(lookup("4242").map(|i| i.gid).ok(), Some(4242));
        assert!(matches!(
            lookup("no-such-user-nta"),
            Err(IdentityError::NoUser(_))
        ));
        assert!(matches!(
            lookup("nobody:no-such-group-nta"),
            Err(IdentityError::NoGroup(_))
        ));
        assert_eq!(Identity::resolve(Some("root")).ok(), Some(None));
    }

    #[test]
    fn a_directory_the_user_cannot_write_is_refused() {
        let dir = std::env::temp_dir().join(format!("nta-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let me = Identity {
            name: "me".into(),
            uid: Uid::current().as_raw(),
            gid: Gid::current().as_raw(),
        };
        let stranger = Identity {
            name: "stranger".into(),
            uid: 4242,
            gid: 4242,
        };
        let set = |mode| {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        set(0o755);
        assert!(me.check_writable("--flows", &dir).is_ok());
        let refused = stranger.check_writable("--flows", &dir);
        assert!(
            matches!(&refused, Err(IdentityError::NotWritable { user, .. }) if user == "stranger"),
            "{refused:?}"
        );
        set(0o1777);
        assert!(stranger.check_writable("--flows", &dir).is_ok());
        set(0o700);
        assert!(me.check_writable("--flows", &dir).is_ok());
        assert!(stranger.check_writable("--flows", &dir).is_err());
        assert!(
            stranger
                .check_writable("--flows", &dir.join("missing"))
                .is_ok()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
