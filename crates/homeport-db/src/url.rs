//! Connection URLs of external servers: `postgresql://user[:password]@host[:port]/database`,
//! `mysql://…`, `mariadb://…`, `redis://[:password@]host[:port][/number]`.

use crate::Engine;

/// What a URL names. The password, when the URL carries one, is percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    pub engine: Engine,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
}

impl std::fmt::Debug for ParsedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}@{}:{}/{}",
            self.engine.key(),
            self.user,
            self.host,
            self.port,
            self.database
        )
    }
}

fn default_port(e: Engine) -> u16 {
    match e {
        Engine::Postgres => 5432,
        Engine::Mariadb => 3306,
        Engine::Redis => 6379,
    }
}

fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a `%` must be followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_owned())
}

/// Parses a server URL; the error says what is wrong without repeating the URL (it may hold a
/// password).
pub fn parse_url(url: &str) -> Result<ParsedUrl, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected a URL such as postgresql://user@host:5432/db")?;
    let engine = Engine::parse(scheme).ok_or_else(|| {
        format!(
            "unknown scheme {scheme:?}; expected postgresql://, mysql://, mariadb:// or redis://"
        )
    })?;
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pw)) => (decode(user)?, Some(decode(pw)?)),
            None => (decode(u)?, None),
        },
        None => (String::new(), None),
    };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, after) = h
            .split_once(']')
            .ok_or("an IPv6 host needs a closing `]`")?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err("the URL names no host".into());
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {p:?} is not a port number"))?,
        None => default_port(engine),
    };
    let database = decode(path)?;
    let database = match engine {
        Engine::Redis => {
            if database.is_empty() {
                "0".to_owned()
            } else if database.parse::<u32>().is_ok() {
                database
            } else {
                return Err(format!("a Redis database is a number, not {database:?}"));
            }
        }
        _ if database.is_empty() => {
            return Err("the URL names no database (…/DATABASE at its end)".into());
        }
        _ => database,
    };
    if user.is_empty() && engine != Engine::Redis {
        return Err("the URL names no user (USER@host)".into());
    }
    Ok(ParsedUrl {
        engine,
        host,
        port,
        user,
        password,
        database,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_engine() -> Result<(), String> {
        let p = parse_url("postgresql://app:s%40cret@db.local:6543/shop")?;
        assert_eq!(
            (p.engine, p.host.as_str(), p.port, p.user.as_str()),
            (Engine::Postgres, "db.local", 6543, "app")
        );
        assert_eq!(p.password.as_deref(), Some("s@cret"));
        assert_eq!(p.database, "shop");
        let m = parse_url("mysql://root@127.0.0.1/app")?;
        assert_eq!(
            (m.engine, m.port, m.password),
            (Engine::Mariadb, 3306, None)
        );
        let r = parse_url("redis://:pw@localhost:6380/2")?;
        assert_eq!(
            (r.engine, r.port, r.database.as_str()),
            (Engine::Redis, 6380, "2")
        );
        Ok(())
    }

    #[test]
    fn errors_do_not_repeat_the_password() {
        for bad in [
            "postgresql://app:hunter2@host:99999/db",
            "postgresql://app:hunter2@host/",
            "ftp://app:hunter2@host/db",
        ] {
            let e = parse_url(bad).err().unwrap_or_default();
            assert!(!e.is_empty(), "{bad}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
