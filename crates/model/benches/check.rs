//! How long `charter check` takes: `compile` on a large generated spec
//! (200 entities x 20 fields, references, rules, permissions through paths)
//! and on the taskboard example.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::fmt::Write as _;
use std::hint::black_box;

const TASKBOARD: &str = include_str!("../../../examples/taskboard/app.md");

/// A spec with `entities` entities of `fields` fields each. Every entity
/// after the first has a `parent` chain to follow in permissions, and one
/// field in nine is a reference to an earlier entity.
fn big_spec(entities: usize, fields: usize) -> String {
    let mut s = String::from(
        "# Bench\n\nA generated spec.\n\n## Settings\n- signup: invite\n- session lifetime: 14 days\n\n## Roles\n- member (default): everyone\n- admin: staff\n- auditor: reads\n\n## Entities\n\n",
    );
    for e in 0..entities {
        let _ = write!(s, "### Entity{e}\nEntity number {e}.\n\n| field | type | rules | description |\n|---|---|---|---|\n");
        let _ = writeln!(s, "| owner | User | required, default me, read only | who made it |");
        let parent = if e > 0 {
            let _ = writeln!(s, "| parent | Entity{} | on delete cascade | |", e - 1);
            true
        } else {
            let _ = writeln!(s, "| parent | text | | |");
            false
        };
        for f in 2..fields {
            let row = match f % 9 {
                0 => format!("| f{f} | text | required, 1..200, pattern \"[a-z ]+\", default \"abc\" | text |"),
                1 => format!("| f{f} | int | min 0, max 1000, default 5 | |"),
                2 => format!("| f{f} | decimal | 0..99999.99, default 0.00 | |"),
                3 => format!("| f{f} | bool | default false | |"),
                4 => format!("| f{f} | date | 2000-01-01..2099-12-31, default today | |"),
                5 => format!("| f{f} | datetime | default now, read only | |"),
                6 => format!("| f{f} | enum(low, normal, high) | default normal | |"),
                7 => format!("| f{f} | email | unique, max 254 | |"),
                _ if e > 0 => format!("| f{f} | Entity{} | on delete set null | |", (e * 7 + f) % e),
                _ => format!("| f{f} | url | | |"),
            };
            s.push_str(&row);
            s.push('\n');
        }
        s.push_str("\nPermissions:\n");
        if parent {
            s.push_str("- read: owner = me or admin or parent.owner = me\n");
            s.push_str("- update: owner = me and (f3 = false or admin) and parent.f6 != high\n");
            // `Entity0.parent` is text, so two steps start at `Entity2`.
            let grandparent = if e > 1 { "parent.parent.owner" } else { "parent.owner" };
            let _ = writeln!(s, "- delete: {grandparent} = me or (admin and not auditor)");
        } else {
            s.push_str("- read: owner = me or admin\n- update, delete: owner = me\n");
        }
        s.push_str("- create: signed in\n\n");
    }
    s
}

fn bench(c: &mut Criterion) {
    let big = big_spec(200, 20);
    let compiled = charter_model::compile(&big);
    assert!(compiled.model.is_some(), "the generated spec must compile: {:?}", compiled.diagnostics.first());
    assert!(charter_model::compile(TASKBOARD).model.is_some());

    let mut group = c.benchmark_group("compile");
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.bench_function("200 entities x 20 fields", |b| b.iter(|| charter_model::compile(black_box(&big))));
    group.throughput(Throughput::Bytes(TASKBOARD.len() as u64));
    group.bench_function("taskboard", |b| b.iter(|| charter_model::compile(black_box(TASKBOARD))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
