//! Colour: decided once per run from `--color`, `NO_COLOR`, `CLICOLOR_FORCE` and whether stdout
//! is a terminal, then used by every printer. Styles are `anstyle` values; text goes out through
//! `anstream`, which also strips escapes if a styled string ever reaches a writer that must be
//! plain.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use anstyle::{AnsiColor, Style};
use homeport_types::{Health, ServiceKey, ServiceState};

/// `--color`: when to colour the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorWhen {
    /// When stdout is a terminal and `NO_COLOR` is not set
    #[default]
    Auto,
    /// Always, even into a pipe or a file
    Always,
    /// Never
    Never,
}

static STDOUT: AtomicBool = AtomicBool::new(false);
static STDERR: AtomicBool = AtomicBool::new(false);

/// Decides colour for this run (stdout and stderr each by whether it is a terminal).
pub fn init(when: ColorWhen) {
    let env = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let decide = |tty: bool| match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto if env("NO_COLOR") => false,
        ColorWhen::Auto if env("CLICOLOR_FORCE") => true,
        ColorWhen::Auto => tty && std::env::var_os("TERM").is_none_or(|t| t != "dumb"),
    };
    let out = decide(std::io::stdout().is_terminal());
    STDOUT.store(out, Ordering::Relaxed);
    STDERR.store(decide(std::io::stderr().is_terminal()), Ordering::Relaxed);
    anstream::ColorChoice::write_global(if out {
        anstream::ColorChoice::AlwaysAnsi
    } else {
        anstream::ColorChoice::Never
    });
}

/// Whether stdout is coloured.
pub fn enabled() -> bool {
    STDOUT.load(Ordering::Relaxed)
}

/// `text` in `style` when stdout is coloured.
pub fn paint(text: &str, style: Style) -> String {
    if enabled() && style != Style::new() {
        format!("{style}{text}{style:#}")
    } else {
        text.to_owned()
    }
}

/// `text` in `style` when stderr is coloured.
pub fn paint_err(text: &str, style: Style) -> String {
    if STDERR.load(Ordering::Relaxed) {
        format!("{style}{text}{style:#}")
    } else {
        text.to_owned()
    }
}

fn fg(c: AnsiColor) -> Style {
    Style::new().fg_color(Some(c.into()))
}

pub fn ok() -> Style {
    fg(AnsiColor::Green)
}
pub fn warn() -> Style {
    fg(AnsiColor::Yellow)
}
pub fn bad() -> Style {
    fg(AnsiColor::Red).bold()
}
pub fn dim() -> Style {
    Style::new().dimmed()
}
pub fn bold() -> Style {
    Style::new().bold()
}

/// What colour a state is: up and well green, on its way or unwell amber, down by failure red,
/// down on purpose dim.
pub fn state(s: ServiceState, h: Health) -> Style {
    match s {
        ServiceState::Healthy => ok(),
        ServiceState::Running if h != Health::Unhealthy => ok(),
        ServiceState::Running
        | ServiceState::Starting
        | ServiceState::Unhealthy
        | ServiceState::Stopping
        | ServiceState::BackingOff => warn(),
        ServiceState::Crashed | ServiceState::Failed => bad(),
        ServiceState::Stopped | ServiceState::Exited => dim(),
    }
}

pub fn health(h: Health) -> Style {
    match h {
        Health::Healthy => ok(),
        Health::Unhealthy => bad(),
        Health::Unknown => dim(),
    }
}

/// A colour per service, stable across runs, so interleaved log lines can be told apart.
pub fn service(key: &ServiceKey) -> Style {
    const PALETTE: [AnsiColor; 6] = [
        AnsiColor::Cyan,
        AnsiColor::Magenta,
        AnsiColor::Blue,
        AnsiColor::Green,
        AnsiColor::Yellow,
        AnsiColor::BrightCyan,
    ];
    // FNV-1a: a fixed hash, unlike the standard library's randomly seeded one.
    let h = key
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    fg(PALETTE[(h % PALETTE.len() as u64) as usize])
}

/// The terminal's width in columns when stdout is one (asked of stdout itself, so it is right
/// even without a controlling terminal, as under `script` or a test's pty).
pub fn width() -> Option<u16> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize, which `ws` is.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(ws.ws_col)
}
