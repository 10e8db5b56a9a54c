//! `searches:`: saved target-customer searches, the API's documents (docs/searches.md) written
//! in the definition. Everything that the definition alone can show is checked here, at the
//! line and column: the name, the shape of each condition, every level, measure and operator,
//! the form of the values and the periods. Whether the members and periods named exist is
//! known only with the data; the engine checks that when it builds the cube.

use serde_saphyr::Spanned;

use super::{Ctx, pos};
use crate::diag::Pos;
use crate::model::*;
use crate::raw::*;

/// The entity a search lists when it names none.
const DEFAULT_ENTITY: &str = "customer.id";
/// The period level of an atom that names none.
const DEFAULT_PERIOD: &str = "time.month";
/// Conditions nest at most this deep (as the engine's).
const MAX_DEPTH: usize = 32;
const MEMBER_OPS: [&str; 6] = ["eq", "in", "not_in", "between", "prefix", "search"];
const MEASURE_OPS: [&str; 6] = ["gt", "ge", "lt", "le", "eq", "ne"];

/// `measure_names` are the names the file defines (a measure with errors of its own is still
/// a name a search may use, so its errors are not repeated here).
pub(super) fn searches(
    raw: Option<&SpannedMap<RawSearch>>,
    model: &Model,
    measure_names: &[&str],
    ctx: &mut Ctx<'_>,
) -> Vec<SavedSearch> {
    let mut out = Vec::new();
    for (name, s) in raw.iter().flat_map(|m| &m.0) {
        let base = format!("searches.{}", name.value);
        let n = &name.value;
        let ok_name = !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok_name {
            ctx.report(
                pos(name),
                base.clone(),
                crate::diag::DefError::BadName {
                    what: "search",
                    name: n.clone(),
                    reason: "a search's name has 1 to 64 letters, digits, '_' or '-' (it is a path segment of the API)",
                },
            );
        }
        let mut c = Checker {
            ctx: &mut *ctx,
            model,
            measure_names,
            search: n,
            errors: 0,
        };
        let entity = s
            .entity
            .as_ref()
            .map_or(DEFAULT_ENTITY, |e| e.value.as_str())
            .to_string();
        match &s.entity {
            Some(e) => {
                c.level(&entity, pos(e), &format!("{base}.entity"), false);
            }
            None if model.level(DEFAULT_ENTITY).is_none() => c.invalid(
                pos(name),
                &base,
                format!("a search lists the members of its `entity`, by default '{DEFAULT_ENTITY}', which this cube does not have; name one (`entity: dimension.level`)"),
            ),
            None => {}
        }
        let condition = c.condition(&s.condition, format!("{base}.where"), 0);
        if c.errors == 0
            && ok_name
            && let Some(condition) = condition
        {
            out.push(SavedSearch {
                name: n.clone(),
                description: s.description.clone(),
                entity,
                condition,
                pos: pos(name),
            });
        }
    }
    out
}

struct Checker<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    model: &'c Model,
    measure_names: &'c [&'c str],
    search: &'c str,
    errors: usize,
}

impl Checker<'_, '_> {
    fn invalid(&mut self, at: Pos, path: &str, message: impl Into<String>) {
        self.errors += 1;
        self.ctx.invalid(at, path, message);
    }

    fn scope(&self) -> Option<String> {
        Some(format!("search '{}'", self.search))
    }

    /// Resolves a level; `time` says whether it must be a time level (periods) or must not
    /// be one (entities, member atoms, filters may be either: `None`).
    fn level(&mut self, name: &str, at: Pos, path: &str, time: bool) -> bool {
        self.level_of(name, at, path, Some(time))
    }

    fn level_of(&mut self, name: &str, at: Pos, path: &str, time: Option<bool>) -> bool {
        let model = self.model;
        let Some(l) = model.level(name) else {
            self.errors += 1;
            let names = model.level_names();
            let scope = self.scope();
            self.ctx.unknown(
                at,
                path,
                "level",
                name,
                scope,
                names.iter().map(String::as_str),
            );
            return false;
        };
        let is_time = matches!(
            model.dimensions[l.dim].levels[l.level].kind,
            LevelKind::Time(_)
        );
        match time {
            Some(true) if !is_time => {
                self.invalid(
                    at,
                    path,
                    format!("'{name}' is not a time level; periods are members of a time level such as time.month"),
                );
                false
            }
            Some(false) if is_time => {
                self.invalid(
                    at,
                    path,
                    format!("'{name}' is a time level; a search's entity and member atoms name levels of other dimensions, and say which periods with `period`"),
                );
                false
            }
            _ => true,
        }
    }

