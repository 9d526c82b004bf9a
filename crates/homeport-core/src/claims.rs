//! One registry of who holds what: a deploy holds its app (one deploy of an app at a time), a
//! backup, restore or deploy's activation holds an environment (nothing else swaps its databases
//! meanwhile), a config edit holds the config file. A claim is released when its guard drops,
//! whatever path the work took.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// What a claim covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    App(String),
    Env(String, String),
    Config,
}

/// Who holds a scope: what it does and since when.
#[derive(Debug, Clone)]
pub(crate) struct Holder {
    pub what: String,
    /// RFC 3339 UTC.
    pub since: String,
}

#[derive(Default)]
pub(crate) struct Claims {
    /// Held only to look up, insert or remove: never across an await.
    held: Mutex<HashMap<Scope, Holder>>,
    released: tokio::sync::Notify,
}

/// A held claim; dropping it releases the scope.
pub(crate) struct Claim {
    claims: Arc<Claims>,
    scope: Scope,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claims
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.scope);
        self.claims.released.notify_waiters();
    }
}

impl Claims {
    /// Takes `scope` for `what`, or says who holds it.
    pub(crate) fn try_claim(
        self: &Arc<Self>,
        scope: Scope,
        what: impl Into<String>,
    ) -> Result<Claim, Holder> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = held.get(&scope) {
            return Err(h.clone());
        }
        held.insert(
            scope.clone(),
            Holder {
                what: what.into(),
                since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            },
        );
        Ok(Claim {
            claims: Arc::clone(self),
            scope,
        })
    }

    /// Whether someone holds `scope` now.
    pub(crate) fn held(&self, scope: &Scope) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(scope)
    }

    /// Takes `scope` for `what`, waiting while another holds it.
    pub(crate) async fn claim(self: &Arc<Self>, scope: Scope, what: &str) -> Claim {
        loop {
            // Registered before the check, so a release in between is not missed.
            let released = self.released.notified();
            if let Ok(c) = self.try_claim(scope.clone(), what) {
                return c;
            }
            released.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_scope_is_held_once_until_its_claim_drops() {
        let claims = Arc::new(Claims::default());
        let env = || Scope::Env("shop".into(), "production".into());
        let first = claims.try_claim(env(), "backup");
        assert!(first.is_ok());
        let busy = claims.try_claim(env(), "restore").err().map(|h| h.what);
        assert_eq!(busy.as_deref(), Some("backup"));
        assert!(
            claims
                .try_claim(Scope::App("shop".into()), "deploy")
                .is_ok()
        );
        let waiter = {
            let claims = Arc::clone(&claims);
            tokio::spawn(async move { claims.claim(env(), "deploy").await.scope.clone() })
        };
        drop(first);
        assert_eq!(waiter.await.ok(), Some(env()));
        assert!(claims.try_claim(env(), "backup").is_ok(), "released again");
    }
}
