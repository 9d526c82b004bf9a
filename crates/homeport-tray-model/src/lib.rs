//! The tray as data: which icon, which tooltip, which menu — a pure function of the agent's
//! status, so it is tested without a display and the Tauri shell only renders it.
//!
//! Menu items carry a [`MenuId`]; a click comes back as that id and [`TrayModel::action`] maps it
//! to the [`MenuAction`] it stands for. Ids are made from actions by one function
//! ([`MenuAction::id`]) and looked up in a table, never parsed back from strings.

mod notify;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use homeport_types::{
    AppInfo, Health, HostInfo, HostState, Level, ServiceKey, ServiceState, StatusSnapshot, Verdict,
};

pub use notify::{Notice, Notifier, Screen, Urgency, coalesce};

/// What the tray's icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayIcon {
    /// The verdict is healthy.
    Healthy,
    /// The verdict is degraded: something restarts, is unhealthy or starting, a production
    /// service was stopped by hand, or another environment has a problem.
    Degraded,
    /// The verdict is down: a production service failed, crashed or exited.
    Down,
    /// A deploy or backup is running.
    Busy,
    /// The agent does not answer.
    Disconnected,
}

/// Everything a menu item can do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MenuAction {
    Start(ServiceKey),
    Stop(ServiceKey),
    Restart(ServiceKey),
    OpenInBrowser {
        app: String,
        env: String,
    },
    Logs(ServiceKey),
    BackupNow {
        app: String,
        env: String,
    },
    /// Build the app's source and roll it out to `env`.
    Deploy {
        app: String,
        env: String,
    },
    /// Roll out the release `from` runs to `to`.
    Promote {
        app: String,
        from: String,
        to: String,
    },
    /// Fast-forward the app's source to its upstream, then deploy it to production.
    Update {
        app: String,
    },
    /// Resume an environment's automatic updates, paused after failures in a row.
    ResumeUpdates {
        app: String,
        env: String,
    },
    OpenDashboard,
    OpenDashboardInBrowser,
    Settings,
    ToggleStartAtLogin,
    TogglePauseNotifications,
    /// Quit the tray; the agent keeps every service running.
    Quit,
    /// Stop every service, then quit the tray (the agent stays, idle).
    StopAllAndQuit,
}

/// An opaque, stable id of a menu item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MenuId(String);

impl MenuId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MenuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MenuId {
    fn from(s: &str) -> Self {
        MenuId(s.to_owned())
    }
}

