//! The Cube query document as clients send it (`@cubejs-client/core` and the REST API
//! reference), read leniently where Cube is lenient (filter values may be numbers, `member` or
//! `dimension`) and strictly elsewhere: unknown keys are an error that names them.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

use super::CubeJsError;

/// A Cube query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CubeQuery {
    #[serde(default)]
    pub measures: Vec<String>,
    #[serde(default)]
    pub dimensions: Vec<String>,
    #[serde(default)]
    pub segments: Vec<String>,
    #[serde(default)]
    pub filters: Vec<Json>,
    #[serde(default)]
    pub time_dimensions: Vec<TimeDimension>,
    #[serde(default)]
    pub order: Option<OrderSpec>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub total: Option<bool>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub response_format: Option<String>,
    #[serde(default)]
    pub ungrouped: Option<bool>,
    /// Cache modes and the old `renewQuery` flag: accepted and ignored (answers are always
    /// computed from the served snapshot).
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for compatibility; answers ignore cache modes"
    )]
    pub cache: Option<String>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for compatibility; answers ignore cache modes"
    )]
    pub cache_mode: Option<String>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for compatibility; answers ignore cache modes"
    )]
    pub renew_query: Option<bool>,
    /// Parts of the Cube API Lattice does not speak; named in the error.
    #[serde(default)]
    pub subquery_joins: Option<Json>,
    #[serde(default)]
    pub join_hints: Option<Json>,
    /// Anything else: an error naming the keys.
    #[serde(flatten)]
    pub unknown: std::collections::BTreeMap<String, Json>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TimeDimension {
    pub dimension: String,
    #[serde(default)]
    pub granularity: Option<String>,
    #[serde(default)]
    pub date_range: Option<DateRangeInput>,
    #[serde(default)]
    pub compare_date_range: Option<Vec<DateRangeInput>>,
    #[serde(flatten)]
    pub unknown: std::collections::BTreeMap<String, Json>,
}

/// A date range: a relative string (`last 6 months`) or one or two absolute values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum DateRangeInput {
    Text(String),
    Pair(Vec<String>),
}

