//! Any bytes as a practice referral: validation and mapping answer with a submission or issues,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use whg::config::Config;
use whg::intake::practice_referral;

static CONFIG: LazyLock<Config> = LazyLock::new(Config::defaults);

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let ctx = CONFIG.intake_now();
        if let Ok(submission) = practice_referral(&value, &ctx) {
            let _ = submission.transaction_bundle();
        }
    }
});
