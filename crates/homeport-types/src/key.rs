//! How a service is named: [`ServiceKey`] and the [`Target`] of a command.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `app/env/service`: the unique name of one supervised process.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceKey {
    pub app: String,
    pub env: String,
    pub service: String,
}

impl ServiceKey {
    pub fn new(app: impl Into<String>, env: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            env: env.into(),
            service: service.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.app, self.env, self.service)
    }
}

/// What a CLI or API command acts on: everything, an app, one environment, or one service.
#[cfg_attr(test, derive(ts_rs::TS), ts(type = "string"))]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    All,
    App(String),
    Env(String, String),
    Service(ServiceKey),
}

impl Target {
    /// Whether `key` is part of this target.
    pub fn contains(&self, key: &ServiceKey) -> bool {
        match self {
            Target::All => true,
            Target::App(app) => &key.app == app,
            Target::Env(app, env) => &key.app == app && &key.env == env,
            Target::Service(k) => k == key,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::App(app) => f.write_str(app),
            Target::Env(app, env) => write!(f, "{app}/{env}"),
            Target::Service(key) => key.fmt(f),
        }
    }
}

/// A target string that is not `app`, `app/env` or `app/env/service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetParseError(pub String);

impl fmt::Display for TargetParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid target {:?}: expected APP, APP/ENV or APP/ENV/SERVICE",
            self.0
        )
    }
}

impl std::error::Error for TargetParseError {}

impl FromStr for Target {
    type Err = TargetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(Target::All);
        }
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(TargetParseError(s.to_owned()));
        }
        match parts.as_slice() {
            [app] => Ok(Target::App((*app).to_owned())),
            [app, env] => Ok(Target::Env((*app).to_owned(), (*env).to_owned())),
            [app, env, svc] => Ok(Target::Service(ServiceKey::new(*app, *env, *svc))),
            _ => Err(TargetParseError(s.to_owned())),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_round_trip() {
        for s in ["all", "clauset", "clauset/beta", "clauset/beta/server"] {
            let t: Target = s.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(t.to_string(), s);
        }
        for bad in ["", "a//b", "a/b/c/d", "/a", "a/"] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn target_contains_matches_its_scope() {
        let k = ServiceKey::new("a", "prod", "web");
        assert!(Target::All.contains(&k));
        assert!(Target::App("a".into()).contains(&k));
        assert!(!Target::App("b".into()).contains(&k));
        assert!(Target::Env("a".into(), "prod".into()).contains(&k));
        assert!(!Target::Env("a".into(), "beta".into()).contains(&k));
        assert!(Target::Service(k.clone()).contains(&k));
    }
}
