//! A built cube seen as a Cube data model: fully qualified member names, titles, types, and
//! the `/meta` document.
//!
//! - each measure is `<cube>.<measure>` (`bank_crm.fee_income`);
//! - each level of a table dimension is `<cube>.<dimension>_<level>`
//!   (`bank_crm.region_province`), a `string` dimension;
//! - the time dimension is one `time` dimension, `<cube>.<dimension>` (`bank_crm.time`),
//!   whose granularities are its levels (year, quarter, month).

use std::collections::BTreeMap;

use lattice_defs::model::{
    Agg, DimId, DimensionKind, Format, LevelKind, LevelRef, MeasureId, MeasureKind, TimeGrain,
};
use lattice_engine::access::MemberView;
use lattice_engine::store::Cube;
use serde_json::{Value as Json, json};

use super::CubeJsError;
use super::dates;

/// What a member name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member {
    Measure(MeasureId),
    Level(LevelRef),
    /// The time dimension (its granularities are levels).
    Time,
}

/// The cube's time dimension.
#[derive(Debug, Clone)]
pub(crate) struct TimeDim {
    pub dim: DimId,
    /// `bank_crm.time`.
    pub member: String,
    /// Its levels by grain, coarsest first.
    pub grains: Vec<(TimeGrain, LevelRef)>,
    /// The finest level: date conditions select its members.
    pub finest: (TimeGrain, LevelRef),
    /// The last day of the latest period in the cube: "today" for relative date ranges.
    pub today: Option<dates::Today>,
}

impl TimeDim {
    pub fn level(&self, grain: TimeGrain) -> Option<LevelRef> {
        self.grains
            .iter()
            .find(|(g, _)| *g == grain)
            .map(|(_, l)| *l)
    }

    pub fn grain_names(&self) -> Vec<String> {
        self.grains
            .iter()
            .map(|(g, _)| g.name().to_string())
            .collect()
    }
}

/// One cube's members under their Cube names.
#[derive(Debug)]
pub(crate) struct Catalog<'a> {
    pub name: &'a str,
    pub cube: &'a Cube,
    pub time: Option<TimeDim>,
    /// The members the asking principal may see: filters expand over these only.
    pub view: MemberView,
    members: BTreeMap<String, Member>,
}

