//! Saved target-customer searches over HTTP ([`lattice_engine::search`]):
//!
//! - `GET  /v1/cubes/{cube}/searches` — the searches the principal may see: the definition's,
//!   their own, those an admin shared;
//! - `GET | PUT | DELETE /v1/cubes/{cube}/searches/{name}` — one search; PUT saves it as the
//!   principal's own (replacing and deleting: its owner or an admin);
//! - `POST /v1/cubes/{cube}/searches/{name}/run` and `POST /v1/cubes/{cube}/searches/run` (an
//!   ad hoc search in the body): the members, paged and ordered, with counts; as CSV with
//!   `?format=csv` or `Accept: text/csv`.
//!
//! Searches saved over the API are kept per cube in `<definition stem>.searches.json` beside
//! the served definition, written atomically (temporary file + rename). The file is read on
//! first use and is written only here, so memory and file agree; a reload of the definition
//! keeps them. Names are unique across the definition's and the saved ones; the definition's
//! cannot be replaced or deleted over the API. Every route answers as the request's principal
//! may see (the engine applies its scope) and runs under the query limits.
//!
//! **Owners.** A saved search keeps its `owner` (the principal that first saved it, named by
//! [`owner_of`]) and `shared` (set only by an admin). A principal sees its own searches, the
//! shared ones, the definition's and those saved before searches had owners (an admin's, when
//! every principal read every search: shared); an admin sees all. A search a principal may not
//! see answers 404 on every route, as a name that does not exist, and suggestions come only
//! from those it may see. Everything shown is redacted for the principal
//! ([`lattice_engine::search::redact`]): no member name outside their scope appears, and a
//! named search runs (and filters a query as a segment) without those names, as the principal
//! would get it with them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lattice_engine::query::{DEFAULT_DRILL_LIMIT, QueryError, check_page};
use lattice_engine::search::{Search, SearchAnswer, SearchError, SearchRun, SearchSet, check_name};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{Method, Principal};
use crate::body::{self, RawBody};
use crate::error::{ApiError, BodyRouteErrors, ErrorResponse};
use crate::query::run_limited;
use crate::registry::{Slot, lock};

/// The searches saved over the API, per cube (loaded from its file on first use).
#[derive(Debug, Default)]
pub(crate) struct Store {
    saved: Mutex<HashMap<String, Arc<SearchSet>>>,
}

/// Where a cube's saved searches are kept: `bank_crm.yaml` -> `bank_crm.searches.json`.
fn file_of(slot: &Slot) -> Option<PathBuf> {
    slot.path
        .as_ref()
        .map(|p| p.with_extension("searches.json"))
}

impl Store {
    /// The searches saved for `cube` over the API.
    fn saved(&self, cube: &str, slot: &Slot) -> Result<Arc<SearchSet>, ApiError> {
        if let Some(s) = lock(&self.saved).get(cube) {
            return Ok(s.clone());
        }
        let set = match file_of(slot) {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ApiError::internal("reading the saved searches", &e))?;
                let list: Vec<Search> = serde_json::from_str(&text)
                    .map_err(|e| ApiError::internal("reading the saved searches", &e))?;
                list.into_iter().map(|s| (s.name.clone(), s)).collect()
            }
            _ => SearchSet::new(),
        };
        let set = Arc::new(set);
        Ok(lock(&self.saved)
            .entry(cube.to_string())
            .or_insert(set)
            .clone())
    }

    /// Replaces the saved searches of `cube`: the file first, then memory.
    fn replace(&self, cube: &str, slot: &Slot, set: SearchSet) -> Result<(), ApiError> {
        if let Some(path) = file_of(slot) {
            let list: Vec<&Search> = set.values().collect();
            let text = serde_json::to_string_pretty(&list)
                .map_err(|e| ApiError::internal("writing the saved searches", &e))?;
            crate::build::write_atomically(&path, &text)
                .map_err(|e| ApiError::internal("writing the saved searches", &e))?;
        }
        lock(&self.saved).insert(cube.to_string(), Arc::new(set));
        Ok(())
    }
}

