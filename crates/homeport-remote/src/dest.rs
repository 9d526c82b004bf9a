//! Host names and SSH destinations as the user writes them.

use std::fmt;
use std::str::FromStr;

/// `[user@]host[:port]` (IPv6 as `[::1]:2222`), or a `Host` name of the user's ssh_config. What
/// is given to `ssh`: never something `ssh` could read as an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an SSH destination: write user@host, user@host:port, [user@][::1]:port or a Host name of your ~/.ssh/config"
)]
pub struct BadDestination(pub String);

impl FromStr for Destination {
    type Err = BadDestination;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadDestination(s.to_owned());
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, s),
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            (host, port)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?),
            None => None,
        };
        // ssh reads a leading `-` as an option (CVE-2017-1000117's shape); whitespace and
        // control characters have no place in a name either.
        let fine = |v: &str| {
            !v.is_empty()
                && !v.starts_with('-')
                && v.chars()
                    .all(|c| !c.is_whitespace() && !c.is_control() && !"'\"\\`$;&|<>".contains(c))
        };
        if !fine(host) || user.is_some_and(|u| !fine(u) || u.contains('@')) {
            return Err(bad());
        }
        Ok(Destination {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        match (self.host.contains(':'), self.port) {
            (true, Some(p)) => write!(f, "[{}]:{p}", self.host),
            (false, Some(p)) => write!(f, "{}:{p}", self.host),
            _ => f.write_str(&self.host),
        }
    }
}

impl Destination {
    /// What follows the options on ssh's command line: `user@host` or `host`.
    pub fn ssh_target(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }
}

/// A host's name in Homeport (`homeport host add NAME …`, `--host NAME`, `NAME:app/env`):
/// letters, digits, `-` and `_`, as app and environment names.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a host name Homeport can use: letters, digits, - and _ (up to 64)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Destination {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn destinations_parse_and_print() {
        assert_eq!(
            d("ana@vps.example.org"),
            Destination {
                user: Some("ana".into()),
                host: "vps.example.org".into(),
                port: None
            }
        );
        assert_eq!(d("ana@10.0.0.2:2222").port, Some(2222));
        assert_eq!(d("vps").host, "vps");
        let v6 = d("ana@[::1]:2200");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", Some(2200)));
        for s in [
            "ana@vps:22",
            "vps",
            "ana@[::1]:2200",
            "[fe80::1]:22",
            "mini.local",
        ] {
            assert_eq!(d(s).to_string(), s);
        }
        assert_eq!(d("ana@vps:22").ssh_target(), "ana@vps");
    }

    #[test]
    fn what_ssh_would_read_as_an_option_or_a_shell_word_is_refused() {
        for bad in [
            "",
            "-oProxyCommand=touch${IFS}x",
            "ana@-oProxyCommand=x",
            "ana@vps:0",
            "ana@vps:99999",
            "ana@vps:x",
            "ana b@vps",
            "ana@vps;id",
            "@vps",
            "[::1",
            "ana@",
        ] {
            assert!(bad.parse::<Destination>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn host_names_are_plain_words() {
        assert!(check_name("vps").is_ok() && check_name("mac-mini_2").is_ok());
        for bad in ["", "a/b", "a:b", "-x", "a b", "ü"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
