//! Client accounts and the server's `user@host` matching rules.
//!
//! Accounts are matched the way MariaDB matches them: the list is sorted
//! most specific host first (literal hosts and addresses before patterns,
//! patterns with a longer literal prefix before shorter ones, `%` last),
//! non-anonymous users before the anonymous user, and the first entry whose
//! user and host both match wins — even if it is the anonymous account.

use std::net::IpAddr;

use crate::protocol::auth::StoredHash;

#[derive(Debug, Clone)]
pub struct Account {
    pub user: String,
    pub host: String,
    pub plugin: String,
    /// `None` when the account uses a plugin Causeway cannot verify.
    pub hash: Option<StoredHash>,
    /// Global privileges that matter to Causeway (KILL, PROCESSLIST).
    pub privileges: Privileges,
    /// The account's own `MAX_USER_CONNECTIONS` (None: not set).
    pub max_user_connections: Option<u32>,
}

/// The global privileges Causeway's own statements check. Unknown means
/// none: a load that cannot read them grants nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Privileges {
    /// `PROCESS`: see every session in the processlist.
    pub process: bool,
    /// `CONNECTION ADMIN`: kill any session.
    pub connection_admin: bool,
    /// `SUPER`: kill any session (and see them, as the server shows them).
    pub super_: bool,
}

impl Privileges {
    /// From MariaDB's `mysql.global_priv` `access` bitmask (10.4+): bit 8
    /// is `PROCESS`, bit 15 `SUPER`, bit 32 `CONNECTION ADMIN`.
    pub fn from_access(access: u64) -> Privileges {
        Privileges {
            process: access & (1 << 8) != 0,
            super_: access & (1 << 15) != 0,
            connection_admin: access & (1 << 32) != 0,
        }
    }

    /// From names as in `GRANT` (case-insensitive); `None` for a name
    /// Causeway does not know. `ALL` / `ALL PRIVILEGES` grant the three.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Option<Privileges> {
        let mut p = Privileges::default();
        for n in names {
            let n = n.as_ref().trim().to_ascii_uppercase();
            let n: Vec<&str> = n.split_ascii_whitespace().collect();
            match n.as_slice() {
                ["PROCESS"] => p.process = true,
                ["SUPER"] => p.super_ = true,
                ["CONNECTION", "ADMIN"] => p.connection_admin = true,
                ["ALL"] | ["ALL", "PRIVILEGES"] => {
                    p = Privileges {
                        process: true,
                        connection_admin: true,
                        super_: true,
                    }
                }
                _ => return None,
            }
        }
        Some(p)
    }
}

/// All known accounts, sorted for matching.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    entries: Vec<Account>,
    /// The server's `@@global.max_user_connections` at the load.
    max_user_connections: u32,
    /// The server's `@@global.max_allowed_packet` at the load.
    max_allowed_packet: Option<usize>,
}

impl Accounts {
    pub fn new(mut entries: Vec<Account>) -> Accounts {
        entries.sort_by_key(|a| (std::cmp::Reverse(host_rank(&a.host)), a.user.is_empty()));
        Accounts {
            entries,
            max_user_connections: 0,
            max_allowed_packet: None,
        }
    }

    /// With the server's `@@global.max_user_connections` (0: no limit).
    pub fn with_global_limit(mut self, max_user_connections: u32) -> Accounts {
        self.max_user_connections = max_user_connections;
        self
    }

    /// With the server's `@@global.max_allowed_packet`.
    pub fn with_max_allowed_packet(mut self, bytes: Option<usize>) -> Accounts {
        self.max_allowed_packet = bytes;
        self
    }

    /// The server's `@@global.max_allowed_packet`, if it was read.
    pub fn max_allowed_packet(&self) -> Option<usize> {
        self.max_allowed_packet
    }

