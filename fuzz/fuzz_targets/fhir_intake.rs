//! Any bytes as FHIR input, through the paths the gateway takes: a BaRS message (FHIR JSON rules,
//! strict R4 parsing, message rules, normalisation), a fit-note Observation, and an ITK3
//! acknowledgement read from the MESH inbox. Each answers with a submission, issues or nothing,
//! never a panic that escapes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{LazyLock, Once};
use whg::config::Config;
use whg::intake::{bars, fhir_fit_note};

static CONFIG: LazyLock<Config> = LazyLock::new(Config::defaults);
static CONTAINED_PANICS_ARE_QUIET: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    // fhirbolt 0.4 (unmaintained) panics on some malformed shapes; the gateway contains those in
    // `fhir::resource::parse_strict` and answers 400. libFuzzer's panic hook would abort even on
    // a contained panic, so it is replaced: a panic that escapes the gateway's own containment
    // still aborts, through libfuzzer-sys's catch_unwind, and is reported as a crash.
    CONTAINED_PANICS_ARE_QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let _ = whg::delivery::mesh::read_ack(data);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let ctx = CONFIG.intake_now();
        let _ = bars::validate(data, &value, &ctx);
        let _ = fhir_fit_note(&value, "C88901", &ctx);
    }
});
