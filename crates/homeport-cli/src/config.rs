//! `homeport config check`: every problem in the config file at once.

use std::path::Path;

use crate::Failure;

pub fn check(path: &Path) -> Result<(), Failure> {
    match homeport_config::load(path) {
        Ok(cfg) => {
            outln!(
                "{}: ok ({} environments, {} services)",
                path.display(),
                cfg.envs.len(),
                cfg.services.len()
            )?;
            Ok(())
        }
        Err(diags) => {
            for d in &diags.0 {
                eprintln!("{d}");
            }
            let n = diags.0.len();
            Err(Failure::new(
                2,
                format!(
                    "{n} problem{} in {}",
                    if n == 1 { "" } else { "s" },
                    path.display()
                ),
            ))
        }
    }
}