impl MenuAction {
    /// The id of the item for this action: unique per action, stable across rebuilds.
    pub fn id(&self) -> MenuId {
        MenuId(match self {
            MenuAction::Start(k) => format!("start:{k}"),
            MenuAction::Stop(k) => format!("stop:{k}"),
            MenuAction::Restart(k) => format!("restart:{k}"),
            MenuAction::OpenInBrowser { app, env } => format!("open:{app}/{env}"),
            MenuAction::Logs(k) => format!("logs:{k}"),
            MenuAction::BackupNow { app, env } => format!("backup:{app}/{env}"),
            MenuAction::Deploy { app, env } => format!("deploy:{app}/{env}"),
            MenuAction::Promote { app, from, to } => format!("promote:{app}/{from}/{to}"),
            MenuAction::Update { app } => format!("update:{app}"),
            MenuAction::ResumeUpdates { app, env } => format!("resume-updates:{app}/{env}"),
            MenuAction::OpenDashboard => "dashboard".into(),
            MenuAction::OpenDashboardInBrowser => "dashboard-browser".into(),
            MenuAction::Settings => "settings".into(),
            MenuAction::ToggleStartAtLogin => "start-at-login".into(),
            MenuAction::TogglePauseNotifications => "pause-notifications".into(),
            MenuAction::Quit => "quit".into(),
            MenuAction::StopAllAndQuit => "stop-all-and-quit".into(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuItem {
    Action {
        id: MenuId,
        label: String,
        enabled: bool,
    },
    Check {
        id: MenuId,
        label: String,
        checked: bool,
    },
    /// A line of text that does nothing.
    Label(String),
    Submenu {
        label: String,
        items: Vec<MenuItem>,
    },
    Separator,
}

/// Settings of the tray itself that the menu shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrayPrefs {
    pub start_at_login: bool,
    pub notifications_paused: bool,
}

/// What the tray knows besides the status snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// The agent's apps (which can deploy, which environments they have).
    pub apps: Vec<AppInfo>,
    /// Commits each app's source is behind its upstream, where known.
    pub behind: BTreeMap<String, u32>,
    /// A deploy or backup the tray started is running.
    pub busy: bool,
    /// The other hosts the agent reaches, each with its verdict while connected.
    pub hosts: Vec<HostInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayModel {
    pub icon: TrayIcon,
    pub tooltip: String,
    pub menu: Vec<MenuItem>,
    actions: HashMap<MenuId, MenuAction>,
}

impl TrayModel {
    /// The action of a clicked item, if the id belongs to this menu.
    pub fn action(&self, id: &MenuId) -> Option<&MenuAction> {
        self.actions.get(id)
    }

    /// Every action the menu offers.
    pub fn actions(&self) -> impl Iterator<Item = &MenuAction> {
        self.actions.values()
    }

    /// The tray of an agent that does not answer.
    pub fn disconnected(prefs: TrayPrefs, reason: &str) -> Self {
        let mut b = Builder::default();
        let menu = vec![
            MenuItem::Label(format!("Agent not reachable: {reason}")),
            MenuItem::Separator,
            b.check(
                MenuAction::ToggleStartAtLogin,
                "Start at login",
                prefs.start_at_login,
            ),
            b.item(MenuAction::Quit, "Quit Homeport", true),
        ];
        TrayModel {
            icon: TrayIcon::Disconnected,
            tooltip: "Homeport: agent not reachable".into(),
            menu,
            actions: b.actions,
        }
    }

    /// Builds the tray from the agent's status and what else the tray knows.
    pub fn build(status: &StatusSnapshot, extras: &Extras, prefs: TrayPrefs) -> Self {
        let mut b = Builder::default();
        let mut apps: BTreeMap<&str, BTreeMap<&str, Vec<&homeport_types::ServiceStatus>>> =
            BTreeMap::new();
        for s in &status.services {
            apps.entry(&s.key.app)
                .or_default()
                .entry(&s.key.env)
                .or_default()
                .push(s);
        }
        let mut menu = Vec::new();
        for (app, envs) in &apps {
            let mut env_items = Vec::new();
            for (env, services) in envs {
                let mut items = Vec::new();
                for s in services {
                    let k = &s.key;
                    let up = s.state.is_up();
                    items.push(MenuItem::Submenu {
                        label: format!(
                            "{} {} — {}",
                            Mark::of(s.state, s.health).glyph(),
                            k.service,
                            s.state_words()
                        ),
                        items: vec![
                            b.item(MenuAction::Start(k.clone()), "Start", !up),
                            b.item(MenuAction::Stop(k.clone()), "Stop", up),
                            b.item(MenuAction::Restart(k.clone()), "Restart", true),
                            b.item(MenuAction::Logs(k.clone()), "Logs", true),
                        ],
                    });
                }
                let release = extras
                    .apps
                    .iter()
                    .find(|i| i.name == *app)
                    .and_then(|i| i.envs.iter().find(|e| e.env == *env));
                items.push(MenuItem::Separator);
                if services.iter().any(|s| s.url.is_some()) {
                    items.push(b.item(
                        MenuAction::OpenInBrowser {
                            app: (*app).into(),
                            env: (*env).into(),
                        },
                        "Open in browser",
                        true,
                    ));
                }
                items.push(b.item(
                    MenuAction::BackupNow {
                        app: (*app).into(),
                        env: (*env).into(),
                    },
                    "Backup now",
                    true,
                ));
                if let Some(u) = release.and_then(|e| e.auto_update.as_ref())
                    && u.paused
                {
                    items.push(MenuItem::Separator);
                    items.push(MenuItem::Label(format!(
                        "Automatic updates paused after {} failures",
                        u.failures
                    )));
                    items.push(b.item(
                        MenuAction::ResumeUpdates {
                            app: (*app).into(),
                            env: (*env).into(),
                        },
                        "Resume automatic updates",
                        true,
                    ));
                }
                let worst = services
                    .iter()
                    .map(|s| Mark::of(s.state, s.health))
                    .max()
                    .unwrap_or(Mark::Down)
                    .glyph();
                let version = release
                    .and_then(|e| e.version.as_deref())
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default();
                env_items.push(MenuItem::Submenu {
                    label: format!("{worst} {env}{version}"),
                    items,
                });
            }
            if let Some(info) = extras.apps.iter().find(|i| i.name == *app) {
                let releases = releases_items(&mut b, info, extras.behind.get(*app).copied());
                if !releases.is_empty() {
                    env_items.push(MenuItem::Separator);
                    env_items.extend(releases);
                }
            }
            menu.push(MenuItem::Submenu {
                label: (*app).to_owned(),
                items: env_items,
            });
        }
        if apps.is_empty() {
            menu.push(MenuItem::Label("No services configured".into()));
        }
        if !extras.hosts.is_empty() {
            // This computer's apps above; each other host a group of its own.
            menu.insert(0, MenuItem::Label("This computer".into()));
            menu.push(MenuItem::Separator);
            for h in &extras.hosts {
                menu.push(host_item(h));
            }
        }
        menu.push(MenuItem::Separator);
        menu.push(b.item(MenuAction::OpenDashboard, "Open dashboard", true));
        menu.push(b.item(
            MenuAction::OpenDashboardInBrowser,
            "Open dashboard in browser",
            true,
        ));
        menu.push(b.item(MenuAction::Settings, "Settings…", true));
        menu.push(MenuItem::Separator);
        menu.push(b.check(
            MenuAction::ToggleStartAtLogin,
            "Start at login",
            prefs.start_at_login,
        ));
        menu.push(b.check(
            MenuAction::TogglePauseNotifications,
            "Pause notifications",
            prefs.notifications_paused,
        ));
        menu.push(MenuItem::Separator);
        menu.push(MenuItem::Submenu {
            label: "Quit Homeport".into(),
            items: vec![
                b.item(MenuAction::Quit, "Quit, leave services running", true),
                b.item(
                    MenuAction::StopAllAndQuit,
                    "Stop all services and quit",
                    true,
                ),
            ],
        });
        TrayModel {
            icon: icon(status, &extras.hosts, extras.busy),
            tooltip: tooltip(status, &extras.hosts),
            menu,
            actions: b.actions,
        }
    }
}

/// Deploy, promote and update items of a deployable app.
fn releases_items(b: &mut Builder, info: &AppInfo, behind: Option<u32>) -> Vec<MenuItem> {
    if !info.deployable {
        return Vec::new();
    }
    let has = |env: &str| info.envs.iter().any(|e| e.env == env);
    let app = info.name.clone();
    let mut items = Vec::new();
    if has("production") {
        items.push(b.item(
            MenuAction::Deploy {
                app: app.clone(),
                env: "production".into(),
            },
            "Deploy to production",
            true,
        ));
        if has("beta") {
            items.push(b.item(
                MenuAction::Promote {
                    app: app.clone(),
                    from: "beta".into(),
                    to: "production".into(),
                },
                "Promote beta → production",
                true,
            ));
        }
        match behind {
            Some(0) => items.push(MenuItem::Label("Source up to date".into())),
            Some(n) => items.push(b.item(
                MenuAction::Update { app },
                &format!(
                    "Update available ({n} commit{})",
                    if n == 1 { "" } else { "s" }
                ),
                true,
            )),
            None => {}
        }
    }
    items
}

#[derive(Default)]
struct Builder {
    actions: HashMap<MenuId, MenuAction>,
}

impl Builder {
    fn item(&mut self, action: MenuAction, label: &str, enabled: bool) -> MenuItem {
        let id = action.id();
        self.actions.insert(id.clone(), action);
        MenuItem::Action {
            id,
            label: label.into(),
            enabled,
        }
    }

    fn check(&mut self, action: MenuAction, label: &str, checked: bool) -> MenuItem {
        let id = action.id();
        self.actions.insert(id.clone(), action);
        MenuItem::Check {
            id,
            label: label.into(),
            checked,
        }
    }
}

/// How one service (or the worst of an environment) looks in the menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    /// Up and fine: ●
    Up,
    /// Stopped or exited on purpose: ○
    Down,
    /// Starting, stopping, restarting or unhealthy: ◐
    Changing,
    /// Failed or crashed: ✖
    Failed,
}

impl Mark {
    pub fn of(state: ServiceState, health: Health) -> Self {
        match state {
            ServiceState::Failed | ServiceState::Crashed => Mark::Failed,
            ServiceState::Unhealthy
            | ServiceState::BackingOff
            | ServiceState::Starting
            | ServiceState::Stopping => Mark::Changing,
            ServiceState::Healthy | ServiceState::Running if health != Health::Unhealthy => {
                Mark::Up
            }
            ServiceState::Healthy | ServiceState::Running => Mark::Changing,
            ServiceState::Stopped | ServiceState::Exited => Mark::Down,
        }
    }

    pub fn glyph(self) -> &'static str {
        match self {
            Mark::Up => "●",
            Mark::Down => "○",
            Mark::Changing => "◐",
            Mark::Failed => "✖",
        }
    }
}

/// A host's verdict as the tray counts it: its agent's own while connected; a host not heard
/// is degraded (what its production does is not known, which is not "healthy").
fn host_verdict(h: &HostInfo) -> Verdict {
    let (level, reason) = match (h.state, &h.overall) {
        (HostState::Connected, Some(v)) => return v.clone(),
        // Not heard yet since this agent started: nothing is known to be wrong.
        (HostState::Connected | HostState::Connecting, None) => {
            (Level::Healthy, "connecting".to_owned())
        }
        (HostState::Connecting, Some(v)) => return v.clone(),
        (HostState::AgentDown, _) => (Level::Degraded, "its agent is down".to_owned()),
        (HostState::Unreachable, _) => (
            Level::Degraded,
            format!("unreachable since {}", clock(&h.since)),
        ),
    };
    Verdict { level, reason }
}

/// The local clock time of an RFC 3339 time with its zone, as a menu has room for: "10:12 CET".
fn clock(rfc3339: &str) -> String {
    clock_in(rfc3339, &jiff::tz::TimeZone::system())
}

fn clock_in(rfc3339: &str, tz: &jiff::tz::TimeZone) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => t.to_zoned(tz.clone()).strftime("%H:%M %Z").to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

fn level_glyph(level: Level) -> &'static str {
    match level {
        Level::Healthy => Mark::Up.glyph(),
        Level::Degraded => Mark::Changing.glyph(),
        Level::Down => Mark::Failed.glyph(),
    }
}

/// One host's group: its verdict, each of its environments with its own, why it is not heard,
/// and where it is.
fn host_item(h: &HostInfo) -> MenuItem {
    let v = host_verdict(h);
    let glyph = level_glyph(v.level);
    let mut items = vec![MenuItem::Label(v.reason.clone())];
    for e in &h.envs {
        let mut label = format!("{} {}/{}", level_glyph(e.verdict.level), e.app, e.env);
        if e.verdict.level != Level::Healthy {
            label.push_str(&format!(" — {}", e.verdict.reason));
        }
        items.push(MenuItem::Label(label));
    }
    if let Some(why) = h
        .reason
        .as_ref()
        .filter(|_| h.state != HostState::Connected)
    {
        items.push(MenuItem::Label(why.clone()));
    }
    items.push(MenuItem::Label(format!(
        "{} · {}/{}{}",
        h.destination,
        h.os,
        h.arch,
        h.version
            .as_ref()
            .map(|v| format!(" · homeport {v}"))
            .unwrap_or_default()
    )));
    MenuItem::Submenu {
        label: format!("{glyph} {} — {}", h.name, v.reason),
        items,
    }
}

/// The icon is the worst verdict of this agent ([`StatusSnapshot::overall`]) and of every other
/// host, unless something runs.
fn icon(status: &StatusSnapshot, hosts: &[HostInfo], busy: bool) -> TrayIcon {
    if busy {
        return TrayIcon::Busy;
    }
    // Levels are ordered from healthy to down.
    let worst = hosts
        .iter()
        .map(|h| host_verdict(h).level)
        .chain([status.overall().level])
        .max()
        .unwrap_or(Level::Healthy);
    match worst {
        Level::Healthy => TrayIcon::Healthy,
        Level::Degraded => TrayIcon::Degraded,
        Level::Down => TrayIcon::Down,
    }
}

/// One line: the verdict's reason, then the counts: "production healthy · 2 apps · 5 services".
/// A host that is not healthy adds its name and verdict: "… · vps: unreachable since 10:12 CET".
fn tooltip(status: &StatusSnapshot, hosts: &[HostInfo]) -> String {
    let apps: std::collections::BTreeSet<&str> =
        status.services.iter().map(|s| s.key.app.as_str()).collect();
    let n = status.services.len();
    let mut t = format!(
        "{} · {} app{} · {n} service{}",
        status.overall().reason,
        apps.len(),
        if apps.len() == 1 { "" } else { "s" },
        if n == 1 { "" } else { "s" }
    );
    for h in hosts {
        let v = host_verdict(h);
        if v.level != Level::Healthy {
            t.push_str(&format!(" · {}: {}", h.name, v.reason));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use homeport_types::{AgentInfo, ServiceStatus};

    fn svc(app: &str, env: &str, name: &str, state: ServiceState, health: Health) -> ServiceStatus {
        ServiceStatus {
            key: ServiceKey::new(app, env, name),
            state,
            health,
            pid: state.is_up().then_some(42),
            uptime_secs: None,
            state_secs: None,
            restarts: 0,
            last_exit: None,
            message: None,
            cpu_percent: None,
            rss_bytes: None,
            port: Some(8080),
            ports: Default::default(),
            instance: None,
            url: Some("http://127.0.0.1:8080/".into()),
            autostart: env == "production",
            log_file: None,
            retry_in_secs: None,
            notify: homeport_types::NotifyPolicy::default_for(env),
        }
    }

    pub(crate) fn snapshot(services: Vec<ServiceStatus>) -> StatusSnapshot {
        StatusSnapshot {
            agent: AgentInfo {
                pid: 1,
                version: "0".into(),
                config_path: "x".into(),
                uptime_secs: 0,
                service_manager: None,
                log: None,
                config_rejected: None,
            },
            services,
        }
    }

    fn all_ids(items: &[MenuItem], out: &mut Vec<MenuId>) {
        for i in items {
            match i {
                MenuItem::Action { id, .. } | MenuItem::Check { id, .. } => out.push(id.clone()),
                MenuItem::Submenu { items, .. } => all_ids(items, out),
                _ => {}
            }
        }
    }

    #[test]
    fn every_menu_id_maps_back_to_its_action_and_ids_are_unique() {
        let s = snapshot(vec![
            svc(
                "clauset",
                "production",
                "server",
                ServiceState::Healthy,
                Health::Healthy,
            ),
            svc(
                "clauset",
                "beta",
                "server",
                ServiceState::Stopped,
                Health::Unknown,
            ),
            svc(
                "relay",
                "production",
                "web",
                ServiceState::Running,
                Health::Unknown,
            ),
        ]);
        let m = TrayModel::build(&s, &Extras::default(), TrayPrefs::default());
        let mut ids = Vec::new();
        all_ids(&m.menu, &mut ids);
        let unique: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "ids are unique");
        for id in &ids {
            let action = m.action(id).unwrap_or_else(|| panic!("{id} has no action"));
            assert_eq!(&action.id(), id, "round trip");
        }
        assert_eq!(
            m.action(&MenuId::from("start:clauset/beta/server")),
            Some(&MenuAction::Start(ServiceKey::new(
                "clauset", "beta", "server"
            )))
        );
        assert_eq!(m.action(&MenuId::from("nonsense")), None);
    }

    fn host(name: &str, state: HostState, overall: Option<(Level, &str)>) -> HostInfo {
        HostInfo {
            name: name.into(),
            destination: format!("ana@{name}.example.org"),
            os: "linux".into(),
            arch: "x86_64".into(),
            state,
            since: "2026-12-04T09:12:30Z".into(),
            reason: (state == HostState::Unreachable).then(|| "cannot reach it: timed out".into()),
            version: Some("0.1.0".into()),
            envs: overall
                .iter()
                .map(|(level, reason)| homeport_types::EnvVerdict {
                    app: "shop".into(),
                    env: "production".into(),
                    verdict: Verdict {
                        level: *level,
                        reason: (*reason).into(),
                    },
                })
                .collect(),
            overall: overall.map(|(level, reason)| Verdict {
                level,
                reason: reason.into(),
            }),
        }
    }

    #[test]
    fn hosts_are_groups_of_their_own_and_the_icon_is_the_worst_production() {
        let here = snapshot(vec![svc(
            "a",
            "production",
            "web",
            ServiceState::Healthy,
            Health::Healthy,
        )]);
        let build = |hosts: Vec<HostInfo>| {
            TrayModel::build(
                &here,
                &Extras {
                    hosts,
                    ..Extras::default()
                },
                TrayPrefs::default(),
            )
        };
        let alone = build(vec![]);
        assert!(
            !alone
                .menu
                .contains(&MenuItem::Label("This computer".into()))
        );

        let fine = build(vec![host(
            "vps",
            HostState::Connected,
            Some((Level::Healthy, "production healthy")),
        )]);
        assert_eq!(fine.icon, TrayIcon::Healthy);
        assert_eq!(fine.menu[0], MenuItem::Label("This computer".into()));
        let group = fine
            .menu
            .iter()
            .find_map(|i| match i {
                MenuItem::Submenu { label, items } if label.contains("vps") => {
                    Some((label.clone(), items.clone()))
                }
                _ => None,
            })
            .expect("a group for vps");
        assert_eq!(group.0, "● vps — production healthy");
        assert!(group.1.iter().any(
            |i| matches!(i, MenuItem::Label(l) if l.contains("ana@vps.example.org") && l.contains("homeport 0.1.0"))
        ));
        assert!(
            group
                .1
                .contains(&MenuItem::Label("● shop/production".into())),
            "{:?}",
            group.1
        );

        let down = build(vec![host(
            "vps",
            HostState::Connected,
            Some((Level::Down, "production: web failed")),
        )]);
        assert_eq!(down.icon, TrayIcon::Down, "production there failed");
        assert!(down.menu.iter().any(|i| matches!(
            i,
            MenuItem::Submenu { items, .. }
                if items.contains(&MenuItem::Label("✖ shop/production — production: web failed".into()))
        )), "{:?}", down.menu);
        assert!(
            down.tooltip.contains("vps: production: web failed"),
            "{}",
            down.tooltip
        );

        let gone = build(vec![host("vps", HostState::Unreachable, None)]);
        assert_eq!(gone.icon, TrayIcon::Degraded, "not heard is not healthy");
        let since = format!("vps: unreachable since {}", clock("2026-12-04T09:12:30Z"));
        assert!(gone.tooltip.contains(&since), "{}", gone.tooltip);
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").expect("Europe/Berlin");
        assert_eq!(clock_in("2026-12-04T09:12:30Z", &berlin), "10:12 CET");
        assert!(gone.menu.iter().any(|i| matches!(
            i,
            MenuItem::Submenu { label, items }
                if label.starts_with("◐ vps")
                    && items.contains(&MenuItem::Label("cannot reach it: timed out".into()))
        )));
    }

    #[test]
    fn menu_labels_say_states_in_words() {
        let mut waiting = svc(
            "a",
            "beta",
            "web",
            ServiceState::BackingOff,
            Health::Unknown,
        );
        waiting.retry_in_secs = Some(15);
        let model = TrayModel::build(
            &snapshot(vec![waiting]),
            &Extras::default(),
            TrayPrefs::default(),
        );
        fn labels(items: &[MenuItem], out: &mut Vec<String>) {
            for i in items {
                if let MenuItem::Submenu { label, items } = i {
                    out.push(label.clone());
                    labels(items, out);
                }
            }
        }
        let mut all = Vec::new();
        labels(&model.menu, &mut all);
        assert!(
            all.iter().any(|l| l.ends_with("web — restarting in 15 s")),
            "{all:?}"
        );
        assert!(!all.iter().any(|l| l.contains("backing")), "{all:?}");
    }

    #[test]
    fn icons_follow_the_state_of_production() {
        let healthy = snapshot(vec![svc(
            "a",
            "production",
            "web",
            ServiceState::Healthy,
            Health::Healthy,
        )]);
        assert_eq!(
            TrayModel::build(&healthy, &Extras::default(), TrayPrefs::default()).icon,
            TrayIcon::Healthy
        );
        assert_eq!(
            TrayModel::build(
                &healthy,
                &Extras {
                    busy: true,
                    ..Extras::default()
                },
                TrayPrefs::default()
            )
            .icon,
            TrayIcon::Busy
        );
        let restarting = snapshot(vec![svc(
            "a",
            "production",
            "web",
            ServiceState::BackingOff,
            Health::Unknown,
        )]);
        assert_eq!(
            TrayModel::build(&restarting, &Extras::default(), TrayPrefs::default()).icon,
            TrayIcon::Degraded
        );
        let unhealthy_beta = snapshot(vec![
            svc(
                "a",
                "production",
                "web",
                ServiceState::Healthy,
                Health::Healthy,
            ),
            svc(
                "a",
                "beta",
                "web",
                ServiceState::Unhealthy,
                Health::Unhealthy,
            ),
        ]);
        assert_eq!(
            TrayModel::build(&unhealthy_beta, &Extras::default(), TrayPrefs::default()).icon,
            TrayIcon::Degraded
        );
        let failed = snapshot(vec![svc(
            "a",
            "production",
            "web",
            ServiceState::Failed,
            Health::Unknown,
        )]);
        assert_eq!(
            TrayModel::build(&failed, &Extras::default(), TrayPrefs::default()).icon,
            TrayIcon::Down
        );
        let stopped_by_user = snapshot(vec![svc(
            "a",
            "production",
            "web",
            ServiceState::Stopped,
            Health::Unknown,
        )]);
        // Stopped by hand is not healthy: it should run.
        assert_eq!(
            TrayModel::build(&stopped_by_user, &Extras::default(), TrayPrefs::default()).icon,
            TrayIcon::Degraded
        );
        assert_eq!(
            TrayModel::disconnected(TrayPrefs::default(), "x").icon,
            TrayIcon::Disconnected
        );
    }

    #[test]
    fn the_tooltip_is_one_line_summary() {
        let s = snapshot(vec![
            svc(
                "clauset",
                "production",
                "server",
                ServiceState::Healthy,
                Health::Healthy,
            ),
            svc(
                "clauset",
                "production",
                "worker",
                ServiceState::Running,
                Health::Unknown,
            ),
            svc(
                "clauset",
                "beta",
                "server",
                ServiceState::Stopped,
                Health::Unknown,
            ),
            svc(
                "relay",
                "beta",
                "web",
                ServiceState::Stopped,
                Health::Unknown,
            ),
            svc(
                "relay",
                "dev",
                "web",
                ServiceState::Stopped,
                Health::Unknown,
            ),
        ]);
        assert_eq!(
            TrayModel::build(&s, &Extras::default(), TrayPrefs::default()).tooltip,
            "production healthy · 2 apps · 5 services"
        );
        assert_eq!(
            TrayModel::build(&snapshot(vec![]), &Extras::default(), TrayPrefs::default()).tooltip,
            "no services configured · 0 apps · 0 services"
        );
    }

    #[test]
    fn items_are_enabled_for_what_makes_sense_and_checks_show_prefs() {
        let s = snapshot(vec![svc(
            "a",
            "production",
            "web",
            ServiceState::Healthy,
            Health::Healthy,
        )]);
        let prefs = TrayPrefs {
            start_at_login: true,
            notifications_paused: false,
        };
        let m = TrayModel::build(&s, &Extras::default(), prefs);
        fn find<'a>(items: &'a [MenuItem], want: &MenuId) -> Option<&'a MenuItem> {
            items.iter().find_map(|i| match i {
                MenuItem::Action { id, .. } | MenuItem::Check { id, .. } if id == want => Some(i),
                MenuItem::Submenu { items, .. } => find(items, want),
                _ => None,
            })
        }
        let k = ServiceKey::new("a", "production", "web");
        assert!(matches!(
            find(&m.menu, &MenuAction::Start(k.clone()).id()),
            Some(MenuItem::Action { enabled: false, .. })
        ));
        assert!(matches!(
            find(&m.menu, &MenuAction::Stop(k).id()),
            Some(MenuItem::Action { enabled: true, .. })
        ));
        assert!(matches!(
            find(&m.menu, &MenuAction::ToggleStartAtLogin.id()),
            Some(MenuItem::Check { checked: true, .. })
        ));
        assert!(matches!(
            find(&m.menu, &MenuAction::TogglePauseNotifications.id()),
            Some(MenuItem::Check { checked: false, .. })
        ));
        // Without app facts there is nothing to deploy: no dead Deploy items.
        let mut ids = Vec::new();
        all_ids(&m.menu, &mut ids);
        assert!(
            !ids.iter().any(|i| {
                ["deploy", "promote", "update"]
                    .iter()
                    .any(|p| i.as_str().starts_with(p))
            }),
            "{ids:?}"
        );
        // Quitting asks: leave services running (first, the default) or stop them.
        let quit = m.menu.iter().find_map(|i| match i {
            MenuItem::Submenu { label, items } if label == "Quit Homeport" => Some(items),
            _ => None,
        });
        let quit = quit.expect("a Quit submenu");
        assert!(matches!(&quit[0], MenuItem::Action { id, .. } if *id == MenuAction::Quit.id()));
        assert!(
            matches!(&quit[1], MenuItem::Action { id, .. } if *id == MenuAction::StopAllAndQuit.id())
        );
    }

