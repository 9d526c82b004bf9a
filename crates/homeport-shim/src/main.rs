//! `homeport-shim RUN_DIR`: the log holder the agent starts for each service (see the library).

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match (args.next(), args.next()) {
        (Some(dir), None) => ExitCode::from(homeport_shim::run(Path::new(&dir)) as u8),
        _ => {
            eprintln!("usage: homeport-shim RUN_DIR (the homeport agent starts it)");
            ExitCode::from(2)
        }
    }
}