/// How a saved search names the principal that saved it: `key:<name>`, `jwt:<subject>`, or
/// `anonymous` without `--auth` (a key and a token subject of the same name are two owners).
pub(crate) fn owner_of(principal: &Principal) -> String {
    match principal.method {
        Method::None => "anonymous".into(),
        Method::Key => format!("key:{}", principal.name),
        Method::Jwt => format!("jwt:{}", principal.name),
    }
}

/// Whether `principal` may see the saved search `s`: its own, a shared one, one saved before
/// searches had owners; an admin sees every one.
fn may_see(principal: &Principal, s: &Search) -> bool {
    principal.is_admin() || s.shared || s.owner.as_deref().is_none_or(|o| o == owner_of(principal))
}

/// Whether `principal` may replace or delete the saved search `s`: its owner or an admin.
fn may_change(principal: &Principal, s: &Search) -> bool {
    principal.is_admin() || s.owner.as_deref() == Some(owner_of(principal).as_str())
}

/// Where a search comes from, as listed.
#[derive(Debug, Clone, Copy)]
enum Source {
    Definition,
    Api,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Definition => "definition",
            Source::Api => "api",
        }
    }
}

/// The searches of `cube` that `principal` may see, as written: the definition's, then the
/// saved ones (a definition's name hides a saved one).
fn visible(
    state: &AppState,
    cube: &str,
    principal: &Principal,
) -> Result<BTreeMap<String, (Search, Source)>, ApiError> {
    let slot = state.slot(cube)?;
    let mut all: BTreeMap<String, (Search, Source)> = definition_searches(&slot)
        .into_iter()
        .map(|(n, s)| (n, (s, Source::Definition)))
        .collect();
    for (name, s) in state.searches.saved(cube, &slot)?.iter() {
        if may_see(principal, s) {
            all.entry(name.clone())
                .or_insert_with(|| (s.clone(), Source::Api));
        }
    }
    Ok(all)
}

/// The search `name` among `all`, or 404 `unknown_search` suggesting only names in `all`.
fn find_visible<'a>(
    all: &'a BTreeMap<String, (Search, Source)>,
    name: &str,
) -> Result<&'a (Search, Source), ApiError> {
    all.get(name).ok_or_else(|| {
        SearchError::UnknownSearch {
            name: name.to_string(),
            suggestion: lattice_defs::diag::suggest(name, all.keys().map(String::as_str)),
        }
        .into()
    })
}

/// Every search of `cube` that `principal` may see, as it runs for them (names outside their
/// scope dropped): what query segments and the entity view name.
pub(crate) async fn all_searches(
    state: &AppState,
    cube: &str,
    principal: &Principal,
) -> Result<SearchSet, ApiError> {
    let all = visible(state, cube, principal)?;
    let snapshot = state.slot(cube)?.load();
    let mut out = SearchSet::new();
    for (name, (s, _)) in all {
        let session = snapshot.cube.session(principal.access.clone());
        let r = session.redact_search(&s).await?;
        out.insert(name, r.runnable);
    }
    Ok(out)
}

fn definition_searches(slot: &Slot) -> SearchSet {
    lattice_engine::search::definition_searches(&slot.load().cube.model)
}

/// One search as a principal may read it: the document (names outside their scope hidden),
/// where it comes from, and how many names are hidden.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ListedSearch {
    #[serde(flatten)]
    pub search: Search,
    /// `definition` or `api`.
    pub source: &'static str,
    /// Names outside the principal's scope, hidden; absent when none is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
}

/// `GET /v1/cubes/{cube}/searches`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SearchList {
    /// The definition's searches, then those saved over the API.
    pub searches: Vec<ListedSearch>,
}

/// One search as `principal` may read it.
async fn shown(
    state: &AppState,
    cube: &str,
    principal: &Principal,
    s: &Search,
    source: Source,
) -> Result<ListedSearch, ApiError> {
    let snapshot = state.slot(cube)?.load();
    let session = snapshot.cube.session(principal.access.clone());
    let r = session.redact_search(s).await?;
    Ok(ListedSearch {
        search: r.shown,
        source: source.name(),
        hidden: Some(r.hidden).filter(|&h| h > 0),
    })
}