impl<'a> Catalog<'a> {
    pub fn new(name: &'a str, cube: &'a Cube) -> Catalog<'a> {
        let model = cube.model();
        let mut members = BTreeMap::new();
        let mut time = None;
        for (d, dim) in model.dimensions.iter().enumerate() {
            match dim.kind {
                DimensionKind::Time => {
                    let mut grains: Vec<(TimeGrain, LevelRef)> = dim
                        .levels
                        .iter()
                        .enumerate()
                        .filter_map(|(l, level)| match level.kind {
                            LevelKind::Time(g) => Some((g, LevelRef { dim: d, level: l })),
                            _ => None,
                        })
                        .collect();
                    grains.sort_by_key(|(g, _)| *g);
                    let Some(&finest) = grains.last() else {
                        continue;
                    };
                    let member = format!("{name}.{}", dim.name);
                    let today = cube
                        .members(finest.1)
                        .names
                        .iter()
                        .filter_map(|n| dates::period_days(n, finest.0))
                        .filter_map(|(_, next)| next.pred_opt())
                        .max();
                    members.insert(member.clone(), Member::Time);
                    time = Some(TimeDim {
                        dim: d,
                        member,
                        grains,
                        finest,
                        today,
                    });
                }
                DimensionKind::Table { .. } => {
                    for (l, level) in dim.levels.iter().enumerate() {
                        members.insert(
                            format!("{name}.{}_{}", dim.name, level.name),
                            Member::Level(LevelRef { dim: d, level: l }),
                        );
                    }
                }
            }
        }
        // Measures last: on a clash with a level name the measure wins (and the level can
        // still be reached through its own dimension in the native API).
        for (m, measure) in model.measures.iter().enumerate() {
            members.insert(format!("{name}.{}", measure.name), Member::Measure(m));
        }
        Catalog {
            name,
            cube,
            time,
            view: MemberView::everything(),
            members,
        }
    }

    /// This catalog for a principal who sees only what `view` lets through.
    pub fn seen_through(mut self, view: MemberView) -> Catalog<'a> {
        self.view = view;
        self
    }

    /// Resolves a fully qualified member name.
    pub fn member(&self, full: &str) -> Result<Member, CubeJsError> {
        self.members
            .get(full)
            .copied()
            .ok_or_else(|| CubeJsError::UnknownMember {
                member: full.to_string(),
                suggestion: lattice_defs::diag::suggest(
                    full,
                    self.members.keys().map(String::as_str),
                ),
            })
    }

    pub fn measure_name(&self, m: MeasureId) -> String {
        format!("{}.{}", self.name, self.cube.model().measures[m].name)
    }

    pub fn level_name(&self, l: LevelRef) -> String {
        let model = self.cube.model();
        let d = &model.dimensions[l.dim];
        match d.kind {
            DimensionKind::Time => format!("{}.{}.{}", self.name, d.name, d.levels[l.level].name),
            DimensionKind::Table { .. } => {
                format!("{}.{}_{}", self.name, d.name, d.levels[l.level].name)
            }
        }
    }

    /// The engine's name of a member that is a level (`region.province`).
    pub fn native_level(&self, l: LevelRef) -> String {
        self.cube.model().level_name(l)
    }

    fn cube_title(&self) -> String {
        title(self.name)
    }

    /// Title, short title, type and format of a measure, as Cube annotates it.
    pub fn measure_annotation(&self, m: MeasureId) -> Json {
        let measure = &self.cube.model().measures[m];
        let short = title(&measure.name);
        let mut a = json!({
            "title": format!("{} {short}", self.cube_title()),
            "shortTitle": short,
            "type": "number",
            "drillMembers": [],
            "drillMembersGrouped": {"measures": [], "dimensions": []},
        });
        if let Some(f) = format_name(measure.format) {
            a["format"] = json!(f);
        }
        if let Some(d) = &measure.description {
            a["description"] = json!(d);
        }
        a
    }

    pub fn level_annotation(&self, l: LevelRef) -> Json {
        let d = &self.cube.model().dimensions[l.dim];
        let short = title(&format!("{}_{}", d.name, d.levels[l.level].name));
        json!({
            "title": format!("{} {short}", self.cube_title()),
            "shortTitle": short,
            "type": "string",
        })
    }

    /// The annotation of the time dimension, with the granularity when one is asked for.
    pub fn time_annotation(&self, grain: Option<TimeGrain>) -> Json {
        let Some(t) = &self.time else {
            return json!({});
        };
        let short = title(&self.cube.model().dimensions[t.dim].name);
        let mut a = json!({
            "title": format!("{} {short}", self.cube_title()),
            "shortTitle": short,
            "type": "time",
        });
        if let Some(g) = grain {
            a["granularity"] = granularity(g);
        }
        a
    }

    /// The cube as `/meta` lists it.
    pub fn meta(&self) -> Json {
        let model = self.cube.model();
        let cube_title = self.cube_title();
        let measures: Vec<Json> = model
            .measures
            .iter()
            .enumerate()
            .map(|(m, measure)| {
                let short = title(&measure.name);
                let mut j = json!({
                    "name": self.measure_name(m),
                    "title": format!("{cube_title} {short}"),
                    "shortTitle": short,
                    "type": "number",
                    "aggType": agg_type(&measure.kind),
                    "cumulative": false,
                    "cumulativeTotal": false,
                    "drillMembers": [],
                    "drillMembersGrouped": {"measures": [], "dimensions": []},
                    "isVisible": true,
                    "public": true,
                });
                if let Some(f) = format_name(measure.format) {
                    j["format"] = json!(f);
                }
                if let Some(d) = &measure.description {
                    j["description"] = json!(d);
                }
                j
            })
            .collect();
        let mut dimensions = Vec::new();
        let mut hierarchies = Vec::new();
        for (d, dim) in model.dimensions.iter().enumerate() {
            match dim.kind {
                DimensionKind::Time => {
                    let Some(t) = self.time.as_ref().filter(|t| t.dim == d) else {
                        continue;
                    };
                    let short = title(&dim.name);
                    dimensions.push(json!({
                        "name": t.member,
                        "title": format!("{cube_title} {short}"),
                        "shortTitle": short,
                        "type": "time",
                        "granularities": t.grains.iter().map(|(g, _)| granularity(*g)).collect::<Vec<_>>(),
                        "suggestFilterValues": true,
                        "isVisible": true,
                        "public": true,
                        "primaryKey": false,
                    }));
                }
                DimensionKind::Table { .. } => {
                    for l in 0..dim.levels.len() {
                        let level = LevelRef { dim: d, level: l };
                        let mut a = self.level_annotation(level);
                        a["name"] = json!(self.level_name(level));
                        a["suggestFilterValues"] = json!(true);
                        a["isVisible"] = json!(true);
                        a["public"] = json!(true);
                        a["primaryKey"] = json!(false);
                        dimensions.push(a);
                    }
                    hierarchies.push(json!({
                        "name": format!("{}.{}", self.name, dim.name),
                        "title": title(&dim.name),
                        "levels": dim.hierarchy.iter()
                            .map(|&l| self.level_name(LevelRef { dim: d, level: l }))
                            .collect::<Vec<_>>(),
                        "public": true,
                    }));
                }
            }
        }
        let mut cube = json!({
            "name": self.name,
            "title": cube_title,
            "type": "cube",
            "isVisible": true,
            "public": true,
            "connectedComponent": 1,
            "measures": measures,
            "dimensions": dimensions,
            "segments": [],
            "hierarchies": hierarchies,
            "folders": [],
            "nestedFolders": [],
        });
        if let Some(d) = &model.description {
            cube["description"] = json!(d);
        }
        cube
    }
}

/// `fee_income` -> `Fee Income`, as Cube titles members.
pub(crate) fn title(name: &str) -> String {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn granularity(g: TimeGrain) -> Json {
    json!({"name": g.name(), "title": title(g.name()), "interval": format!("1 {}", g.name())})
}

fn format_name(f: Option<Format>) -> Option<&'static str> {
    match f? {
        Format::Money => Some("currency"),
        Format::Percent => Some("percent"),
        Format::Integer | Format::Number => None,
    }
}

fn agg_type(kind: &MeasureKind) -> &'static str {
    match kind {
        MeasureKind::Aggregate { agg, .. } => match agg {
            Agg::Sum => "sum",
            Agg::Count => "count",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Distinct => "countDistinct",
        },
        MeasureKind::Derived(_) => "number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_read_like_cube() {
        assert_eq!(title("bank_crm"), "Bank Crm");
        assert_eq!(title("fee_income"), "Fee Income");
        assert_eq!(title("region_province"), "Region Province");
    }
}
