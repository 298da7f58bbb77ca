//! Steering an edge's datagrams by the bytes of their connection IDs (see [`CidLayout`]):
//! between the drivers of one process ([`driver_steering`]), and between two generations
//! of its process during an upgrade in place ([`upgrade_steering`]).
//!
//! **Drivers.** An edge may run several drivers, each an endpoint with its own socket in
//! one `SO_REUSEPORT` group and its own thread, so that one connection's bulk transfer does
//! not hold the packets of another connection in the same queue and the same thread. The
//! kernel alone would spread datagrams by 4-tuple: a client whose address changes would
//! reach a driver that does not know its connection, and a client that opens several
//! connections to keep its small exchanges apart from its bulk ones (a veil client's lanes)
//! would find two of them on one driver as often as not. The program reads instead the
//! driver number every ID an edge issues carries, and for a new connection the one the
//! client's own source ID may carry: a veil client with lanes issues its IDs in the same
//! layout, the lane as the core, so lane `i` lands on driver `i mod n`.
//!
//! During an upgrade the old process and its successor listen on one UDP address with
//! `SO_REUSEPORT`. The kernel would spread datagrams over their sockets by 4-tuple, sending
//! half of the old process's connections to a process that does not know them. A classic
//! BPF program attached to the group (`SO_ATTACH_REUSEPORT_CBPF`, no eBPF toolchain needed)
//! instead reads each datagram's destination connection ID and returns the index of a
//! socket of the process that issued it; anything that is not one of our IDs (a new
//! client's first Initial) goes to the successor, which takes every new connection.
//!
//! The program is data: the engine writes it, hosts attach it. Its instructions have the
//! layout of Linux's `struct sock_filter`.
//!
//! Socket indices are the group's order of joining: the old process's `older` sockets are
//! `0..older` and the successor's `newer` ones follow. A returned index past the group's
//! end makes the kernel fall back to its 4-tuple hash, which is what happens before the
//! successor has joined (everything stays with the old process) and after the old process
//! has left (everything is the successor's).

use crate::CidLayout;
use crate::cid::{CID_LEN, GENERATION_BYTE};

/// One classic BPF instruction, as Linux's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BpfInstruction {
    /// Operation.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const LD: u16 = 0x00;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const IMM: u16 = 0x00;
const LDX: u16 = 0x01;
const K: u16 = 0x00;
const A: u16 = 0x10;
const ADD: u16 = 0x00;
const AND: u16 = 0x50;
/// `MISC`: copy the accumulator into X.
const TAX: u16 = 0x00;
const RSH: u16 = 0x70;
const MOD: u16 = 0x90;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
/// Ancillary load of the current CPU: `SKF_AD_OFF + SKF_AD_CPU`.
const LOAD_CPU: u32 = 0xffff_f000 + 36;

/// The ID's length and the generation's offset in it, as BPF operands (both tiny).
#[allow(clippy::cast_possible_truncation)]
const ID_LEN: u32 = CID_LEN as u32;
#[allow(clippy::cast_possible_truncation)]
const GENERATION_AT: u32 = GENERATION_BYTE as u32;
/// Where the owning core's number (big-endian `u16`) sits in an ID.
const CORE_AT: u32 = 3;

/// The long-header QUIC version [`upgrade_steering`] reads IDs of.
const QUIC_V1: u32 = 1;

/// What a program returns to leave the choice to the kernel: an index past the group's
/// end, for which Linux falls back to its 4-tuple hash.
const KERNEL_HASH: u32 = u32::MAX;

/// A jump target while the program is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    LongHeader,
    Generation,
    Successor,
    Predecessor,
    NewConnection,
    Handshake,
    KernelHash,
}

/// An instruction whose jump targets are labels until [`assemble`] resolves them.
enum Step {
    Plain(BpfInstruction),
    Jump {
        code: u16,
        k: u32,
        yes: Option<Label>,
        no: Option<Label>,
    },
    At(Label),
}

fn op(code: u16, k: u32) -> Step {
    Step::Plain(BpfInstruction {
        code,
        jt: 0,
        jf: 0,
        k,
    })
}

/// Jumps to `no` unless the accumulator equals `k` (falls through when it does).
fn require(k: u32, no: Label) -> Step {
    Step::Jump {
        code: JMP | JEQ | K,
        k,
        yes: None,
        no: Some(no),
    }
}

