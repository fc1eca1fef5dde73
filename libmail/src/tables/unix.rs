//! `unix:passwd.byname` and `unix:group.byname`: the system's account
//! databases through getpwnam(3)/getgrnam(3), answered in their file
//! formats (`name:passwd:uid:gid:gecos:home:shell`, `name:passwd:gid:a,b`).

use nix::unistd::{Group, User};

use super::{Lookup, LookupError, Table, TableError};

#[derive(Debug, Clone, Copy)]
enum Map {
    Passwd,
    Group,
}

pub struct UnixTable {
    spec: String,
    map: Map,
}

impl UnixTable {
    pub fn open(spec: &str, name: &str) -> Result<UnixTable, TableError> {
        let map = match name {
            "passwd.byname" => Map::Passwd,
            "group.byname" => Map::Group,
            _ => return Err(TableError::Other(format!("unknown table: {spec}"))),
        };
        Ok(UnixTable {
            spec: spec.to_string(),
            map,
        })
    }

    fn failure(&self, err: nix::Error) -> LookupError {
        LookupError {
            table: self.spec.clone(),
            reason: err.desc().to_string(),
        }
    }
}

impl Table for UnixTable {
    fn lookup(&mut self, key: &str) -> Lookup {
        // A name with a NUL cannot exist; asking would only fail.
        if key.is_empty() || key.contains('\0') {
            return Ok(None);
        }
        match self.map {
            Map::Passwd => Ok(User::from_name(key)
                .map_err(|err| self.failure(err))?
                .map(|user| passwd_line(&user))),
            Map::Group => Ok(Group::from_name(key)
                .map_err(|err| self.failure(err))?
                .map(|group| group_line(&group))),
        }
    }
}

fn passwd_line(user: &User) -> String {
    format!(
        "{}:{}:{}:{}:{}:{}:{}",
        user.name,
        user.passwd.to_string_lossy(),
        user.uid,
        user.gid,
        user.gecos.to_string_lossy(),
        user.dir.display(),
        user.shell.display()
    )
}

fn group_line(group: &Group) -> String {
    format!(
        "{}:{}:{}:{}",
        group.name,
        group.passwd.to_string_lossy(),
        group.gid,
        group.mem.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_passwd_and_group() {
        let mut passwd = UnixTable::open("unix:passwd.byname", "passwd.byname").unwrap();
        let line = passwd.lookup("root").unwrap().unwrap();
        assert!(
            line.starts_with("root:") && line.contains(":0:0:"),
            "{line}"
        );
        assert_eq!(passwd.lookup("no-such-user-here").unwrap(), None);
        let mut group = UnixTable::open("unix:group.byname", "group.byname").unwrap();
        assert!(group.lookup("root").unwrap().unwrap().starts_with("root:"));
    }

    #[test]
    fn unknown_map_is_an_error() {
        let err = UnixTable::open("unix:foo", "foo").err().unwrap();
        assert_eq!(err.to_string(), "unknown table: unix:foo");
    }
}
