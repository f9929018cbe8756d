//! Any bytes as a practice fit note: the DWP's rules and the mapping answer, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use whg::config::Config;
use whg::intake::practice_fit_note;

static CONFIG: LazyLock<Config> = LazyLock::new(Config::defaults);

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let ctx = CONFIG.intake_now();
        if let Ok((submission, note)) = practice_fit_note(&value, &ctx) {
            let _ = submission.transaction_bundle();
            let _ =
                whg::intake::fit_note::duration_rule(note.start, note.end, note.start, "period");
        }
    }
});
