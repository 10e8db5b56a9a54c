//! Structured queries whose filters carry arbitrary operators, levels and values (unicode,
//! control characters, near-misses of real member names), plus arbitrary having values (NaN,
//! infinities), limits and offsets, against a tiny cube. Names are drawn mostly from the cube,
//! so that the fuzzer reaches the member lookup and the executor rather than stopping at
//! "unknown level".
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use lattice_engine::query::{
    Compare, Direction, DrillQuery, Filter, FilterOp, Having, HavingOp, Order, Query,
};
use libfuzzer_sys::fuzz_target;

/// A name: one of the cube's, one of the cube's with bytes changed, or anything.
#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8),
    Mangled(u8, String),
    Any(String),
}

impl Name {
    fn resolve(&self, known: &[String]) -> String {
        let pick = |i: &u8| known.get(*i as usize % known.len().max(1)).cloned();
        match self {
            Name::Known(i) => pick(i).unwrap_or_default(),
            Name::Mangled(i, s) => {
                let mut name = pick(i).unwrap_or_default();
                let cut = s.len() % (name.len() + 1);
                if name.is_char_boundary(cut) {
                    name.insert_str(cut, s);
                }
                name
            }
            Name::Any(s) => s.clone(),
        }
    }
}

/// A filter value: a member of the filtered level, a member with something spliced in, or
/// anything.
#[derive(Debug, Arbitrary)]
enum Value {
    Member(u16),
    Spliced(u16, String),
    Any(String),
}

#[derive(Debug, Arbitrary)]
struct FuzzFilter {
    level: Name,
    op: u8,
    value: Option<Value>,
    values: Option<Vec<Value>>,
}

#[derive(Debug, Arbitrary)]
struct FuzzQuery {
    measures: Vec<Name>,
    rows: Vec<Name>,
    columns: Vec<Name>,
    filters: Vec<FuzzFilter>,
    having: Vec<(Name, u8, f64)>,
    order: Vec<(Name, bool)>,
    limit: Option<u64>,
    offset: u64,
    totals: bool,
    compare: Option<(Name, u32)>,
    drill: Option<Name>,
}

const OPS: [FilterOp; 6] = [
    FilterOp::Eq,
    FilterOp::In,
    FilterOp::NotIn,
    FilterOp::Between,
    FilterOp::Prefix,
    FilterOp::Search,
];
const HAVING: [HavingOp; 6] = [
    HavingOp::Gt,
    HavingOp::Ge,
    HavingOp::Lt,
    HavingOp::Le,
    HavingOp::Eq,
    HavingOp::Ne,
];

fn value(v: &Value, members: &[String]) -> String {
    let pick = |i: &u16| {
        members
            .get(*i as usize % members.len().max(1))
            .cloned()
            .unwrap_or_default()
    };
    match v {
        Value::Member(i) => pick(i),
        Value::Spliced(i, s) => {
            let mut m = pick(i);
            let cut = s.len() % (m.len() + 1);
            if m.is_char_boundary(cut) {
                m.insert_str(cut, s);
            }
            m
        }
        Value::Any(s) => s.clone(),
    }
}

fn filter(f: &FuzzFilter, levels: &[String]) -> Filter {
    let level = f.level.resolve(levels);
    let cube = lattice_fuzz::cube();
    let members: &[String] = cube
        .model()
        .level(&level)
        .map_or(&[], |l| cube.members(l).names.as_slice());
    Filter {
        op: OPS[f.op as usize % OPS.len()],
        value: f.value.as_ref().map(|v| value(v, members)),
        values: f
            .values
            .as_ref()
            .map(|vs| vs.iter().map(|v| value(v, members)).collect()),
        level,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(fq) = FuzzQuery::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let (levels, measures) = lattice_fuzz::names();
    let filters: Vec<Filter> = fq.filters.iter().map(|f| filter(f, levels)).collect();
    let measure_names: Vec<String> = fq.measures.iter().map(|m| m.resolve(measures)).collect();
    let q = Query {
        measures: measure_names.clone(),
        rows: fq.rows.iter().map(|l| l.resolve(levels)).collect(),
        columns: fq.columns.iter().map(|l| l.resolve(levels)).collect(),
        filters: filters.clone(),
        having: fq
            .having
            .iter()
            .map(|(m, op, v)| Having {
                measure: m.resolve(measures),
                op: HAVING[*op as usize % HAVING.len()],
                value: *v,
            })
            .collect(),
        order: fq
            .order
            .iter()
            .map(|(by, desc)| Order {
                by: by.resolve(if *desc { levels } else { measures }),
                dir: if *desc {
                    Direction::Desc
                } else {
                    Direction::Asc
                },
            })
            .collect(),
        limit: fq.limit,
        offset: fq.offset,
        totals: fq.totals,
        compare: fq.compare.as_ref().map(|(l, lag)| Compare {
            level: l.resolve(levels),
            lag: *lag,
        }),
        explain: fq.totals,
    };
    // Through the Rust API as built (NaN and infinities included), then as a client would
    // send it: JSON has no NaN, so serde writes null and reading it back is an error.
    lattice_fuzz::run_query(&q);
    let json = serde_json::to_string(&q).expect("a query serialises");
    let _ = Query::from_json(&json);
    if let Some(level) = &fq.drill {
        lattice_fuzz::run_drill(&DrillQuery {
            level: level.resolve(levels),
            filters,
            measures: measure_names,
            order: Vec::new(),
            limit: fq.limit,
            offset: fq.offset,
        });
    }
});
