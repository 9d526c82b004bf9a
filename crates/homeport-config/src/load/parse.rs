//! Step 2: the spanned tree, each table deserialized on its own, so one bad service does not
//! hide the errors of the next.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diag::Sink;
use crate::raw::*;

pub(super) struct Tree {
    pub(super) agent: RawAgent,
    pub(super) apps: Vec<AppNode>,
}

pub(super) struct AppNode {
    pub(super) name: Spanned<String>,
    pub(super) raw: RawApp,
    pub(super) envs: Vec<EnvNode>,
}

pub(super) struct EnvNode {
    pub(super) name: Spanned<String>,
    pub(super) path: String,
    pub(super) raw: RawEnv,
    pub(super) services: Vec<ServiceNode>,
}

pub(super) struct ServiceNode {
    pub(super) name: Spanned<String>,
    pub(super) path: String,
    pub(super) raw: RawService,
}

pub(super) fn read_tree(root: &Spanned<DeTable<'_>>, sink: &mut Sink<'_>) -> Tree {
    let mut tree = Tree {
        agent: RawAgent::default(),
        apps: Vec::new(),
    };
    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            "agent" => {
                if let Some(agent) = de_table::<RawAgent>(value, "agent", AGENT_KEYS, sink) {
                    tree.agent = agent;
                }
            }
            "apps" => {
                for (app_key, app_value) in table_entries(value, "apps", sink) {
                    let path = format!("apps.{}", app_key.get_ref());
                    let mut app = AppNode {
                        name: owned(app_key),
                        raw: RawApp::default(),
                        envs: Vec::new(),
                    };
                    if let DeValue::Table(t) = app_value.get_ref() {
                        let mut settings = t.clone();
                        settings.remove("env");
                        let settings = Spanned::new(app_value.span(), DeValue::Table(settings));
                        app.raw = de_table::<RawApp>(&settings, &path, APP_KEYS, sink)
                            .unwrap_or_default();
                    }
                    for (k, v) in table_entries(app_value, &path, sink) {
                        if k.get_ref().as_ref() != "env" {
                            continue; // app settings, read above
                        }
                        for (env_key, env_value) in table_entries(v, &format!("{path}.env"), sink) {
                            if let Some(env) = read_env(&path, env_key, env_value, sink) {
                                app.envs.push(env);
                            }
                        }
                    }
                    tree.apps.push(app);
                }
            }
            _ => unknown_key(sink, key, "", TOP_KEYS),
        }
    }
    tree
}

pub(super) fn read_env(
    app_path: &str,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
    sink: &mut Sink<'_>,
) -> Option<EnvNode> {
    let path = format!("{app_path}.env.{}", key.get_ref());
    let DeValue::Table(table) = value.get_ref() else {
        sink.push(
            Some(value.span()),
            &path,
            "expected a table of environment settings",
        );
        return None;
    };
    // Services are read one by one below, so take them out of the environment's own table.
    let mut settings = table.clone();
    let services = settings.remove("services");
    let settings = Spanned::new(value.span(), DeValue::Table(settings));
    let raw = de_table::<RawEnv>(&settings, &path, ENV_KEYS, sink).unwrap_or_default();
    let mut env = EnvNode {
        name: owned(key),
        path: path.clone(),
        raw,
        services: Vec::new(),
    };
    if let Some(services) = services {
        let services_path = format!("{path}.services");
        for (svc_key, svc_value) in table_entries(&services, &services_path, sink) {
            let svc_path = format!("{services_path}.{}", svc_key.get_ref());
            if let Some(raw) = de_table::<RawService>(svc_value, &svc_path, SERVICE_KEYS, sink) {
                env.services.push(ServiceNode {
                    name: owned(svc_key),
                    path: svc_path,
                    raw,
                });
            }
        }
    }
    Some(env)
}

type Key<'i> = Spanned<std::borrow::Cow<'i, str>>;

pub(super) fn owned(key: &Key<'_>) -> Spanned<String> {
    Spanned::new(key.span(), key.get_ref().to_string())
}

pub(super) fn table_entries<'a, 'i>(
    value: &'a Spanned<DeValue<'i>>,
    path: &str,
    sink: &mut Sink<'_>,
) -> Vec<(&'a Key<'i>, &'a Spanned<DeValue<'i>>)> {
    match value.get_ref() {
        DeValue::Table(t) => t.iter().collect(),
        _ => {
            sink.push(Some(value.span()), path, "expected a table");
            Vec::new()
        }
    }
}

/// Deserializes one table, reporting every unknown key (with a suggestion) and the first type error.
pub(super) fn de_table<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    known: &[&str],
    sink: &mut Sink<'_>,
) -> Option<T> {
    let mut unknown = Vec::new();
    let result: Result<T, _> =
        serde_ignored::deserialize(ValueDeserializer::from(value.clone()), |p| {
            unknown.push(p.to_string())
        });
    for rel in unknown {
        // serde_ignored names the hidden levels of `Spanned` and untagged values; users never see them.
        let segments: Vec<&str> = rel
            .split('.')
            .filter(|s| *s != "?" && !s.starts_with("$__serde_spanned"))
            .collect();
        let rel = segments.join(".");
        let span = locate_key(value, &segments);
        let known_here = match segments.first() {
            Some(&"health") if segments.len() > 1 => HEALTH_KEYS,
            Some(&"restart") if segments.len() > 1 => RESTART_KEYS,
            Some(&"backup") if segments.len() > 1 => BACKUP_KEYS,
            Some(&"auto_update") if segments.len() > 1 => AUTO_UPDATE_KEYS,
            Some(&"databases") if segments.len() > 2 => DB_KEYS,
            _ => known,
        };
        let last = segments.last().copied().unwrap_or_default();
        let field = join(path, &rel);
        sink.push_help(
            span,
            &field,
            format!("unknown key `{last}`"),
            suggest(last, known_here),
        );
    }
    match result {
        Ok(t) => Some(t),
        Err(e) => {
            let span = e.span().or(Some(value.span()));
            sink.push(span, path, first_line(e.message()));
            None
        }
    }
}

pub(super) fn unknown_key(sink: &mut Sink<'_>, key: &Key<'_>, parent: &str, known: &[&str]) {
    let name = key.get_ref();
    sink.push_help(
        Some(key.span()),
        &join(parent, name),
        format!("unknown key `{name}`"),
        suggest(name, known),
    );
}

pub(super) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// The span of the key at `segments` below `value`.
pub(super) fn locate_key(value: &Spanned<DeValue<'_>>, segments: &[&str]) -> Option<Range<usize>> {
    let (first, rest) = segments.split_first()?;
    let DeValue::Table(t) = value.get_ref() else {
        return None;
    };
    let (k, v) = t.iter().find(|(k, _)| k.get_ref().as_ref() == *first)?;
    if rest.is_empty() {
        Some(k.span())
    } else {
        locate_key(v, rest).or(Some(k.span()))
    }
}

/// "did you mean `x`?" when a known key is close to the typo.
pub(super) fn suggest(typo: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(typo, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1) || k.starts_with(typo) || typo.starts_with(k))
        .min()
        .map(|(_, k)| format!("did you mean `{k}`?"))
        .or_else(|| Some(format!("expected one of: {}", known.join(", "))))
}

pub(super) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_owned()
}
