//! `homeport db serve|ping`: the command and health check of a managed database service.

use std::process::ExitCode;

use homeport_db::Server;

pub fn run(action: &str, args: &[String]) -> ExitCode {
    let server = match Server::from_args(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("homeport db: {e}");
            return ExitCode::from(2);
        }
    };
    match action {
        "serve" => {
            let e = homeport_db::serve(&server);
            eprintln!(
                "homeport: {} {} did not start: {e}",
                server.engine, server.name
            );
            // 78 (EX_CONFIG): what is wrong is the setup, not a crash to retry at once.
            ExitCode::from(78)
        }
        "ping" => match homeport_db::ping(&server) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        other => {
            eprintln!("homeport db: unknown action {other}; expected serve or ping");
            ExitCode::from(2)
        }
    }
}
