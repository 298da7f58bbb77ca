//! Codec benchmarks (placeholder until the codecs land).
#![allow(missing_docs)]
use criterion::{Criterion, criterion_group, criterion_main};
use veil_proto::varint::VarInt;

fn varint(c: &mut Criterion) {
    c.bench_function("varint/decode", |b| {
        b.iter(|| VarInt::decode(std::hint::black_box(&[0x9d, 0x7f, 0x3e, 0x7d])));
    });
}

criterion_group!(benches, varint);
criterion_main!(benches);
