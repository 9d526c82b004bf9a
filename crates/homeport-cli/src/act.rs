//! `homeport start|stop|restart TARGET`.

use std::path::Path;

use homeport_types::{Action, Target};

use crate::{Failure, client};

pub async fn run(config_path: &Path, action: Action, target: &Target) -> Result<(), Failure> {
    let outcomes = client(config_path)?.act(action, target).await?;
    let mut failed = 0;
    for o in &outcomes {
        match &o.error {
            None => {
                outln!("{}: {}", o.key, o.state)?;
            }
            Some(e) => {
                failed += 1;
                eprintln!("{}: {}: {e}", o.key, o.state);
            }
        }
    }
    if failed > 0 {
        return Err(Failure::new(
            1,
            format!(
                "{action} failed for {failed} of {} services",
                outcomes.len()
            ),
        ));
    }
    Ok(())
}
