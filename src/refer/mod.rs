//! The public self-referral form (`/refer`): its pages. What it checks and stores is
//! [`crate::intake::self_referral`] and [`crate::app::self_referral`]; its routes are
//! `crate::api::refer`.

pub mod pages;
