//! `homeport start|stop|restart TARGET`.

use std::path::Path;

use homeport_types::{Action, Target};

use crate::style::{bad, paint, paint_err, state};
use crate::{Failure, client};

pub async fn run(config_path: &Path, action: Action, target: &Target) -> Result<(), Failure> {
    let client = client(config_path)?;
    let outcomes = match client.act(action, target).await {
        Ok(o) => o,
        Err(e) => return Err(crate::targets::explain(&client, target, e.into()).await),
    };
    let mut failed = 0;
    for o in &outcomes {
        let word = o.state.word();
        match &o.error {
            None => {
                outln!(
                    "{}: {}",
                    o.key,
                    paint(word, state(o.state, homeport_types::Health::Unknown))
                )?;
            }
            Some(e) => {
                failed += 1;
                eprintln!("{}: {}: {e}", o.key, paint_err(word, bad()));
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