/// `order` in either form, in the order written: `{"a": "desc"}` or `[["a", "desc"]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OrderSpec(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    r#"an object {"member": "asc"|"desc"} or an array [["member", "asc"|"desc"]]"#,
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderSpec, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(OrderSpec(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OrderSpec, A::Error> {
                let mut out = Vec::new();
                while let Some(pair) = seq.next_element::<Vec<String>>()? {
                    let [k, v]: [String; 2] = pair.try_into().map_err(|p: Vec<String>| {
                        de::Error::custom(format!(
                            "an order item is [member, direction], not {} values",
                            p.len()
                        ))
                    })?;
                    out.push((k, v));
                }
                Ok(OrderSpec(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `query` parameter: one query, or an array (a data blending query).
#[derive(Debug, Clone)]
pub(crate) enum QueryParam {
    One(Box<CubeQuery>),
    Many(usize),
}

impl<'de> Deserialize<'de> for QueryParam {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = QueryParam;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a query object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<QueryParam, A::Error> {
                CubeQuery::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|q| QueryParam::One(Box::new(q)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<QueryParam, A::Error> {
                let mut n = 0;
                while seq.next_element::<de::IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(QueryParam::Many(n))
            }
            // The query as a JSON string inside a POST body, as Cube also accepts.
            fn visit_str<E: de::Error>(self, s: &str) -> Result<QueryParam, E> {
                serde_json::from_str(s).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A `POST /load` (or `/dry-run`) body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LoadBody {
    #[serde(default)]
    pub query: Option<QueryParam>,
    #[serde(default)]
    pub query_type: Option<String>,
}

/// Reads a query document, as `invalid query format` with serde's position when it is not one.
pub(crate) fn parse_query(text: &str) -> Result<QueryParam, CubeJsError> {
    serde_json::from_str(text).map_err(|e| CubeJsError::InvalidQuery {
        message: e.to_string(),
    })
}

/// Reads a POST body.
pub(crate) fn parse_body(bytes: &[u8]) -> Result<LoadBody, CubeJsError> {
    serde_json::from_slice(bytes).map_err(|e| CubeJsError::InvalidQuery {
        message: e.to_string(),
    })
}

/// One filter, or an `and`/`or` group, as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FilterNode {
    Leaf(Leaf),
    And(Vec<FilterNode>),
    Or(Vec<FilterNode>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Leaf {
    pub member: String,
    pub operator: String,
    /// Values as strings (numbers and booleans are written as text, as Cube does); `None` is
    /// a JSON null.
    pub values: Vec<Option<String>>,
}

/// The operators of the Cube REST API.
pub(crate) const OPERATORS: [&str; 24] = [
    "equals",
    "notEquals",
    "contains",
    "notContains",
    "startsWith",
    "notStartsWith",
    "endsWith",
    "notEndsWith",
    "in",
    "notIn",
    "gt",
    "gte",
    "lt",
    "lte",
    "set",
    "notSet",
    "inDateRange",
    "notInDateRange",
    "onTheDate",
    "beforeDate",
    "beforeOrOnDate",
    "afterDate",
    "afterOrOnDate",
    "measureFilter",
];

impl FilterNode {
    /// Reads one entry of `filters` (or of an `and`/`or` list).
    pub fn parse(v: &Json) -> Result<FilterNode, CubeJsError> {
        let bad = |message: String| CubeJsError::InvalidQuery { message };
        let obj = v
            .as_object()
            .ok_or_else(|| bad(format!("a filter is an object, not {v}")))?;
        for (group, make) in [
            ("and", FilterNode::And as fn(Vec<FilterNode>) -> FilterNode),
            ("or", FilterNode::Or),
        ] {
            if let Some(list) = obj.get(group) {
                if obj.len() != 1 {
                    return Err(bad(format!(
                        "an `{group}` group has only the key `{group}`, not {}",
                        keys(obj)
                    )));
                }
                let items = list
                    .as_array()
                    .ok_or_else(|| bad(format!("`{group}` is a list of filters")))?;
                return items
                    .iter()
                    .map(FilterNode::parse)
                    .collect::<Result<_, _>>()
                    .map(make);
            }
        }
        let member = match (obj.get("member"), obj.get("dimension")) {
            (Some(Json::String(m)), None) | (None, Some(Json::String(m))) => m.clone(),
            (Some(_), Some(_)) => {
                return Err(bad(
                    "a filter names `member` or `dimension`, not both".into()
                ));
            }
            _ => return Err(bad(format!("a filter needs a `member`: {v}"))),
        };
        let operator = match obj.get("operator") {
            Some(Json::String(op)) if OPERATORS.contains(&op.as_str()) => op.clone(),
            Some(Json::String(op)) => {
                return Err(CubeJsError::Unsupported {
                    part: format!("filter operator '{op}'"),
                    hint: format!("the operators are {}", OPERATORS.join(", ")),
                });
            }
            _ => return Err(bad(format!("filter on '{member}' needs an `operator`"))),
        };
        let values = match obj.get("values") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(vs)) => vs
                .iter()
                .map(|x| match x {
                    Json::Null => Ok(None),
                    Json::String(s) => Ok(Some(s.clone())),
                    Json::Number(n) => Ok(Some(n.to_string())),
                    Json::Bool(b) => Ok(Some(b.to_string())),
                    other => Err(bad(format!(
                        "filter on '{member}': a value is a string or a number, not {other}"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(bad(format!(
                    "filter on '{member}': `values` is a list, not {other}"
                )));
            }
        };
        let extra: Vec<&String> = obj
            .keys()
            .filter(|k| !["member", "dimension", "operator", "values"].contains(&k.as_str()))
            .collect();
        if let Some(k) = extra.first() {
            return Err(bad(format!("filter on '{member}': \"{k}\" is not allowed")));
        }
        if values.is_empty() && !["set", "notSet", "measureFilter"].contains(&operator.as_str()) {
            return Err(bad(format!(
                "values required for filter on '{member}' with operator '{operator}'"
            )));
        }
        Ok(FilterNode::Leaf(Leaf {
            member,
            operator,
            values,
        }))
    }

    /// The filter as Cube normalises it: `member` (not `dimension`), values as strings.
    pub fn normalized(&self) -> Json {
        match self {
            FilterNode::Leaf(l) => {
                let mut o = serde_json::Map::new();
                o.insert("member".into(), Json::String(l.member.clone()));
                o.insert("operator".into(), Json::String(l.operator.clone()));
                if !l.values.is_empty() {
                    o.insert(
                        "values".into(),
                        Json::Array(
                            l.values
                                .iter()
                                .map(|v| v.clone().map_or(Json::Null, Json::String))
                                .collect(),
                        ),
                    );
                }
                Json::Object(o)
            }
            FilterNode::And(items) => {
                serde_json::json!({"and": items.iter().map(FilterNode::normalized).collect::<Vec<_>>()})
            }
            FilterNode::Or(items) => {
                serde_json::json!({"or": items.iter().map(FilterNode::normalized).collect::<Vec<_>>()})
            }
        }
    }
}

fn keys(obj: &serde_json::Map<String, Json>) -> String {
    obj.keys()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> CubeQuery {
        match parse_query(text).unwrap() {
            QueryParam::One(q) => *q,
            QueryParam::Many(_) => panic!("an array"),
        }
    }

    #[test]
    fn order_keeps_the_written_order_in_both_forms() {
        let q = one(r#"{"order": {"b.z": "desc", "b.a": "asc"}}"#);
        assert_eq!(
            q.order.unwrap().0,
            [("b.z".into(), "desc".into()), ("b.a".into(), "asc".into())]
        );
        let q = one(r#"{"order": [["b.z", "desc"], ["b.a", "asc"]]}"#);
        assert_eq!(q.order.unwrap().0.len(), 2);
        assert!(parse_query(r#"{"order": [["b.z"]]}"#).is_err());
    }

    #[test]
    fn unknown_keys_are_kept_for_the_error() {
        let q = one(r#"{"measures": ["b.m"], "measurez": []}"#);
        assert_eq!(q.unknown.keys().collect::<Vec<_>>(), ["measurez"]);
        assert!(matches!(
            parse_query(r#"[{"measures": ["b.m"]}, {}]"#).unwrap(),
            QueryParam::Many(2)
        ));
        // A POST body may carry the query as a JSON string.
        let body =
            parse_body(br#"{"query": "{\"measures\": [\"b.m\"]}", "queryType": "multi"}"#).unwrap();
        assert!(matches!(body.query, Some(QueryParam::One(_))));
    }

    #[test]
    fn filters_read_like_cube() {
        let f = FilterNode::parse(&serde_json::json!(
            {"or": [{"dimension": "b.x", "operator": "equals", "values": ["a", 3, null]},
                    {"and": [{"member": "b.y", "operator": "set"}]}]}
        ))
        .unwrap();
        let FilterNode::Or(items) = &f else {
            panic!("{f:?}")
        };
        assert_eq!(
            items[0],
            FilterNode::Leaf(Leaf {
                member: "b.x".into(),
                operator: "equals".into(),
                values: vec![Some("a".into()), Some("3".into()), None],
            })
        );
        assert_eq!(
            f.normalized()["or"][0],
            serde_json::json!({"member": "b.x", "operator": "equals", "values": ["a", "3", null]})
        );
        let e = FilterNode::parse(
            &serde_json::json!({"member": "b.x", "operator": "like", "values": ["a"]}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("'like'"), "{e}");
        let e = FilterNode::parse(&serde_json::json!({"member": "b.x", "operator": "equals"}))
            .unwrap_err();
        assert!(e.to_string().contains("values required"), "{e}");
    }
}
