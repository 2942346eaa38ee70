//! Named leases: the apply lock and the archiver's.

use super::{Caller, Result, Service, ServiceError, WriteAccess, require_admin};
use serde_json::json;

use super::compliance::record;
use crate::clock;
use crate::domain::audit::AuditAction;

impl Service {
    /// Takes a named lock for `holder` for `ttl_seconds`, or says who holds it.
    pub async fn acquire_lock(
        &self,
        caller: &Caller,
        name: &str,
        holder: &str,
        ttl_seconds: i64,
    ) -> Result<()> {
        require_admin(caller, "take the apply lock")?;
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let now_seconds = clock::unix_seconds();
        let held = tx
            .acquire_lock(
                name,
                holder,
                &clock::now(),
                now_seconds,
                now_seconds + ttl_seconds,
            )
            .await?;
        match held {
            Err(lock) => {
                return Err(ServiceError::LockHeld {
                    holder: lock.holder,
                    since: lock.acquired_at,
                });
            }
            // Renewals (the archiver's, every few seconds) would drown the trail.
            Ok(true) => {}
            Ok(false) => {
                record(
                    &mut tx,
                    caller,
                    AuditAction::Lock,
                    "Lock",
                    name,
                    json!({"holder": holder, "ttlSeconds": ttl_seconds}),
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Who holds a named lock; administrators only.
    pub async fn lock_holder(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<Option<(String, String)>> {
        require_admin(caller, "read locks")?;
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let lock = tx.lock_holder(name, clock::unix_seconds()).await?;
        tx.commit().await?;
        Ok(lock.map(|lock| (lock.holder, lock.acquired_at)))
    }

    pub async fn release_lock(&self, caller: &Caller, name: &str, holder: &str) -> Result<bool> {
        require_admin(caller, "release the apply lock")?;
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let released = tx.release_lock(name, holder).await?;
        if released {
            record(
                &mut tx,
                caller,
                AuditAction::Unlock,
                "Lock",
                name,
                json!({"holder": holder}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(released)
    }

    /// Breaks a named lock whoever holds it (`perch unlock`); administrators only. Returns the
    /// holder it had, `None` when nobody held it.
    pub async fn break_lock(&self, caller: &Caller, name: &str) -> Result<Option<String>> {
        require_admin(caller, "break locks")?;
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let broken = tx.break_lock(name).await?;
        if let Some(lock) = &broken {
            record(
                &mut tx,
                caller,
                AuditAction::Unlock,
                "Lock",
                name,
                json!({"holder": lock.holder, "since": lock.acquired_at, "broken": true}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(broken.map(|lock| lock.holder))
    }
}
