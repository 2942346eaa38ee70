//! The embedded target: the service layer in process, over `--db`.

use serde_json::{Map, Value};

use super::{BoxFuture, Target, TargetError, live_from};
use crate::domain::{ComplianceConfiguration, Kind};
use crate::plan::{Action, Live, Verb};
use crate::service::{APPLY_LOCK, Caller, Object, Ownership, Precondition, Service, ServiceError};
use crate::store::Store;

pub struct EmbeddedTarget {
    service: Service,
    caller: Caller,
    url: String,
}

impl EmbeddedTarget {
    /// Opens (and migrates) the database at `url`, acting as the local operator.
    pub async fn open(url: &str) -> Result<EmbeddedTarget, TargetError> {
        let store = Store::open(url).await.map_err(|error| {
            TargetError::Unreachable(format!("{error}: {}", source_chain(&error)))
        })?;
        Ok(EmbeddedTarget {
            service: Service::new(store),
            caller: Caller::local_operator(),
            url: url.to_owned(),
        })
    }

    pub async fn close(&self) {
        self.service.store().close().await;
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}

pub(crate) fn rejected(error: ServiceError) -> TargetError {
    match error {
        ServiceError::LockHeld { holder, since } => TargetError::LockHeld { holder, since },
        ServiceError::Store(store) => {
            TargetError::Unreachable(format!("{store}: {}", source_chain(&store)))
        }
        other => {
            let code = match &other {
                ServiceError::Invalid { code, .. }
                | ServiceError::Rule { code, .. }
                | ServiceError::Conflict { code, .. } => (*code).to_owned(),
                ServiceError::NotFound { .. } => "not_found".to_owned(),
                ServiceError::Forbidden { .. } => "forbidden".to_owned(),
                ServiceError::VersionMismatch { .. } => "version_mismatch".to_owned(),
                _ => "internal".to_owned(),
            };
            TargetError::Rejected {
                code,
                message: other.to_string(),
            }
        }
    }
}

fn object_of(action: &Action) -> Result<&Map<String, Value>, TargetError> {
    action.object.as_ref().ok_or_else(|| TargetError::Rejected {
        code: "invalid_plan".to_owned(),
        message: format!(
            "the plan's {} of {} `{}` carries no object",
            describe_verb(action.action),
            action.kind,
            action.name
        ),
    })
}

fn describe_verb(verb: Verb) -> &'static str {
    match verb {
        Verb::Create => "create",
        Verb::Set => "set",
        Verb::Remove => "remove",
    }
}

impl Target for EmbeddedTarget {
    fn describe(&self) -> String {
        format!("embedded store {}", self.url)
    }

    fn live(&self) -> BoxFuture<'_, Result<Live, TargetError>> {
        Box::pin(async move {
            let state = self
                .service
                .state(&self.caller)
                .await
                .map_err(|error| match error {
                    ServiceError::Store(store) => {
                        TargetError::Unreadable(format!("{store}: {}", source_chain(&store)))
                    }
                    other => rejected(other),
                })?;
            let mut objects = Vec::with_capacity(state.objects.len() + 1);
            for stored in state.objects {
                let kind = stored.spec.kind();
                let Ok(Value::Object(fields)) = serde_json::to_value(&stored) else {
                    return Err(TargetError::Unreadable(format!(
                        "{kind} `{}` does not serialise",
                        stored.spec.name()
                    )));
                };
                objects.push((kind, fields));
            }
            if let Ok(Value::Object(fields)) = serde_json::to_value(&state.compliance) {
                objects.push((Kind::ComplianceConfiguration, fields));
            }
            live_from(objects)
        })
    }

    fn execute<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let ownership = Ownership::Managed {
                protect: action.protect,
            };
            let precondition = action
                .expected_version
                .map_or(Precondition::None, Precondition::Version);
            if action.kind == Kind::ComplianceConfiguration {
                let fields = object_of(action)?;
                let configuration: ComplianceConfiguration =
                    serde_json::from_value(Value::Object(fields.clone())).map_err(|error| {
                        TargetError::Rejected {
                            code: "invalid_field".to_owned(),
                            message: error.to_string(),
                        }
                    })?;
                self.service
                    .set_compliance(&self.caller, configuration, precondition, ownership)
                    .await
                    .map_err(rejected)?;
                return Ok(());
            }
            match action.action {
                Verb::Create | Verb::Set => {
                    let fields = object_of(action)?;
                    let object = Object::from_json(action.kind, Value::Object(fields.clone()))
                        .map_err(|error| rejected(ServiceError::from_json_path(error)))?;
                    if action.action == Verb::Create {
                        self.service
                            .create(&self.caller, object, ownership)
                            .await
                            .map_err(rejected)?;
                    } else {
                        self.service
                            .replace(&self.caller, &action.name, object, precondition, ownership)
                            .await
                            .map_err(rejected)?;
                    }
                }
                Verb::Remove => {
                    match self
                        .service
                        .remove(&self.caller, action.kind, &action.name, precondition, false)
                        .await
                    {
                        Ok(()) | Err(ServiceError::NotFound { .. }) => {}
                        Err(error) => return Err(rejected(error)),
                    }
                }
            }
            Ok(())
        })
    }

    fn lock<'a>(
        &'a self,
        holder: &'a str,
        ttl_seconds: i64,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            self.service
                .acquire_lock(&self.caller, APPLY_LOCK, holder, ttl_seconds)
                .await
                .map_err(rejected)
        })
    }

    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            self.service
                .release_lock(&self.caller, APPLY_LOCK, holder)
                .await
                .map(|_| ())
                .map_err(rejected)
        })
    }
}
