//! The MESH quarantine, for information governance: messages from the gateway's MESH inbox that
//! answered none of its letters, kept for review. They come from any mailbox and may be about
//! anyone, so only information-governance clients review them, and reading one's content is
//! audited like any read of what may be personal data.

use super::Caller;
use crate::audit::{self, Event, Kind};
use crate::caller::Role;
use crate::store::{QuarantinedMessage, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error(
        "the MESH quarantine holds messages from any mailbox about anyone: only information-governance clients review it"
    )]
    NotReviewer,
    #[error("no quarantined MESH message has this id")]
    UnknownMessage,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether the caller reviews the quarantine: checked by each use case here, and by the routes
/// before they read anything of the request.
pub fn reviewer(caller: &Caller<'_>) -> Result<(), QuarantineError> {
    match caller.principal.role {
        Role::InformationGovernance => Ok(()),
        Role::Practice
        | Role::TalkingTherapies
        | Role::Physiotherapy
        | Role::SecondaryCare
        | Role::VoluntarySector
        | Role::Employer
        | Role::Service
        | Role::Commissioner
        | Role::Operations => Err(QuarantineError::NotReviewer),
    }
}

/// `count` quarantined messages from `offset`, newest first, without their content, and how
/// many there are.
pub async fn list(
    store: &dyn Store,
    caller: &Caller<'_>,
    count: u32,
    offset: u32,
) -> Result<(u64, Vec<QuarantinedMessage>), QuarantineError> {
    reviewer(caller)?;
    Ok(store.quarantined_mesh_messages(count, offset).await?)
}

/// One quarantined message with its content (none when it was too large to read); the read is
/// recorded in the audit trail before the content is handed over.
pub async fn show(
    store: &dyn Store,
    caller: &Caller<'_>,
    id: &str,
) -> Result<(QuarantinedMessage, Option<Vec<u8>>), QuarantineError> {
    reviewer(caller)?;
    let (message, content) = store
        .quarantined_mesh_message(id)
        .await?
        .ok_or(QuarantineError::UnknownMessage)?;
    let event = audit::audit_event(&Event {
        kind: Kind::Read,
        principal: Some(caller.principal),
        patient: None,
        entities: Vec::new(),
        decision: None,
        permitted: true,
        description: "read a quarantined MESH message".into(),
        at: chrono::Utc::now(),
        request_id: caller.request_id.clone(),
    });
    store
        .create(vec![audit::with_mesh_message(
            event,
            &message.id,
            "the quarantined message read",
        )])
        .await?;
    Ok((message, content))
}
