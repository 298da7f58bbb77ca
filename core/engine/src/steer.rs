//! Steering an edge's datagrams between two generations of its process during an upgrade
//! in place, by the generation byte of the connection ID (see [`CidLayout`]).
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
const RSH: u16 = 0x70;
const MOD: u16 = 0x90;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
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

/// A jump target while the program is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    LongHeader,
    Generation,
    Successor,
    Predecessor,
    NewConnection,
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
    let mut steps = vec![
        op(LD | B | ABS, 0),
        Step::Jump {
            code: JMP | JSET | K,
            k: 0x80,
            yes: Some(Label::LongHeader),
            no: None,
        },
    ];
    // Short header: the ID starts at byte 1; X keeps where.
    steps.push(op(LDX | IMM, 1));
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
                c if c == RET | A => return a,
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

    #[test]
    fn no_program_for_an_empty_side() {
        assert!(upgrade_steering(1, 0, 1).is_none());
        assert!(upgrade_steering(1, 1, 0).is_none());
    }
}
