//! Who may see what. A principal's [`Access`] — row-level scope rules and roles — is applied by
//! the engine to every answer it gives that principal, so no route can forget it:
//!
//! - **Scope.** Each rule (`manager.manager = M0017 Li Wei`, `region.province in [A, B]`) is a
//!   filter that every aggregate of the answer passes through: rows, totals, comparisons,
//!   drill-through members and their values. Unlike a query's own filters it is never lifted
//!   (a comparison lifts the filters on its own dimension). A query is answered from a cuboid
//!   when one holds the scope's levels, else by the fallback.
//! - **Visible members.** Members of the dimensions a scope speaks about (the scope's own and
//!   those reached through the same entity, e.g. customer, region and manager for a manager's
//!   scope) are listed, and accepted in filters, only when they occur among the principal's
//!   facts. A member outside the scope gets the same `unknown_member` error as a name that
//!   does not exist, with suggestions drawn only from visible members. Time levels and bands
//!   (whose members are the definition's labels, not data) are not restricted.
//! - **Small cells.** When the cube declares `privacy` and the principal has one of its roles,
//!   every answered cell with fewer than `min_customers` distinct customers comes back null and
//!   flagged, and so does every total or sub-total containing such a cell (so no hidden cell
//!   can be recovered by subtraction), and a comparison's earlier value when that cell is
//!   small. Drill-through of a small cell lists no one.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use lattice_defs::Model;
use lattice_defs::model::{DimId, DimensionKind, FactId, LevelKind, LevelRef, MeasureId};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::store::{Cube, ResolvedFilter};

/// What a principal may see. The default (no scope, no roles) is everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// Row-level scope: every rule must hold; empty = every row.
    #[serde(default)]
    pub scope: Vec<ScopeRule>,
    /// The principal's roles; a cube's `privacy.applies_to` names the roles whose answers get
    /// small cells suppressed.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Access {
    pub fn everything() -> Access {
        Access::default()
    }

    pub fn is_everything(&self) -> bool {
        self.scope.is_empty() && self.roles.is_empty()
    }

    /// A stable text naming this access, for cache partitions and audit lines (empty for
    /// everything). Two accesses with the same rules and roles in any order have the same one.
    pub fn partition(&self) -> String {
        if self.is_everything() {
            return String::new();
        }
        let mut rules: Vec<String> = self.scope.iter().map(ToString::to_string).collect();
        rules.sort();
        let mut roles = self.roles.clone();
        roles.sort();
        format!("scope: {}; roles: {}", rules.join(" & "), roles.join(", "))
    }

    /// Every scope rule names a level of `model`.
    pub fn check(&self, model: &Model) -> Result<(), String> {
        for rule in &self.scope {
            if model.level(&rule.level).is_none() {
                return Err(format!(
                    "scope rule '{rule}': cube '{}' has no level '{}'",
                    model.name, rule.level
                ));
            }
        }
        Ok(())
    }
}

/// One scope rule: the rows whose member of `level` is one of `values`. Written
/// `manager.manager = M0017 Li Wei` or `region.province in [Zhejiang, "A, B"]` (double quotes
/// around a value holding a comma, a bracket or surrounding spaces).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopeRule {
    pub level: String,
    pub values: Vec<String>,
}

impl FromStr for ScopeRule {
    type Err = String;

    fn from_str(s: &str) -> Result<ScopeRule, String> {
        let s = s.trim();
        let eq = s.find('=');
        let inn = s.find(" in ");
        let (level, values) = match (eq, inn) {
            (Some(e), i) if i.is_none_or(|i| e < i) => (&s[..e], vec![unquote(s[e + 1..].trim())?]),
            (_, Some(i)) => {
                let list = s[i + 4..].trim();
                let inner = list
                    .strip_prefix('[')
                    .and_then(|l| l.strip_suffix(']'))
                    .ok_or_else(|| {
                        format!("scope rule '{s}': write the values as a list, `in [a, b]`")
                    })?;
                (&s[..i], split_values(inner)?)
            }
            _ => {
                return Err(format!(
                    "scope rule '{s}': write `dimension.level = member` or `dimension.level in [a, b]`"
                ));
            }
        };
        let level = level.trim();
        if level.is_empty() || !level.contains('.') {
            return Err(format!(
                "scope rule '{s}': '{level}' is not a level (write `dimension.level`)"
            ));
        }
        if values.is_empty() || values.iter().any(String::is_empty) {
            return Err(format!("scope rule '{s}': a value is empty"));
        }
        Ok(ScopeRule {
            level: level.to_string(),
            values,
        })
    }
}

