//! The attack suite (issue "Trust boundaries"): each test does what one attacker does over HTTP,
//! with only its own legitimate token, against the real binary and a real database, and asserts
//! both the refusal and that nothing changed. The numbers are the attacks in `docs/security.md`'s
//! threat model.

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod break_glass;
mod consent;
mod demographics;
mod disclosure;
mod files;
mod logs;
mod mesh;
mod messages;
mod outbound;
mod shared_records;
mod tenancy;
mod token;