    fn app_info(name: &str, deployable: bool, envs: &[&str]) -> AppInfo {
        AppInfo {
            name: name.into(),
            deployable,
            envs: envs
                .iter()
                .map(|e| homeport_types::EnvRelease {
                    env: (*e).into(),
                    current: None,
                    version: None,
                    auto_update: None,
                    host: None,
                    rollback_to: None,
                })
                .collect(),
        }
    }

    fn labels(items: &[MenuItem]) -> Vec<String> {
        let mut out = Vec::new();
        for i in items {
            match i {
                MenuItem::Action { label, .. } | MenuItem::Check { label, .. } => {
                    out.push(label.clone())
                }
                MenuItem::Label(l) => out.push(l.clone()),
                MenuItem::Submenu { label, items } => {
                    out.push(label.clone());
                    out.extend(labels(items));
                }
                MenuItem::Separator => {}
            }
        }
        out
    }

    #[test]
    fn deployable_apps_offer_deploy_promote_and_update() {
        let up = |app, env, name| svc(app, env, name, ServiceState::Healthy, Health::Healthy);
        let s = snapshot(vec![
            up("clauset", "production", "server"),
            up("clauset", "beta", "server"),
            up("relay", "production", "web"),
            up("notes", "dev", "web"),
        ]);
        let extras = Extras {
            apps: vec![
                app_info("clauset", true, &["production", "beta"]),
                app_info("relay", false, &["production"]),
                app_info("notes", true, &["dev"]),
            ],
            behind: BTreeMap::from([("clauset".to_owned(), 3)]),
            busy: false,
            hosts: Vec::new(),
        };
        let m = TrayModel::build(&s, &extras, TrayPrefs::default());
        let ids: std::collections::BTreeSet<MenuId> = m.actions().map(MenuAction::id).collect();
        let clauset = |a: MenuAction| ids.contains(&a.id());
        assert!(clauset(MenuAction::Deploy {
            app: "clauset".into(),
            env: "production".into()
        }));
        assert!(clauset(MenuAction::Promote {
            app: "clauset".into(),
            from: "beta".into(),
            to: "production".into()
        }));
        assert!(clauset(MenuAction::Update {
            app: "clauset".into()
        }));
        // relay has no source; notes has no production: neither offers a deploy.
        let releases_of = |app: &str| {
            m.actions()
                .filter(|a| {
                    matches!(a,
                        MenuAction::Deploy { app: x, .. }
                        | MenuAction::Promote { app: x, .. }
                        | MenuAction::Update { app: x } if x == app)
                })
                .count()
        };
        assert_eq!(releases_of("relay"), 0);
        assert_eq!(releases_of("notes"), 0);
        let all = labels(&m.menu);
        assert!(
            all.contains(&"Update available (3 commits)".to_owned()),
            "{all:?}"
        );
        assert!(all.contains(&"Promote beta → production".to_owned()));

        let up_to_date = Extras {
            behind: BTreeMap::from([("clauset".to_owned(), 0)]),
            ..extras
        };
        let m = TrayModel::build(&s, &up_to_date, TrayPrefs::default());
        assert!(!m.actions().any(|a| matches!(a, MenuAction::Update { .. })));
        assert!(labels(&m.menu).contains(&"Source up to date".to_owned()));
    }