    /// The server's `@@global.max_user_connections` (0: no limit).
    pub fn max_user_connections(&self) -> u32 {
        self.max_user_connections
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The account a login as `user` from `ip` is checked against.
    pub fn find(&self, user: &str, ip: IpAddr) -> Option<&Account> {
        let ip = canonical(ip);
        self.entries
            .iter()
            .find(|a| (a.user.is_empty() || a.user == user) && host_matches(&a.host, ip))
    }
}

/// Sort rank: higher is more specific.
fn host_rank(host: &str) -> (u8, usize) {
    match host.find(['%', '_']) {
        None if host.is_empty() => (0, 0),
        None => (2, host.len()),
        Some(pos) => (1, pos),
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn host_matches(pattern: &str, ip: IpAddr) -> bool {
    if pattern.is_empty() || pattern == "%" {
        return true;
    }
    if pattern.eq_ignore_ascii_case("localhost") {
        // Causeway is reached over TCP; the loopback addresses stand for
        // the local host.
        return ip.is_loopback();
    }
    if let Some((net, mask)) = pattern.split_once('/') {
        return match (net.parse::<IpAddr>(), mask.parse::<IpAddr>(), ip) {
            (Ok(IpAddr::V4(n)), Ok(IpAddr::V4(m)), IpAddr::V4(a)) => {
                u32::from(a) & u32::from(m) == u32::from(n)
            }
            _ => false,
        };
    }
    like(pattern.as_bytes(), ip.to_string().as_bytes())
}

/// SQL LIKE with `%` and `_`, case-insensitive, `\` escapes.
fn like(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'%', rest)) => (0..=s.len()).any(|i| like(rest, &s[i..])),
        Some((b'_', rest)) => !s.is_empty() && like(rest, &s[1..]),
        Some((b'\\', rest)) if !rest.is_empty() => {
            s.first().is_some_and(|c| c.eq_ignore_ascii_case(&rest[0])) && like(&rest[1..], &s[1..])
        }
        Some((c, rest)) => {
            s.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && like(rest, &s[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(user: &str, host: &str, pw: &str) -> Account {
        Account {
            user: user.into(),
            host: host.into(),
            plugin: "mysql_native_password".into(),
            hash: Some(StoredHash::from_password(pw.as_bytes())),
            privileges: Privileges::default(),
            max_user_connections: None,
        }
    }

    #[test]
    fn privileges_from_the_access_bitmask_and_names() {
        // Values MariaDB 10.11 stores for GRANT PROCESS / SUPER /
        // CONNECTION ADMIN / ALL ON *.*.
        assert!(Privileges::from_access(256).process);
        assert!(Privileges::from_access(32768).super_);
        let c = Privileges::from_access(4_294_967_296);
        assert!(c.connection_admin && !c.super_ && !c.process);
        let all = Privileges::from_access(549_755_812_863);
        assert!(all.process && all.super_ && all.connection_admin);
        assert_eq!(Privileges::from_access(0), Privileges::default());
        let n = Privileges::from_names(&["connection  admin", "Process"]).unwrap();
        assert!(n.connection_admin && n.process && !n.super_);
        assert!(Privileges::from_names(&["ALL PRIVILEGES"]).unwrap().super_);
        assert!(Privileges::from_names(&["SELECT"]).is_none());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn most_specific_host_wins() {
        let a = Accounts::new(vec![
            acct("app", "%", "any"),
            acct("app", "10.0.0.%", "net"),
            acct("app", "10.0.0.5", "exact"),
        ]);
        let pw = |addr| a.find("app", ip(addr)).map(|x| x.host.clone());
        assert_eq!(pw("10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(pw("10.0.0.6").as_deref(), Some("10.0.0.%"));
        assert_eq!(pw("192.168.1.1").as_deref(), Some("%"));
    }

    #[test]
    fn anonymous_user_with_specific_host_shadows_named_user_with_wildcard() {
        let a = Accounts::new(vec![acct("app", "%", "x"), acct("", "127.0.0.1", "")]);
        assert_eq!(a.find("app", ip("127.0.0.1")).unwrap().user, "");
        assert_eq!(a.find("app", ip("10.1.1.1")).unwrap().user, "app");
        assert!(a.find("nobody", ip("10.1.1.1")).is_none());
    }

    #[test]
    fn localhost_netmask_and_ipv4_mapped() {
        let a = Accounts::new(vec![
            acct("r", "localhost", ""),
            acct("n", "10.1.0.0/255.255.0.0", ""),
        ]);
        assert!(a.find("r", ip("127.0.0.1")).is_some());
        assert!(a.find("r", ip("::ffff:127.0.0.1")).is_some());
        assert!(a.find("r", ip("10.0.0.1")).is_none());
        assert!(a.find("n", ip("10.1.200.3")).is_some());
        assert!(a.find("n", ip("10.2.0.3")).is_none());
    }

    #[test]
    fn like_patterns() {
        assert!(like(b"10.0.0._", b"10.0.0.7"));
        assert!(!like(b"10.0.0._", b"10.0.0.17"));
        assert!(like(b"%.5", b"10.0.0.5"));
        assert!(like(b"a\\%", b"a%"));
        assert!(!like(b"a\\%", b"ab"));
    }
}