fn unquote(v: &str) -> Result<String, String> {
    match v.strip_prefix('"') {
        Some(rest) => rest
            .strip_suffix('"')
            .map(|x| x.replace("\\\"", "\""))
            .ok_or_else(|| format!("unclosed quote in '{v}'")),
        None => Ok(v.to_string()),
    }
}

fn split_values(inner: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    if quoted {
        return Err(format!("unclosed quote in [{inner}]"));
    }
    if !cur.trim().is_empty() || !out.is_empty() {
        out.push(cur.trim().to_string());
    }
    Ok(out)
}

fn quote(v: &str) -> String {
    let plain = !v.is_empty()
        && v.trim() == v
        && !v.contains([',', '[', ']', '"', '='])
        && !v.contains(" in ");
    if plain {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('"', "\\\""))
    }
}

impl fmt::Display for ScopeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.values.as_slice() {
            [one] => write!(f, "{} = {}", self.level, quote(one)),
            many => {
                let vs: Vec<String> = many.iter().map(|v| quote(v)).collect();
                write!(f, "{} in [{}]", self.level, vs.join(", "))
            }
        }
    }
}

impl Serialize for ScopeRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ScopeRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ScopeRule, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Small-cell suppression in force for one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Suppress {
    pub min: u64,
    /// Per fact: the distinct measure counting its customers.
    pub counts: Vec<(FactId, MeasureId)>,
}

/// An access that cannot be applied to a cube (its scope names a level the cube lacks); the
/// query layer answers it as `forbidden`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApplicable {
    pub message: String,
}

/// An [`Access`] resolved against one cube.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    /// The scope as filters (several rules on one level intersect).
    pub scope: Vec<ResolvedFilter>,
    /// Per dimension: whether its members are listed only where they occur in scope.
    pub restricted: Vec<bool>,
    pub suppress: Option<Suppress>,
    pub partition: String,
}

impl Applied {
    pub fn is_unrestricted(&self) -> bool {
        self.scope.is_empty() && self.suppress.is_none()
    }
}

/// `access` against `cube`: unknown scope levels are refused (the principal's configuration
/// does not fit this cube); unknown scope members simply match nothing.
pub(crate) fn apply(cube: &Cube, access: &Access) -> Result<Applied, NotApplicable> {
    let model = &cube.model;
    let mut scope = Vec::new();
    for rule in &access.scope {
        let level = model.level(&rule.level).ok_or_else(|| NotApplicable {
            message: format!(
                "your access does not apply to cube '{}': its scope names level '{}', which the cube does not have",
                model.name, rule.level
            ),
        })?;
        let dict = cube.members(level);
        let members: RoaringBitmap = rule.values.iter().filter_map(|v| dict.code(v)).collect();
        scope.push(ResolvedFilter { level, members });
    }
    let restricted = restricted_dims(model, scope.iter().map(|f| f.level.dim));
    let suppress = model.privacy.as_ref().and_then(|p| {
        access
            .roles
            .iter()
            .any(|r| p.applies_to.contains(r))
            .then(|| Suppress {
                min: p.min_customers,
                counts: p.counts.clone(),
            })
    });
    Ok(Applied {
        scope,
        restricted,
        suppress,
        partition: access.partition(),
    })
}

/// The dimensions `scoped` and every dimension linked to them through `via` (in either
/// direction, transitively): a manager's scope restricts the customer, region and manager
/// dimensions, whose members all describe the same customers.
fn restricted_dims(model: &Model, scoped: impl Iterator<Item = DimId>) -> Vec<bool> {
    let n = model.dimensions.len();
    let via = |d: DimId| match &model.dimensions[d].kind {
        DimensionKind::Table { via, .. } => *via,
        DimensionKind::Time => None,
    };
    let mut out = vec![false; n];
    let mut stack: Vec<DimId> = scoped.collect();
    while let Some(d) = stack.pop() {
        if std::mem::replace(&mut out[d], true) {
            continue;
        }
        if let Some(up) = via(d) {
            stack.push(up);
        }
        stack.extend((0..n).filter(|&o| via(o) == Some(d)));
    }
    out
}

