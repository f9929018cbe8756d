//! The public pages for people: the self-referral form (`/refer`), and the one-time link on
//! which a person approves a letter to their employer ([`approval`]). The form's pages: What it checks and stores is
//! [`crate::intake::self_referral`] and [`crate::app::self_referral`]; its routes are
//! `crate::api::refer`.

pub mod approval;
pub mod pages;