#[utoipa::path(
    get,
    path = "/v1/cubes/{cube}/searches",
    tag = "searches",
    params(("cube" = String, Path, description = "The cube's name")),
    responses(
        (status = 200, description = "Every search: the definition's (`source: definition`), then those saved over the API (`source: api`)", body = SearchList),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 403, description = "The principal may not: another's search (replacing and deleting: its owner or an admin), `shared` set by a principal that is not an admin, a condition on the customers' key or a segment withheld under small-cell suppression, a scope that does not fit", body = ErrorResponse),
    )
)]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
) -> Result<Json<SearchList>, ApiError> {
    let all = visible(&state, &cube, &principal)?;
    let (defined, saved): (Vec<_>, Vec<_>) = all
        .values()
        .partition(|(_, source)| matches!(source, Source::Definition));
    let mut out = Vec::with_capacity(all.len());
    for (s, source) in defined.into_iter().chain(saved) {
        out.push(shown(&state, &cube, &principal, s, *source).await?);
    }
    Ok(Json(SearchList { searches: out }))
}

#[utoipa::path(
    get,
    path = "/v1/cubes/{cube}/searches/{name}",
    tag = "searches",
    params(("cube" = String, Path, description = "The cube's name"), ("name" = String, Path, description = "The search's name")),
    responses(
        (status = 200, description = "The search document and its source", body = ListedSearch),
        (status = 404, description = "Unknown cube or search (another's search that is not shared answers so too)", body = ErrorResponse),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 403, description = "The principal may not: another's search (replacing and deleting: its owner or an admin), `shared` set by a principal that is not an admin, a condition on the customers' key or a segment withheld under small-cell suppression, a scope that does not fit", body = ErrorResponse),
    )
)]
pub(crate) async fn get_one(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path((cube, name)): Path<(String, String)>,
) -> Result<Json<ListedSearch>, ApiError> {
    let all = visible(&state, &cube, &principal)?;
    let (s, source) = find_visible(&all, &name)?;
    Ok(Json(shown(&state, &cube, &principal, s, *source).await?))
}

