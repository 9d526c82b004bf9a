//! Names: what a request's Host (or HTTP/2 `:authority`) says, and the names an environment gets.

/// The name a request asks for, from the value of its Host header or `:authority`: lower case,
/// without the port and without a trailing dot. `None` when the value is not a host name (an
/// empty value, a bad port, a user-info part, characters a DNS name cannot have).
pub fn request_name(authority: &str) -> Option<String> {
    let host = match authority.rsplit_once(':') {
        // An IPv6 literal names no app; keep it whole so it falls through to "unknown".
        _ if authority.starts_with('[') => {
            let end = authority.find(']')?;
            let rest = &authority[end + 1..];
            if !rest.is_empty() && !valid_port(rest.strip_prefix(':')?) {
                return None;
            }
            return Some(authority[..=end].to_ascii_lowercase());
        }
        Some((host, port)) => {
            if !valid_port(port) {
                return None;
            }
            host
        }
        None => authority,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    let ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    ok.then(|| host.to_ascii_lowercase())
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok()
}

/// The names an environment answers to without configuration: `ENV.APP.localhost`, and for
/// `production` also `APP.localhost`.
pub fn default_names(app: &str, env: &str) -> Vec<String> {
    let (app, env) = (app.to_ascii_lowercase(), env.to_ascii_lowercase());
    let mut names = Vec::with_capacity(2);
    if env == "production" {
        names.push(format!("{app}.localhost"));
    }
    names.push(format!("{env}.{app}.localhost"));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_without_port_case_or_trailing_dot() {
        assert_eq!(
            request_name("Shop.LocalHost"),
            Some("shop.localhost".into())
        );
        assert_eq!(
            request_name("beta.shop.localhost:7080"),
            Some("beta.shop.localhost".into())
        );
        assert_eq!(request_name("shop.test."), Some("shop.test".into()));
        assert_eq!(request_name("shop.test.:443"), Some("shop.test".into()));
        assert_eq!(request_name("127.0.0.1:7080"), Some("127.0.0.1".into()));
        assert_eq!(request_name("[::1]:7080"), Some("[::1]".into()));
        assert_eq!(request_name("[::1]"), Some("[::1]".into()));
    }

    #[test]
    fn what_is_not_a_host_is_refused() {
        for bad in [
            "",
            ":80",
            "shop.localhost:",
            "shop.localhost:99999",
            "shop.localhost:8o",
            "user@shop.localhost",
            "shop..localhost",
            "shop localhost",
            "shop.localhost/x",
            "[::1",
            "[::1]x",
            "a:b:c",
        ] {
            assert_eq!(request_name(bad), None, "{bad:?}");
        }
        assert_eq!(request_name(&"a".repeat(300)), None);
        assert_eq!(request_name(&format!("{}.x", "a".repeat(64))), None);
    }

    #[test]
    fn production_also_gets_the_short_name() {
        assert_eq!(
            default_names("shop", "production"),
            ["shop.localhost", "production.shop.localhost"]
        );
        assert_eq!(default_names("Shop", "beta"), ["beta.shop.localhost"]);
    }
}
