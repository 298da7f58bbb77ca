//! Throughput of the codecs that sit on every tunnelled packet.
//!
//! Run: `cargo bench -p veil-proto --bench codecs`. Figures are recorded in
//! `docs/PERFORMANCE.md`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use veil_proto::capsule::{self, CapsuleAssembler, Decoder, DecoderConfig, Event};
use veil_proto::datagram;
use veil_proto::ip::{self, IpPacket};
use veil_proto::varint::VarInt;

/// A capsule stream of DATAGRAM capsules, each carrying `payload_len` UDP bytes.
fn datagram_capsule_stream(payload_len: usize, total: usize) -> Vec<u8> {
    let payload = vec![0xa5; payload_len];
    let mut one = vec![0; payload_len + 16];
    let len = capsule::encode_datagram(VarInt::ZERO, &payload, &mut one).expect("fits");
    one.truncate(len);
    one.iter()
        .copied()
        .cycle()
        .take(total / len * len)
        .collect()
}

/// Feeds `stream` to a decoder in `chunk`-sized reads, as a QUIC stream would deliver it,
/// and returns the number of value bytes seen.
fn decode_stream(stream: &[u8], chunk: usize) -> usize {
    let mut decoder = Decoder::new(DecoderConfig::CONNECT_UDP);
    let mut value_bytes = 0;
    for mut input in stream.chunks(chunk) {
        loop {
            let (used, event) = decoder.decode(input).expect("valid stream");
            input = &input[used..];
            match event {
                Some(Event::Value(v)) => value_bytes += v.len(),
                Some(_) => {}
                None => break,
            }
        }
    }
    value_bytes
}

fn assemble_stream(stream: &[u8], chunk: usize) -> usize {
    let mut assembler = CapsuleAssembler::<2048>::new(DecoderConfig::CONNECT_UDP);
    let mut capsules = 0;
    for mut input in stream.chunks(chunk) {
        loop {
            let (used, capsule) = assembler.decode(input).expect("valid stream");
            input = &input[used..];
            if capsule.is_none() {
                break;
            }
            capsules += 1;
        }
    }
    capsules
}

fn capsule_decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("capsule");
    for payload_len in [64, 1200] {
        let stream = datagram_capsule_stream(payload_len, 1 << 20);
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_function(format!("decode/{payload_len}B-capsules/16KiB-reads"), |b| {
            b.iter(|| decode_stream(black_box(&stream), 16 * 1024));
        });
        group.bench_function(
            format!("assemble/{payload_len}B-capsules/16KiB-reads"),
            |b| {
                b.iter(|| assemble_stream(black_box(&stream), 16 * 1024));
            },
        );
    }
    // Baseline: copying the same stream once is what "memory speed" means on this machine.
    let stream = datagram_capsule_stream(1200, 1 << 20);
    let mut sink = vec![0; stream.len()];
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("baseline/memcpy-1MiB", |b| {
        b.iter(|| sink.copy_from_slice(black_box(&stream)));
    });
    group.finish();
}

fn datagram_demux(c: &mut Criterion) {
    let mut group = c.benchmark_group("datagram");
    let payload = [0x5a; 1200];
    let mut frame = [0; 1216];
    // Stream 4 * 4_000: a two-byte Quarter Stream ID, as on a busy connection.
    let len = datagram::encode(16_000, VarInt::ZERO, &payload, &mut frame).expect("fits");
    let frame = &frame[..len];
    group.throughput(Throughput::Elements(1));
    group.bench_function("demux/1200B", |b| {
        b.iter(|| datagram::demux(black_box(frame)).expect("valid"));
    });
    let mut buf = [0; datagram::MAX_PREFIX_LEN + 1200];
    group.bench_function("encode_in_headroom/1200B", |b| {
        b.iter(|| {
            datagram::encode_in_headroom(
                black_box(&mut buf),
                datagram::MAX_PREFIX_LEN,
                16_000,
                VarInt::ZERO,
            )
            .expect("fits")
        });
    });
    group.finish();
}

fn ip_view(c: &mut Criterion) {
    let mut group = c.benchmark_group("ip");
    group.throughput(Throughput::Elements(1));
    let payload = [0x42; 1200];
    for (name, src, dst) in [
        ("v4", "192.0.2.1:5353", "198.51.100.7:53"),
        ("v6", "[2001:db8::1]:5353", "[2001:db8::7]:53"),
    ] {
        let mut packet = [0; 1300];
        let len = ip::encode_udp(
            &mut packet,
            src.parse().expect("address"),
            dst.parse().expect("address"),
            &payload,
        )
        .expect("fits");
        let packet = &packet[..len];
        group.bench_function(format!("parse/udp-{name}/1200B"), |b| {
            b.iter(|| IpPacket::new_checked(black_box(packet)).expect("valid"));
        });
        group.bench_function(format!("parse+flow_key/udp-{name}/1200B"), |b| {
            b.iter(|| {
                IpPacket::new_checked(black_box(packet))
                    .expect("valid")
                    .flow_key()
            });
        });
        // Reference: etherparse's own slicer on the same bytes (it checks less).
        group.bench_function(format!("etherparse-slice/udp-{name}/1200B"), |b| {
            b.iter(|| etherparse::SlicedPacket::from_ip(black_box(packet)).expect("valid"));
        });
    }
    group.finish();
}

fn varint(c: &mut Criterion) {
    let mut group = c.benchmark_group("varint");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode/4B", |b| {
        b.iter(|| VarInt::decode(black_box(&[0x9d, 0x7f, 0x3e, 0x7d])));
    });
    group.finish();
}

criterion_group!(benches, capsule_decoder, datagram_demux, ip_view, varint);
criterion_main!(benches);