#[utoipa::path(
    put,
    path = "/v1/cubes/{cube}/searches/{name}",
    tag = "searches",
    params(("cube" = String, Path, description = "The cube's name"), ("name" = String, Path, description = "The search's name")),
    request_body(content = Search, content_type = "application/json", description = "The search document (docs/searches.md); its name must be the path's"),
    responses(
        (status = 200, description = "Replaced", body = ListedSearch),
        (status = 201, description = "Created", body = ListedSearch),
        (status = 400, description = "A search the cube cannot evaluate (`bad_condition` with its path, unknown names, a bad name)", body = ErrorResponse),
        (status = 413, description = "Body over the size limit", body = ErrorResponse),
        (status = 415, description = "Body not sent as application/json", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
        (status = 409, description = "The definition names this search (`search_read_only`): change it in the YAML; or another principal's search has the name (`search_name_taken`, on PUT)", body = ErrorResponse),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 403, description = "The principal may not: another's search (replacing and deleting: its owner or an admin), `shared` set by a principal that is not an admin, a condition on the customers' key or a segment withheld under small-cell suppression, a scope that does not fit", body = ErrorResponse),
    )
)]
pub(crate) async fn put_one(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path((cube, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    let slot = state.slot(&cube)?;
    check_name(&name)?;
    let limit = state.config.limits.max_body_bytes;
    let mut search = Search::from_json(&body::read(&headers, body, body::JSON, limit)?)?;
    if search.name != name {
        return Err(SearchError::BadName {
            name: search.name.clone(),
            message: format!("the document's name must be the path's, '{name}'"),
        }
        .into());
    }
    if definition_searches(&slot).contains_key(&name) {
        return Err(SearchError::ReadOnly { name }.into());
    }
    // Who owns it, and whether this principal may save it so.
    let previous = state.searches.saved(&cube, &slot)?.get(&name).cloned();
    let (owner, was_shared) = match &previous {
        Some(p) if !may_see(&principal, p) => {
            return Err(SearchError::NameTaken { name }.into());
        }
        Some(p) if !may_change(&principal, p) => {
            return Err(SearchError::NotOwner {
                name,
                owner: p.owner.clone().unwrap_or_else(|| "admin".into()),
            }
            .into());
        }
        Some(p) => (
            p.owner.clone().unwrap_or_else(|| owner_of(&principal)),
            p.shared || p.owner.is_none(),
        ),
        None => (owner_of(&principal), false),
    };
    if search.owner.as_ref().is_some_and(|o| *o != owner) {
        return Err(SearchError::OwnerIsKept { name, owner }.into());
    }
    if search.shared != was_shared && !principal.is_admin() {
        return Err(SearchError::SharingNeedsAdmin {
            name,
            shared: was_shared,
        }
        .into());
    }
    search.owner = Some(owner);
    // Checked against the serving cube (names, members, periods) before it is kept.
    let snapshot = slot.load();
    let check = search.clone();
    let session = snapshot.cube.session(principal.access.clone());
    run_limited(&state, &principal, async move {
        session.search_members(&check).await.map(|_| ())
    })
    .await?;
    let mut saved = (*state.searches.saved(&cube, &slot)?).clone();
    let created = saved.insert(name, search.clone()).is_none();
    state.searches.replace(&cube, &slot, saved)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = shown(&state, &cube, &principal, &search, Source::Api).await?;
    Ok((status, Json(body)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/cubes/{cube}/searches/{name}",
    tag = "searches",
    params(("cube" = String, Path, description = "The cube's name"), ("name" = String, Path, description = "The search's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Unknown cube or search (another's search that is not shared answers so too)", body = ErrorResponse),
        (status = 409, description = "The definition names this search (`search_read_only`): change it in the YAML; or another principal's search has the name (`search_name_taken`, on PUT)", body = ErrorResponse),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 403, description = "The principal may not: another's search (replacing and deleting: its owner or an admin), `shared` set by a principal that is not an admin, a condition on the customers' key or a segment withheld under small-cell suppression, a scope that does not fit", body = ErrorResponse),
    )
)]
pub(crate) async fn delete_one(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path((cube, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let slot = state.slot(&cube)?;
    if definition_searches(&slot).contains_key(&name) {
        return Err(SearchError::ReadOnly { name }.into());
    }
    let mut saved = (*state.searches.saved(&cube, &slot)?).clone();
    match saved.get(&name) {
        Some(s) if may_see(&principal, s) => {
            if !may_change(&principal, s) {
                return Err(SearchError::NotOwner {
                    name,
                    owner: s.owner.clone().unwrap_or_else(|| "admin".into()),
                }
                .into());
            }
        }
        _ => {
            let all = visible(&state, &cube, &principal)?;
            return Err(find_visible(&all, &name).err().unwrap_or_else(|| {
                SearchError::UnknownSearch {
                    name: name.clone(),
                    suggestion: None,
                }
                .into()
            }));
        }
    }
    saved.remove(&name);
    state.searches.replace(&cube, &slot, saved)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/cubes/{cube}/searches/{name}/run",
    tag = "searches",
    params(("cube" = String, Path, description = "The cube's name"), ("name" = String, Path, description = "The search's name")),
    request_body(content = Option<SearchRun>, content_type = "application/json", description = "Optional: measures per member, order, limit, offset (no `search`: the name gives it)"),
    responses(
        (status = 200, description = "The members (paged, ordered) with counts; CSV with `?format=csv` or `Accept: text/csv`",
            content((SearchAnswer = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A search or run the cube cannot answer (`bad_condition` with its path, unknown names, too many rows)", body = ErrorResponse),
        (status = 404, description = "Unknown cube or search (another's search that is not shared answers so too)", body = ErrorResponse),
        (status = 504, description = "Over the query time limit", body = ErrorResponse),
        (status = 403, description = "The principal may not: another's search (replacing and deleting: its owner or an admin), `shared` set by a principal that is not an admin, a condition on the customers' key or a segment withheld under small-cell suppression, a scope that does not fit", body = ErrorResponse),
        BodyRouteErrors,
    )
)]
pub(crate) async fn run_named(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path((cube, name)): Path<(String, String)>,
    RawQuery(params): RawQuery,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    let all = visible(&state, &cube, &principal)?;
    let (search, _) = find_visible(&all, &name)?;
    // Run without the names outside the principal's scope: the same members for them.
    let snapshot = state.slot(&cube)?.load();
    let search = snapshot
        .cube
        .session(principal.access.clone())
        .redact_search(search)
        .await?
        .runnable;
    let limit = state.config.limits.max_body_bytes;
    let r = SearchRun::from_json(&body::read(&headers, body, body::OPTIONAL_JSON, limit)?)?;
    if r.search.is_some() {
        return Err(QueryError::Malformed {
            message: "a named run takes its search from the name; leave out `search`".into(),
        }
        .into());
    }
    answer(&state, &principal, &cube, search, r, params, &headers).await
}

#[utoipa::path(
    post,
    path = "/v1/cubes/{cube}/searches/run",
    tag = "searches",
    params(("cube" = String, Path, description = "The cube's name")),
    request_body(content = SearchRun, content_type = "application/json", description = "`search` (an ad hoc document), and measures per member, order, limit, offset"),
    responses(
        (status = 200, description = "The members (paged, ordered) with counts; CSV with `?format=csv` or `Accept: text/csv`",
            content((SearchAnswer = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A search or run the cube cannot answer (`bad_condition` with its path, unknown names, too many rows)", body = ErrorResponse),
        (status = 404, description = "Unknown cube or search (another's search that is not shared answers so too)", body = ErrorResponse),
        (status = 504, description = "Over the query time limit", body = ErrorResponse),
        (status = 403, description = "The principal may not: another's search (replacing and deleting: its owner or an admin), `shared` set by a principal that is not an admin, a condition on the customers' key or a segment withheld under small-cell suppression, a scope that does not fit", body = ErrorResponse),
        BodyRouteErrors,
    )
)]
pub(crate) async fn run_adhoc(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    RawQuery(params): RawQuery,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    state.slot(&cube)?;
    let limit = state.config.limits.max_body_bytes;
    let mut r = SearchRun::from_json(&body::read(&headers, body, body::JSON, limit)?)?;
    let search = r.search.take().ok_or_else(|| {
        ApiError::from(QueryError::Malformed {
            message: "an ad hoc run needs `search`: {\"name\": .., \"where\": ..}".into(),
        })
    })?;
    answer(&state, &principal, &cube, search, r, params, &headers).await
}

async fn answer(
    state: &AppState,
    principal: &Principal,
    cube: &str,
    search: Search,
    mut r: SearchRun,
    params: Option<String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let csv = wants_csv(params.as_deref(), headers);
    // An absurd page is refused before `limit` is capped at the row limit below.
    check_page(r.limit, r.offset)?;
    let max = state.config.limits.max_result_rows as u64;
    if !csv {
        r.limit = Some(r.limit.unwrap_or(DEFAULT_DRILL_LIMIT).min(max + 1));
    } else if r.limit.is_none() {
        // An export lists every member up to the row limit.
        r.limit = Some(max + 1);
    }
    let snapshot = state.slot(cube)?.load();
    let session = snapshot.cube.session(principal.access.clone());
    let a = run_limited(state, principal, async move {
        session.run_search(&search, &r).await
    })
    .await?;
    if a.rows.len() as u64 > max {
        return Err(QueryError::TooManyRows {
            rows: a.rows.len(),
            limit: max as usize,
        }
        .into());
    }
    if csv {
        let mut resp = to_csv(&a).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        return Ok(resp);
    }
    Ok(Json(a).into_response())
}

fn wants_csv(params: Option<&str>, headers: &HeaderMap) -> bool {
    let by_param = params.is_some_and(|p| p.split('&').any(|kv| kv == "format=csv"));
    let by_accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    by_param || by_accept
}

/// The answer's columns and rows as CSV (RFC 4180: fields with a comma, a quote or a line
/// break quoted; null empty).
pub(crate) fn to_csv(a: &SearchAnswer) -> String {
    fn field(out: &mut String, s: &str) {
        if s.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&s.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(s);
        }
    }
    let mut out = String::new();
    for (i, c) in a.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(&mut out, &c.name);
    }
    out.push_str("\r\n");
    for row in &a.rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match v {
                Value::Null => {}
                Value::String(s) => field(&mut out, s),
                other => field(&mut out, &other.to_string()),
            }
        }
        out.push_str("\r\n");
    }
    out
}