/// Resolves labels into the forward offsets classic BPF jumps take.
fn assemble(steps: &[Step]) -> Vec<BpfInstruction> {
    let mut at = Vec::new();
    let mut index = 0usize;
    for step in steps {
        match step {
            Step::At(label) => at.push((*label, index)),
            _ => index += 1,
        }
    }
    let target = |label: Label| {
        at.iter()
            .find(|(l, _)| *l == label)
            .map(|(_, i)| *i)
            .expect("every label is placed")
    };
    let mut program = Vec::new();
    for step in steps {
        let here = program.len() + 1;
        let offset = |label: Option<Label>| {
            label.map_or(0, |l| {
                u8::try_from(target(l) - here).expect("a short, forward jump")
            })
        };
        match step {
            Step::Plain(instruction) => program.push(*instruction),
            Step::Jump { code, k, yes, no } => {
                let (jt, jf) = (offset(*yes), offset(*no));
                let k = if *code == JMP | JA { u32::from(jt) } else { *k };
                program.push(BpfInstruction {
                    code: *code,
                    jt: if *code == JMP | JA { 0 } else { jt },
                    jf,
                    k,
                });
            }
            Step::At(_) => {}
        }
    }
    program
}

/// The first steps of both programs: a long header jumps to `LongHeader`; a short one
/// falls through with X at its destination ID, which starts at byte 1.
fn short_header_first() -> Vec<Step> {
    vec![
        op(LD | B | ABS, 0),
        Step::Jump {
            code: JMP | JSET | K,
            k: 0x80,
            yes: Some(Label::LongHeader),
            no: None,
        },
        op(LDX | IMM, 1),
    ]
}

/// The program that, with the old process's `older` sockets first in the group and its
/// successor's `newer` next, each process's in the order of its cores, sends datagrams
/// whose destination ID names `generation` (the successor's) to the successor's socket of
/// the ID's core, those of an older ID to the old process's socket of its core, and
/// everything that is not one of our IDs (a new client's first Initials) to one of the
/// successor's sockets, chosen by the CPU the datagram arrived on. `None` if either count
/// is 0.
///
/// Straight to the owning core's socket: a thread-per-core process whose core has finished
/// its drain no longer reads its socket, so the old process's datagrams must not land on
/// another of its cores to be forwarded.
pub fn upgrade_steering(generation: u8, older: u16, newer: u16) -> Option<Vec<BpfInstruction>> {
    if older == 0 || newer == 0 {
        return None;
    }
    // Loads the generation of the ID at `offset`, or jumps to `NewConnection` if the ID
    // is not in our layout.
    let tag = |offset: u32| {
        [
            op(LD | B | ABS, offset),
            op(ALU | RSH | K, 5),
            require(u32::from(CidLayout::TAG), Label::NewConnection),
            op(LD | B | ABS, offset + GENERATION_AT),
        ]
    };
    let mut steps = short_header_first();
    steps.extend(tag(1));
    steps.push(Step::Jump {
        code: JMP | JA,
        k: 0,
        yes: Some(Label::Generation),
        no: None,
    });
    // Long header: version at 1..5, the ID's length at 5, the ID from 6.
    steps.push(Step::At(Label::LongHeader));
    steps.push(op(LDX | IMM, 6));
    steps.push(op(LD | W | ABS, 1));
    steps.push(require(QUIC_V1, Label::NewConnection));
    steps.push(op(LD | B | ABS, 5));
    steps.push(require(ID_LEN, Label::NewConnection));
    steps.extend(tag(6));
    steps.push(Step::At(Label::Generation));
    steps.push(Step::Jump {
        code: JMP | JEQ | K,
        k: u32::from(generation),
        yes: Some(Label::Successor),
        no: Some(Label::Predecessor),
    });
    // The ID's core, relative to X (where the ID starts).
    steps.push(Step::At(Label::Successor));
    steps.extend([
        op(LD | H | IND, CORE_AT),
        op(ALU | MOD | K, u32::from(newer)),
        op(ALU | ADD | K, u32::from(older)),
        op(RET | A, 0),
    ]);
    steps.push(Step::At(Label::Predecessor));
    steps.extend([
        op(LD | H | IND, CORE_AT),
        op(ALU | MOD | K, u32::from(older)),
        op(RET | A, 0),
    ]);
    steps.push(Step::At(Label::NewConnection));
    steps.extend([
        op(LD | W | ABS, LOAD_CPU),
        op(ALU | MOD | K, u32::from(newer)),
        op(ALU | ADD | K, u32::from(older)),
        op(RET | A, 0),
    ]);
    Some(assemble(&steps))
}