/// The members of some levels that a principal may see, found once per request. Every
/// expansion of a predicate into members outside the native resolution (a Cube API
/// `contains` or `gt`, a search over names) goes through one, so that a name outside the
/// principal's scope is never matched, listed, suggested or echoed.
#[derive(Debug, Clone, Default)]
pub struct MemberView {
    /// Per restricted level: the codes visible. A level absent here is seen whole.
    visible: HashMap<LevelRef, Arc<RoaringBitmap>>,
}

impl MemberView {
    /// Every member of every level.
    pub fn everything() -> MemberView {
        MemberView::default()
    }

    /// The view of `visible`: per restricted level, the codes visible.
    pub(crate) fn new(visible: HashMap<LevelRef, Arc<RoaringBitmap>>) -> MemberView {
        MemberView { visible }
    }

    /// Whether some members of `level` are hidden (then filters list members, never the
    /// complement of a list, so nothing depends on what the principal cannot see).
    pub fn is_restricted(&self, level: LevelRef) -> bool {
        self.visible.contains_key(&level)
    }

    /// Whether the member `code` of `level` may be seen.
    pub fn sees(&self, level: LevelRef, code: u32) -> bool {
        self.visible.get(&level).is_none_or(|v| v.contains(code))
    }

    /// The visible members of `level` of `cube` (code, name), in code order.
    pub fn members<'a>(
        &'a self,
        cube: &'a Cube,
        level: LevelRef,
    ) -> impl Iterator<Item = (u32, &'a str)> + 'a {
        let names = &cube.members(level).names;
        (0u32..)
            .zip(names.iter())
            .filter(move |(c, _)| self.sees(level, *c))
            .map(|(c, n)| (c, n.as_str()))
    }
}

/// The level on the key column of the dimension whose customers suppression counts
/// (`customer.id`): each of its members is one customer.
pub(crate) fn customers_key(model: &Model) -> Option<LevelRef> {
    let dim = model.privacy.as_ref()?.customers;
    let d = &model.dimensions[dim];
    let DimensionKind::Table { table, key, .. } = &d.kind else {
        return None;
    };
    d.levels
        .iter()
        .position(|l| {
            matches!(&l.kind, LevelKind::Column(c) if c.table == *table && c.column == key.column)
        })
        .map(|level| LevelRef { dim, level })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> ScopeRule {
        s.parse().unwrap()
    }

    #[test]
    fn scope_rules_read_and_write_both_forms() {
        let r = rule("manager.manager = M0017 Li Wei");
        assert_eq!(r.level, "manager.manager");
        assert_eq!(r.values, vec!["M0017 Li Wei"]);
        assert_eq!(r.to_string(), "manager.manager = M0017 Li Wei");

        let r = rule(r#"region.province in [Zhejiang, "A, B", "say \"hi\""]"#);
        assert_eq!(r.values, vec!["Zhejiang", "A, B", "say \"hi\""]);
        assert_eq!(rule(&r.to_string()), r);

        // `=` before ` in `: the value may contain the word.
        assert_eq!(
            rule("customer.segment = born in may").values,
            vec!["born in may"]
        );
    }

    #[test]
    fn bad_scope_rules_say_what_is_wrong() {
        let err = |s: &str| s.parse::<ScopeRule>().unwrap_err();
        assert!(err("manager").contains("dimension.level = member"));
        assert!(err("manager = x").contains("is not a level"));
        assert!(err("a.b in x, y").contains("as a list"));
        assert!(err("a.b in []").contains("empty"));
        assert!(err("a.b = ").contains("empty"));
        assert!(err(r#"a.b in ["x]"#).contains("unclosed quote"));
    }

    #[test]
    fn partitions_ignore_order_and_separate_accesses() {
        let a = Access {
            scope: vec![rule("a.b = 1"), rule("c.d = 2")],
            roles: vec!["x".into(), "y".into()],
        };
        let b = Access {
            scope: vec![rule("c.d = 2"), rule("a.b = 1")],
            roles: vec!["y".into(), "x".into()],
        };
        assert_eq!(a.partition(), b.partition());
        assert_ne!(a.partition(), Access::everything().partition());
        assert_eq!(Access::everything().partition(), "");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Access>(&json).unwrap(), a);
    }
}
