//! Work and Health Gateway: a FHIR R4 interoperability gateway for UK work-and-health services.
//!
//! Pure core, thin shell: [`intake`] validates, [`mapping`] turns practice data into FHIR,
//! [`app`] holds the use cases (no HTTP types), [`store`] persists, [`api`] is the HTTP edge
//! (parse, call one use case, answer). [`caller`] is who asks, a core value that [`auth`] proves
//! from an access token. See README.md for the architecture.

pub mod access;
pub mod alerts;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod caller;
pub mod config;
pub mod consent;
pub mod dashboard;
pub mod delivery;
pub mod directory;
pub mod eligibility;
pub mod export;
pub mod fhir;
pub mod fit_notes;
pub mod ids;
pub mod import;
pub mod intake;
pub mod letters;
pub mod mail;
pub mod monitoring;
pub mod outbound;
pub mod refer;
pub mod reports;
pub mod secret_file;
pub mod services;
pub mod signin;
pub mod store;
pub mod telemetry;
pub mod workflow;