    fn condition(
        &mut self,
        raw: &Spanned<RawCondition>,
        path: String,
        depth: usize,
    ) -> Option<SearchCondition> {
        let at = pos(raw);
        let c = &raw.value;
        if depth > MAX_DEPTH {
            self.invalid(
                at,
                &path,
                format!("conditions nest at most {MAX_DEPTH} deep"),
            );
            return None;
        }
        let kinds = [
            ("all", c.all.is_some()),
            ("any", c.any.is_some()),
            ("not", c.not.is_some()),
            ("level", c.level.is_some()),
            ("measure", c.measure.is_some()),
        ];
        let present: Vec<&str> = kinds.iter().filter(|k| k.1).map(|k| k.0).collect();
        if present.len() != 1 {
            let found = if present.is_empty() {
                "none".to_string()
            } else {
                present.join(" and ")
            };
            self.invalid(
                at,
                &path,
                format!("a condition has exactly one of `all`, `any`, `not`, `level` or `measure`, not {found}"),
            );
            return None;
        }
        let kind = present[0];
        let atom_keys = [
            ("op", c.op.is_some()),
            ("value", c.value.is_some()),
            ("values", c.values.is_some()),
            ("filters", !c.filters.is_empty()),
            ("period", c.period.is_some()),
        ];
        if matches!(kind, "all" | "any" | "not")
            && let Some((k, _)) = atom_keys.iter().find(|k| k.1)
        {
            self.invalid(
                at,
                &path,
                format!("`{k}` belongs to an atom, not to `{kind}`"),
            );
            return None;
        }
        match (&c.all, &c.any, &c.not) {
            (Some(cs), _, _) | (_, Some(cs), _) => {
                if cs.is_empty() {
                    self.invalid(at, &path, format!("`{kind}` needs at least one condition"));
                    return None;
                }
                let subs: Vec<Option<SearchCondition>> = cs
                    .iter()
                    .enumerate()
                    .map(|(i, sub)| self.condition(sub, format!("{path}.{kind}[{i}]"), depth + 1))
                    .collect();
                let subs: Option<Vec<SearchCondition>> = subs.into_iter().collect();
                let subs = subs?;
                Some(if kind == "all" {
                    SearchCondition::All(subs)
                } else {
                    SearchCondition::Any(subs)
                })
            }
            (_, _, Some(sub)) => self
                .condition(sub, format!("{path}.not"), depth + 1)
                .map(|s| SearchCondition::Not(Box::new(s))),
            _ => self.atom(c, at, &path),
        }
    }

    fn atom(&mut self, c: &RawCondition, at: Pos, path: &str) -> Option<SearchCondition> {
        let Some(op) = &c.op else {
            let kind = if c.level.is_some() {
                "level"
            } else {
                "measure"
            };
            self.invalid(at, path, format!("a {kind} atom needs `op`"));
            return None;
        };
        let period = match &c.period {
            Some(p) => Some(self.period(p, &format!("{path}.period"))?),
            None => None,
        };
        if let Some(level) = &c.level {
            if !c.filters.is_empty() {
                self.invalid(
                    at,
                    path,
                    "`filters` belong to measure atoms; combine member atoms with `all`",
                );
                return None;
            }
            let filter =
                self.filter(level, op, c.value.as_ref(), c.values.as_ref(), path, false)?;
            return Some(SearchCondition::Member { filter, period });
        }
        let measure = c.measure.as_ref()?;
        let mut ok = true;
        if !self.measure_names.contains(&measure.value.as_str()) {
            self.errors += 1;
            ok = false;
            let scope = self.scope();
            self.ctx.unknown(
                pos(measure),
                format!("{path}.measure"),
                "measure",
                &measure.value,
                scope,
                self.measure_names.iter().copied(),
            );
        }
        if !MEASURE_OPS.contains(&op.value.as_str()) {
            ok = false;
            self.invalid(
                pos(op),
                &format!("{path}.op"),
                format!(
                    "unknown comparison '{}' for a measure atom (one of {})",
                    op.value,
                    MEASURE_OPS.join(", ")
                ),
            );
        }
        if let Some(vs) = &c.values {
            self.invalid(
                pos(vs),
                &format!("{path}.values"),
                "a measure atom compares with one number, `value`, not `values`",
            );
            return None;
        }
        let value = match &c.value {
            None => {
                self.invalid(
                    at,
                    path,
                    "a measure atom needs `value`, the number it compares with",
                );
                return None;
            }
            Some(v) if Decimal::parse(&v.value.0).is_none() => {
                self.invalid(
                    pos(v),
                    &format!("{path}.value"),
                    format!(
                        "'{}' is not a number (a measure atom's threshold, e.g. 200000 or 0.5)",
                        v.value.0
                    ),
                );
                return None;
            }
            Some(v) => v.value.0.clone(),
        };
        let mut filters = Vec::new();
        for (i, f) in c.filters.iter().enumerate() {
            let fp = format!("{path}.filters[{i}]");
            let r = &f.value;
            match self.filter(
                &r.level,
                &r.op,
                r.value.as_ref(),
                r.values.as_ref(),
                &fp,
                true,
            ) {
                Some(f) => filters.push(f),
                None => ok = false,
            }
        }
        ok.then(|| SearchCondition::Measure {
            measure: measure.value.clone(),
            op: op.value.clone(),
            value,
            filters,
            period,
        })
    }