    #[test]
    fn each_environment_shows_the_version_it_runs() {
        let up = |env, name| svc("shop", env, name, ServiceState::Healthy, Health::Healthy);
        let s = snapshot(vec![up("production", "web"), up("beta", "web")]);
        let mut info = app_info("shop", true, &["production", "beta"]);
        info.envs[0].version = Some("1.4.2".into());
        info.envs[1].version = Some("1.5.0-rc1+3".into());
        let extras = Extras {
            apps: vec![info],
            ..Extras::default()
        };
        let all = labels(&TrayModel::build(&s, &extras, TrayPrefs::default()).menu);
        assert!(all.contains(&"● production 1.4.2".to_owned()), "{all:?}");
        assert!(all.contains(&"● beta 1.5.0-rc1+3".to_owned()), "{all:?}");
    }

    #[test]
    fn paused_automatic_updates_say_so_with_a_resume_item() {
        let s = snapshot(vec![svc(
            "shop",
            "beta",
            "web",
            ServiceState::Healthy,
            Health::Healthy,
        )]);
        let mut info = app_info("shop", true, &["beta"]);
        info.envs[0].auto_update = Some(homeport_types::AutoUpdateState {
            every: "1h".into(),
            window: None,
            paused: true,
            failures: 2,
            failed_commit: Some("9f8e7d6".into()),
            refused: None,
            waiting: None,
            last_check: None,
        });
        let extras = Extras {
            apps: vec![info.clone()],
            ..Extras::default()
        };
        let m = TrayModel::build(&s, &extras, TrayPrefs::default());
        let resume = MenuAction::ResumeUpdates {
            app: "shop".into(),
            env: "beta".into(),
        };
        assert_eq!(m.action(&resume.id()), Some(&resume));
        assert!(labels(&m.menu).contains(&"Automatic updates paused after 2 failures".to_owned()));

        if let Some(u) = info.envs[0].auto_update.as_mut() {
            u.paused = false;
        }
        let extras = Extras {
            apps: vec![info],
            ..Extras::default()
        };
        let m = TrayModel::build(&s, &extras, TrayPrefs::default());
        assert_eq!(m.action(&resume.id()), None, "nothing to resume");
    }
}
