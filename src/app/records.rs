//! Reading and searching what is stored, as FHIR: every read, version read and search goes
//! through the one tenancy rule and consent decision ([`crate::access::Guard`]), which audits
//! what it answered.

use serde_json::Value;

use super::Caller;
use crate::access::AccessError;
use crate::fhir::search::SearchRequest;
use crate::store::{SearchPage, Store};

/// The current version of `resource_type/id`, if the caller may read it.
pub async fn read(
    store: &dyn Store,
    caller: &Caller<'_>,
    resource_type: &str,
    id: &str,
) -> Result<Value, AccessError> {
    caller.guard(store).fetch(resource_type, id).await
}

/// Version `version` of `resource_type/id`, if the caller may read it (a person's details only
/// in the versions the caller's own records came with).
pub async fn read_version(
    store: &dyn Store,
    caller: &Caller<'_>,
    resource_type: &str,
    id: &str,
    version: i64,
) -> Result<Value, AccessError> {
    caller
        .guard(store)
        .fetch_version(resource_type, id, version)
        .await
}

/// The person with NHS number `nhs_number`, if the caller may see them (see
/// [`crate::access::Guard::find_person`]).
pub async fn patient_by_nhs_number(
    store: &dyn Store,
    caller: &Caller<'_>,
    nhs_number: &str,
) -> Result<Option<Value>, AccessError> {
    caller.guard(store).find_person(nhs_number).await
}

/// Every version of `resource_type/id` the caller may read, newest first (FHIR history).
pub async fn history(
    store: &dyn Store,
    caller: &Caller<'_>,
    resource_type: &str,
    id: &str,
) -> Result<Vec<Value>, AccessError> {
    caller.guard(store).history(resource_type, id).await
}

/// One page of `request`'s matches among what the caller may see: records consent withholds
/// are neither returned nor counted.
pub async fn search(
    store: &dyn Store,
    caller: &Caller<'_>,
    request: SearchRequest,
) -> Result<SearchPage, AccessError> {
    caller.guard(store).search(request).await
}

/// Whether the store can take reads and writes now (the readiness probe).
pub async fn ready(store: &dyn Store) -> Result<(), crate::store::StoreError> {
    store.ready().await
}