    /// A member atom's or a filter's level, op and values; `any_level`: a filter may name a
    /// time level (a member atom says its periods with `period` instead).
    fn filter(
        &mut self,
        level: &Spanned<String>,
        op: &Spanned<String>,
        value: Option<&Spanned<RawScalar>>,
        values: Option<&Spanned<Vec<Spanned<RawScalar>>>>,
        path: &str,
        any_level: bool,
    ) -> Option<SearchFilter> {
        let time = if any_level { None } else { Some(false) };
        let mut ok = self.level_of(&level.value, pos(level), &format!("{path}.level"), time);
        let o = op.value.as_str();
        let op_path = format!("{path}.op");
        if !MEMBER_OPS.contains(&o) {
            self.invalid(
                pos(op),
                &op_path,
                format!("unknown filter op '{o}' (one of {})", MEMBER_OPS.join(", ")),
            );
            return None;
        }
        let listed: Option<Vec<String>> =
            values.map(|vs| vs.value.iter().map(|v| v.value.0.clone()).collect());
        let want_list = matches!(o, "in" | "not_in" | "between");
        match (want_list, value, &listed) {
            (true, _, None) | (true, Some(_), _) => {
                self.invalid(
                    pos(op),
                    &op_path,
                    format!("`{o}` takes a list of members, `values: [..]`, and no `value`"),
                );
                ok = false;
            }
            (false, None, _) | (false, _, Some(_)) => {
                self.invalid(
                    pos(op),
                    &op_path,
                    format!("`{o}` takes one member, `value`, and no `values`"),
                );
                ok = false;
            }
            _ => {}
        }
        if let (Some(vs), Some(list)) = (values, &listed) {
            if list.is_empty() {
                self.invalid(pos(vs), &format!("{path}.values"), "`values` is empty");
                ok = false;
            } else if o == "between" && list.len() != 2 {
                self.invalid(
                    pos(vs),
                    &format!("{path}.values"),
                    format!(
                        "`between` takes two members, the first and the last, not {}",
                        list.len()
                    ),
                );
                ok = false;
            }
        }
        ok.then(|| SearchFilter {
            level: level.value.clone(),
            op: o.to_string(),
            value: value.map(|v| v.value.0.clone()),
            values: listed,
        })
    }

    fn period(&mut self, p: &Spanned<RawPeriod>, path: &str) -> Option<SearchPeriod> {
        let r = &p.value;
        let level = r
            .level
            .as_ref()
            .map_or(DEFAULT_PERIOD, |l| l.value.as_str())
            .to_string();
        let at = r.level.as_ref().map_or(pos(p), pos);
        let mut ok = self.level(&level, at, &format!("{path}.level"), true);
        let last = r.last.as_ref().map_or(1, |l| l.value);
        if let Some(l) = &r.last
            && l.value == 0
        {
            self.invalid(
                pos(l),
                &format!("{path}.last"),
                "`last` counts periods: at least 1",
            );
            ok = false;
        }
        ok.then(|| SearchPeriod {
            level,
            value: r
                .value
                .as_ref()
                .map_or_else(|| "latest".to_string(), |v| v.value.0.clone()),
            last,
        })
    }
}
