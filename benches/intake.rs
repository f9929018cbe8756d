//! Validate + map one practice referral (the CPU work of the intake path, without I/O).
//!
//! cargo bench --bench intake

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;
use std::hint::black_box;
use whg::config::Config;
use whg::intake::{IntakeContext, practice_referral};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/referrals/valid/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let config = Config::defaults();
    let ctx = IntakeContext {
        now: chrono::Utc::now(),
        config: &config,
    };
    let referral = fixture("01-gp-work-stress-off-sick");
    let body = serde_json::to_vec(&referral).unwrap();
    assert!(practice_referral(&referral, &ctx).is_ok());

    c.bench_function("validate+map one referral", |b| {
        b.iter(|| practice_referral(black_box(&referral), &ctx).unwrap())
    });
    c.bench_function("parse+validate+map one referral from bytes", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&body)).unwrap();
            practice_referral(&v, &ctx).unwrap()
        })
    });
    let invalid = fixture("01-gp-work-stress-off-sick");
    let mut invalid = invalid;
    invalid["patient"]["nhsNumber"] = Value::from("9990000019");
    c.bench_function("validate one invalid referral", |b| {
        b.iter(|| practice_referral(black_box(&invalid), &ctx).unwrap_err())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
