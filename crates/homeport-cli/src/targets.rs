//! Targets as a person types them: suggestions for a near miss ("did you mean shop?") and the
//! candidates that shell completion offers, read from the config.

use std::path::{Path, PathBuf};

use homeport_types::{ServiceKey, Target};

use crate::Failure;

/// A target as typed, with the host it is on when it names one: `vps:shop/production`
/// (`homeport host add vps …` enrolled it). Without a host: this computer, or `--host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTarget {
    pub host: Option<String>,
    pub target: Target,
}

impl std::str::FromStr for HostTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, rest) = match s.split_once(':') {
            Some((h, t)) => {
                homeport_remote::check_name(h)?;
                (Some(h.to_owned()), t)
            }
            None => (None, s),
        };
        let target = rest
            .parse::<Target>()
            .map_err(|e| format!("{e} (or HOST:APP/ENV for a target on another host)"))?;
        Ok(Self { host, target })
    }
}

/// `vps:shop` as an app argument: (host, app).
pub fn split_host(app: &str) -> (Option<String>, String) {
    match app.split_once(':') {
        Some((h, a)) => (Some(h.to_owned()), a.to_owned()),
        None => (None, app.to_owned()),
    }
}

/// Every target string the services make possible: `all`, apps, `app/env`, `app/env/service`.
pub fn names(keys: &[ServiceKey]) -> Vec<String> {
    let mut out = vec!["all".to_owned()];
    for k in keys {
        for name in [k.app.clone(), format!("{}/{}", k.app, k.env), k.to_string()] {
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// The nearest target to `typed` among `keys`, if one is near enough to be a typo.
pub fn suggest(typed: &str, keys: &[ServiceKey]) -> Option<String> {
    let depth = typed.split('/').count();
    let limit = (typed.chars().count() / 3).max(1);
    names(keys)
        .into_iter()
        .filter(|n| n != "all" && n.split('/').count() == depth)
        .map(|n| (strsim::damerau_levenshtein(typed, &n), n))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, n)| n)
}

/// "no service matches shpo — did you mean shop?" (exit 4) for a target the agent does not know.
pub fn not_found(target: &Target, keys: &[ServiceKey]) -> Failure {
    let typed = target.to_string();
    let hint = match suggest(&typed, keys) {
        Some(s) => format!(" — did you mean {s}?"),
        None if keys.is_empty() => " — the config has no services yet".to_owned(),
        None => " (see `homeport status`)".to_owned(),
    };
    Failure::new(4, format!("no service matches {typed}{hint}"))
}

/// Turns the agent's "no service matches" (404) into one with a suggestion.
pub async fn explain(client: &homeport_client::Client, target: &Target, f: Failure) -> Failure {
    // Only a target the agent does not know; a 404 about something else (a backup of another
    // environment) already says what to do.
    let unknown_target = ["no environment ", "no service matches", "no app "]
        .iter()
        .any(|m| f.message.contains(m));
    if f.code != 4 || !unknown_target {
        return f;
    }
    match client.status().await {
        Ok(s) => {
            let keys: Vec<ServiceKey> = s.services.into_iter().map(|s| s.key).collect();
            not_found(target, &keys)
        }
        Err(_) => f,
    }
}

/// Service keys in a config file, read leniently: completion must work while the file has a
/// mistake elsewhere.
pub fn keys_in(config: &Path) -> Vec<ServiceKey> {
    let Ok(text) = std::fs::read_to_string(config) else {
        return Vec::new();
    };
    let Ok(doc) = text.parse::<toml_edit::DocumentMut>() else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    let Some(apps) = doc.get("apps").and_then(|a| a.as_table_like()) else {
        return keys;
    };
    for (app, a) in apps.iter() {
        let Some(envs) = a.get("env").and_then(|e| e.as_table_like()) else {
            continue;
        };
        for (env, e) in envs.iter() {
            let Some(svcs) = e.get("services").and_then(|s| s.as_table_like()) else {
                continue;
            };
            for (svc, _) in svcs.iter() {
                keys.push(ServiceKey::new(app, env, svc));
            }
        }
    }
    keys
}

/// The config file a completion request is about: `--config` among the words being completed,
/// else `$HOMEPORT_CONFIG`, else the default.
fn completion_config() -> PathBuf {
    let args: Vec<String> = std::env::args().collect();
    let cwd = std::env::current_dir().unwrap_or_default();
    args.iter()
        .enumerate()
        .find_map(|(i, a)| {
            a.strip_prefix("--config=")
                .or_else(|| (a == "--config").then(|| args.get(i + 1).map(String::as_str))?)
        })
        .map(|p| homeport_config::expand_home(p, &cwd))
        .unwrap_or_else(homeport_config::default_config_path)
}

/// Shell completion of a TARGET.
pub fn complete_targets() -> Vec<clap_complete::CompletionCandidate> {
    names(&keys_in(&completion_config()))
        .into_iter()
        .map(clap_complete::CompletionCandidate::new)
        .collect()
}

/// Shell completion of an APP.
pub fn complete_apps() -> Vec<clap_complete::CompletionCandidate> {
    let mut apps: Vec<String> = keys_in(&completion_config())
        .into_iter()
        .map(|k| k.app)
        .collect();
    apps.dedup();
    apps.into_iter()
        .map(clap_complete::CompletionCandidate::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<ServiceKey> {
        vec![
            ServiceKey::new("shop", "production", "web"),
            ServiceKey::new("shop", "beta", "web"),
            ServiceKey::new("blog", "production", "server"),
        ]
    }

    #[test]
    fn a_typo_gets_the_nearest_target_of_the_same_depth() {
        assert_eq!(suggest("shpo", &keys()).as_deref(), Some("shop"));
        assert_eq!(
            suggest("shop/prodution", &keys()).as_deref(),
            Some("shop/production")
        );
        assert_eq!(
            suggest("blog/production/sever", &keys()).as_deref(),
            Some("blog/production/server")
        );
        assert_eq!(suggest("zzzzzz", &keys()), None, "nothing near");
    }

    #[test]
    fn a_target_may_name_its_host() {
        let t: HostTarget = "vps:shop/production"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.host.as_deref(), Some("vps"));
        assert_eq!(t.target.to_string(), "shop/production");
        let t: HostTarget = "shop".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.host, t.target.to_string()), (None, "shop".to_owned()));
        assert!("v/ps:shop".parse::<HostTarget>().is_err());
        assert!("vps:".parse::<HostTarget>().is_err());
        assert_eq!(split_host("vps:shop"), (Some("vps".into()), "shop".into()));
    }

    #[test]
    fn the_message_says_what_to_type() {
        let f = not_found(&"shpo".parse().unwrap_or(Target::All), &keys());
        assert_eq!(f.code, 4);
        assert_eq!(f.message, "no service matches shpo — did you mean shop?");
    }
}