/// The program that keeps every datagram of a connection on the socket of the driver that
/// owns it, among `drivers` sockets of one process (numbered in the group's order of
/// joining, each driver issuing IDs with its number as the core of [`CidLayout`]); `None`
/// for 0 drivers.
///
/// - A short header, or a Handshake packet, carries an ID the edge issued: it goes to
///   the ID's core.
/// - An Initial or 0-RTT packet (the client has not heard from the edge yet, or keeps
///   its first Initials' keys) goes by the client's source ID, which stays the same for
///   all of them: to its core modulo `drivers` if it is in our layout (a veil client's
///   lane), otherwise wherever the kernel's 4-tuple hash puts it. The driver that gets a
///   new connection's first Initial owns it and issues its IDs, so its later packets find
///   the same driver by the other rule.
/// - Anything else (another version, an ID not in our layout) is left to the kernel.
pub fn driver_steering(drivers: u16) -> Option<Vec<BpfInstruction>> {
    if drivers == 0 {
        return None;
    }
    // With X at an issued ID: its core, or the kernel's choice if the ID is not ours.
    let issued = |offset: u32| {
        [
            op(LD | B | ABS, offset),
            op(ALU | RSH | K, 5),
            require(u32::from(CidLayout::TAG), Label::KernelHash),
            op(LD | H | IND, CORE_AT),
            op(RET | A, 0),
        ]
    };
    let mut steps = short_header_first();
    steps.extend(issued(1));
    // Long header: version at 1..5; the packet type in bits 4 and 5 of byte 0.
    //# RFC 9000 §17.2: "Long Packet Type: The next two bits (those with a mask of 0x30) of
    //# byte 0 contain a packet type."
    steps.push(Step::At(Label::LongHeader));
    steps.push(op(LD | W | ABS, 1));
    steps.push(require(QUIC_V1, Label::KernelHash));
    steps.push(op(LD | B | ABS, 0));
    steps.push(op(ALU | AND | K, 0x30));
    steps.push(Step::Jump {
        code: JMP | JEQ | K,
        k: 0x20,
        yes: Some(Label::Handshake),
        no: None,
    });
    // Initial, 0-RTT: the destination ID's length at 5, the ID, then the source ID's
    // length and the source ID. X = where the source ID's length is.
    steps.extend([
        op(LD | B | ABS, 5),
        op(ALU | ADD | K, 6),
        op(MISC | TAX, 0),
        op(LD | B | IND, 0),
        Step::Jump {
            code: JMP | JGE | K,
            k: CORE_AT + 2,
            yes: None,
            no: Some(Label::KernelHash),
        },
        op(LD | B | IND, 1),
        op(ALU | RSH | K, 5),
        require(u32::from(CidLayout::TAG), Label::KernelHash),
        op(LD | H | IND, 1 + CORE_AT),
        op(ALU | MOD | K, u32::from(drivers)),
        op(RET | A, 0),
    ]);
    // Handshake: the destination ID (the edge's) from 6.
    steps.push(Step::At(Label::Handshake));
    steps.push(op(LD | B | ABS, 5));
    steps.push(require(ID_LEN, Label::KernelHash));
    steps.push(op(LDX | IMM, 6));
    steps.extend(issued(6));
    steps.push(Step::At(Label::KernelHash));
    steps.push(op(RET | K, KERNEL_HASH));
    Some(assemble(&steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `program` over `packet` as the kernel would for the instructions it uses; a
    /// load past the end returns 0, as the kernel's does.
    fn run(program: &[BpfInstruction], packet: &[u8], cpu: u32) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let i = program[pc];
            pc += 1;
            match i.code {
                c if c == LD | B | ABS => match packet.get(i.k as usize) {
                    Some(byte) => a = u32::from(*byte),
                    None => return 0,
                },
                c if c == LD | W | ABS && i.k == LOAD_CPU => a = cpu,
                c if c == LDX | IMM => x = i.k,
                c if c == MISC | TAX => x = a,
                c if c == LD | B | IND => match packet.get((x + i.k) as usize) {
                    Some(byte) => a = u32::from(*byte),
                    None => return 0,
                },
                c if c == LD | H | IND => {
                    let at = (x + i.k) as usize;
                    match packet.get(at..at + 2) {
                        Some(half) => a = u32::from(u16::from_be_bytes([half[0], half[1]])),
                        None => return 0,
                    }
                }
                c if c == LD | W | ABS => match packet.get(i.k as usize..i.k as usize + 4) {
                    Some(word) => a = u32::from_be_bytes(word.try_into().expect("4 bytes")),
                    None => return 0,
                },
                c if c == ALU | RSH | K => a >>= i.k,
                c if c == ALU | MOD | K => a %= i.k,
                c if c == ALU | ADD | K => a += i.k,
                c if c == ALU | AND | K => a &= i.k,
                c if c == RET | A => return a,
                c if c == RET | K => return i.k,
                c if c == JMP | JGE | K => {
                    pc += usize::from(if a >= i.k { i.jt } else { i.jf });
                }
                c if c == JMP | JA => pc += i.k as usize,
                c if c == JMP | JEQ | K => {
                    pc += usize::from(if a == i.k { i.jt } else { i.jf });
                }
                c if c == JMP | JSET | K => {
                    pc += usize::from(if a & i.k != 0 { i.jt } else { i.jf });
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn short(id: &[u8]) -> Vec<u8> {
        [&[0x41][..], id, &[0; 30]].concat()
    }

    fn long(first: u8, version: u32, id: &[u8]) -> Vec<u8> {
        let len = u8::try_from(id.len()).expect("short ID");
        [&[first][..], &version.to_be_bytes(), &[len], id, &[0; 30]].concat()
    }

    #[test]
    fn ids_go_to_their_core_in_the_process_of_their_generation_and_the_rest_to_the_successor() {
        let (older, newer) = (2, 3);
        let program = upgrade_steering(8, older, newer).expect("counts above 0");
        for core in 0..3u16 {
            let old_id = CidLayout::new(core % 2, 2)
                .expect("valid")
                .with_server(5, 7)
                .encode([0xaa; 16]);
            let new_id = CidLayout::new(core, 3)
                .expect("valid")
                .with_server(5, 8)
                .encode([0x55; 16]);
            for cpu in 0..6 {
                let predecessor = u32::from(core % 2);
                let successor = u32::from(older + core);
                let anyone = u32::from(older) + cpu % u32::from(newer);
                assert_eq!(run(&program, &short(&old_id), cpu), predecessor);
                assert_eq!(run(&program, &long(0xe0, 1, &old_id), cpu), predecessor);
                assert_eq!(run(&program, &short(&new_id), cpu), successor);
                assert_eq!(run(&program, &long(0xc0, 1, &new_id), cpu), successor);
                // A new client's own first ID, of another length or without the tag.
                assert_eq!(run(&program, &long(0xc0, 1, &[0xff; 8]), cpu), anyone);
                assert_eq!(run(&program, &long(0xc0, 1, &[0xff; 16]), cpu), anyone);
                assert_eq!(run(&program, &short(&[0xff; 16]), cpu), anyone);
                // Another version is answered by the successor.
                assert_eq!(
                    run(&program, &long(0xc0, 0x6b33_43cf, &old_id), cpu),
                    anyone
                );
            }
        }
    }

    /// An Initial (`first` = 0xc0) or 0-RTT (0xd0) packet from a client with these IDs.
    fn initial(first: u8, dcid: &[u8], scid: &[u8]) -> Vec<u8> {
        let len = |id: &[u8]| u8::try_from(id.len()).expect("short ID");
        [
            &[first, 0, 0, 0, 1, len(dcid)][..],
            dcid,
            &[len(scid)],
            scid,
            &[0; 30],
        ]
        .concat()
    }

    #[test]
    fn a_connection_stays_with_the_driver_that_issued_its_ids() {
        let program = driver_steering(3).expect("drivers");
        for core in 0..3u16 {
            let id = CidLayout::new(core, 3)
                .expect("valid")
                .with_server(4, 2)
                .encode([0x5a; 16]);
            assert_eq!(run(&program, &short(&id), 0), u32::from(core));
            assert_eq!(run(&program, &long(0xe0, 1, &id), 0), u32::from(core));
        }
        // Not ours: a short header without the tag, another version, a Handshake to an ID
        // of another length.
        assert_eq!(run(&program, &short(&[0xff; 16]), 0), KERNEL_HASH);
        let ours = CidLayout::new(1, 3).expect("valid").encode([0; 16]);
        assert_eq!(
            run(&program, &long(0xe0, 0x6b33_43cf, &ours), 0),
            KERNEL_HASH
        );
        assert_eq!(run(&program, &long(0xe0, 1, &ours[..8]), 0), KERNEL_HASH);
    }

    #[test]
    fn a_new_connection_goes_by_the_lane_in_the_clients_source_id() {
        let program = driver_steering(2).expect("drivers");
        for lane in 0..5u16 {
            let scid = CidLayout::new(lane, 5).expect("valid").encode([0x33; 16]);
            let want = u32::from(lane % 2);
            // Whatever the destination: a random one first, then the edge's (after its
            // Initial), of any length; and for 0-RTT.
            let edge_id = CidLayout::new(1 - lane % 2, 2)
                .expect("valid")
                .encode([0x44; 16]);
            for dcid in [&[0xee; 8][..], &[0x21; 16], &edge_id, &[]] {
                assert_eq!(run(&program, &initial(0xc0, dcid, &scid), 0), want);
                assert_eq!(run(&program, &initial(0xd0, dcid, &scid), 0), want);
            }
        }
        // Other clients' source IDs (random, short, empty) leave it to the kernel.
        for scid in [&[0xee; 8][..], &[0x21; 4], &[]] {
            assert_eq!(
                run(&program, &initial(0xc0, &[0xee; 8], scid), 0),
                KERNEL_HASH
            );
        }
    }

    #[test]
    fn no_program_for_an_empty_side() {
        assert!(driver_steering(0).is_none());
        assert!(upgrade_steering(1, 0, 1).is_none());
        assert!(upgrade_steering(1, 1, 0).is_none());
    }
}
