//! Hot reload: a changed definition — the body of `PUT /v1/cubes/{cube}/definition`, or the
//! file edited on disk — is validated, built on the build runtime and swapped in atomically.
//!
//! ```text
//! text --parse--> Model | 400 invalid_definition (every error, with line and column)
//!      --ticket (one build per cube: 409) + build permit (bounded: 429)
//!      --build runtime: load + build--> Built | errors; the old snapshot keeps serving
//!      --write the file (temporary + rename), when it came from a PUT
//!      --swap the slot's pointer--> new snapshot; queries in flight finish on the old one
//! ```
//!
//! The build runs in its own task: a client that stops waiting does not stop it. The watcher
//! polls the definition files' modification times; an edit whose text differs from the served
//! (or building) one starts the same reload, and new files in the definitions folder become
//! new cubes.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use utoipa::{IntoParams, ToSchema};

use lattice_engine::build::BuildOptions;

use crate::AppState;
use crate::auth::Principal;
use crate::body::{self, RawBody};
use crate::build::{self, base_dir, write_atomically};
use crate::error::{ApiError, BuildError, ErrorResponse};
use crate::info::BuildInfo;
use crate::registry::{ReloadOutcome, Slot, Snapshot, lock, stamp, unix_now};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PutParams {
    /// Wait for the build and answer with its outcome (default), or answer 202 at once.
    pub wait: Option<bool>,
}

/// A reload that went well.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reloaded {
    pub cube: String,
    /// The snapshot now serving.
    pub version: u64,
    /// The snapshot it replaced (none for a new cube).
    pub previous_version: Option<u64>,
    pub build: Option<BuildInfo>,
    /// Where the definition was written, when it has a file.
    pub file: Option<String>,
}

/// `PUT ...?wait=false`: the build started.
#[derive(Debug, Serialize, ToSchema)]
pub struct Building {
    pub cube: String,
    /// `building`; `GET /v1/cubes/{cube}` shows the outcome as `last_reload`.
    pub status: &'static str,
}

/// Replaces (or creates) a cube's definition.
#[utoipa::path(put, path = "/v1/cubes/{cube}/definition", tag = "definitions",
    params(("cube" = String, Path, description = "The cube's name (the definition's `cube:`)"), PutParams),
    request_body(content = String, content_type = "application/yaml", description = "The definition, as YAML"),
    responses(
        (status = 200, description = "Built and serving", body = Reloaded),
        (status = 201, description = "A new cube, built and serving", body = Reloaded),
        (status = 202, description = "Valid; building in the background (`wait=false`)", body = Building),
        (status = 400, description = "The definition does not validate, or does not match its data: every error with its line and column", body = ErrorResponse),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 403, description = "The principal lacks the role `admin`", body = ErrorResponse),
        (status = 404, description = "Unknown cube, and no definitions folder to create it in", body = ErrorResponse),
        (status = 409, description = "A build of this cube is in progress", body = ErrorResponse),
        (status = 413, description = "Body over the size limit", body = ErrorResponse),
        (status = 415, description = "Body not sent as YAML", body = ErrorResponse),
        (status = 422, description = "The build failed", body = ErrorResponse),
        (status = 429, description = "Too many builds running", body = ErrorResponse),
    ))]
pub(crate) async fn put_definition(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    params: Result<UrlQuery<PutParams>, QueryRejection>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    principal.require_admin("replacing a definition")?;
    let params = wait_params(params)?;
    let existing = state.registry.get(&cube);
    let path = match &existing {
        Some(slot) => slot.path.clone(),
        None => match &state.config.definitions_dir {
            Some(dir) if valid_file_name(&cube) => Some(dir.join(format!("{cube}.yaml"))),
            _ => return Err(ApiError::unknown_cube(&cube, state.registry.names())),
        },
    };
    let limit = state.config.limits.max_body_bytes;
    let text = body::read(&headers, body, body::YAML, limit)?;
    let task = start_reload(&state, &cube, text, path, true, "put")?;
    if params.wait == Some(false) {
        return Ok(building(cube));
    }
    match task.await {
        Ok(Ok(done)) => {
            let status = if done.previous_version.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((status, Json(done)).into_response())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(join) => Err(BuildError::Aborted(join.to_string()).into()),
    }
}

/// `POST .../refresh`: what it did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefreshOutcome {
    pub cube: String,
    /// `up_to_date` (no source file changed: nothing done), `refreshed` (only the added
    /// files were read) or `rebuilt` (built in full: `rebuilt_because` says why).
    pub status: &'static str,
    /// The snapshot serving now.
    pub version: u64,
    /// The snapshot it replaced (none when up to date).
    pub previous_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuilt_because: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildInfo>,
}

/// Brings a cube up to date with its source files: the files added since it was made (a new
/// month of transactions, balances and branch costs) are read and merged into it; a change that
/// cannot be applied so (a file changed or removed, a dimension table changed) builds it in
/// full. The cube serving now answers until the new one replaces it.
#[utoipa::path(post, path = "/v1/cubes/{cube}/refresh", tag = "definitions",
    params(("cube" = String, Path, description = "The cube's name"), PutParams),
    responses(
        (status = 200, description = "Up to date, refreshed or rebuilt, and serving", body = RefreshOutcome),
        (status = 202, description = "Refreshing in the background (`wait=false`)", body = Building),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 403, description = "The principal lacks the role `admin`", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
        (status = 409, description = "A build of this cube is in progress", body = ErrorResponse),
        (status = 422, description = "The refresh and the build failed; the cube serving keeps serving", body = ErrorResponse),
        (status = 429, description = "Too many builds running", body = ErrorResponse),
    ))]
pub(crate) async fn refresh_cube(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    params: Result<UrlQuery<PutParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require_admin("refreshing a cube")?;
    let params = wait_params(params)?;
    let Some(slot) = state.registry.get(&cube) else {
        return Err(ApiError::unknown_cube(&cube, state.registry.names()));
    };
    let serving = slot.load();
    let now = lattice_engine::source::load::fingerprint(&serving.cube.model);
    if serving.info.sources.as_deref() == Some(now.as_slice()) {
        return Ok(Json(RefreshOutcome {
            cube,
            status: "up_to_date",
            version: serving.info.version,
            previous_version: None,
            rebuilt_because: None,
            build: None,
        })
        .into_response());
    }
    let task = start_refresh(&state, &slot, "refresh")?;
    if params.wait == Some(false) {
        return Ok(building(cube));
    }
    let done = match task.await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(e.into()),
        Err(join) => return Err(BuildError::Aborted(join.to_string()).into()),
    };
    let now = slot.load();
    Ok(Json(RefreshOutcome {
        cube,
        status: match now.info.origin {
            "refreshed" => "refreshed",
            _ => "rebuilt",
        },
        version: done.version,
        previous_version: done.previous_version,
        rebuilt_because: now.info.rebuilt_because.clone(),
        build: done.build,
    })
    .into_response())
}

/// Starts refreshing `slot`'s cube with its sources' new files (the definition as served).
pub(crate) fn start_refresh(
    state: &Arc<AppState>,
    slot: &Slot,
    trigger: &'static str,
) -> Result<JoinHandle<Result<Reloaded, BuildError>>, ApiError> {
    let text = slot.load().yaml.clone();
    start_build(
        state,
        &slot.name,
        text,
        slot.path.clone(),
        false,
        trigger,
        true,
    )
}

/// The `?wait=` parameter of a build request, or a 400 that says what it takes.
fn wait_params(params: Result<UrlQuery<PutParams>, QueryRejection>) -> Result<PutParams, ApiError> {
    params.map(|UrlQuery(p)| p).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_parameters",
            format!("{}; expected wait=true|false", e.body_text()),
        )
    })
}

/// 202: the build of `cube` started; `GET /v1/cubes/{cube}` shows how it ends.
fn building(cube: String) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(Building {
            cube,
            status: "building",
        }),
    )
        .into_response()
}

/// A cube name that can be a file name as it is.
fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Validates `text` as the definition of cube `name` and starts its build. `persist`: write the
/// accepted text to `path` before swapping (a PUT); the watcher's reloads read it from there.
pub(crate) fn start_reload(
    state: &Arc<AppState>,
    name: &str,
    text: String,
    path: Option<PathBuf>,
    persist: bool,
    trigger: &'static str,
) -> Result<JoinHandle<Result<Reloaded, BuildError>>, ApiError> {
    start_build(state, name, text, path, persist, trigger, false)
}

/// `text` read as a definition of cube `name` (whose file is `path`, when it has one): every
/// error with its line and column, and a definition of another cube refused.
pub(crate) fn parse_for(
    state: &AppState,
    name: &str,
    text: &str,
    path: Option<&FsPath>,
) -> Result<lattice_defs::model::Model, ApiError> {
    let label = path.and_then(FsPath::file_name).map_or_else(
        || format!("{name}.yaml"),
        |f| f.to_string_lossy().into_owned(),
    );
    let base = base_dir(path, state.config.data_dir.as_deref());
    let model = build::parse(text, &label, &base)?;
    if model.name != name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "cube_name_mismatch",
            format!(
                "the definition is of cube '{}', but it was sent for cube '{name}'; send it to /v1/cubes/{}/definition or change its `cube:`",
                model.name, model.name
            ),
        )
        .with_details(serde_json::json!({"expected": name, "found": model.name})));
    }
    Ok(model)
}

/// [`start_reload`], or (`refresh`) a refresh of the cube serving with the files added to its
/// sources, its definition as it serves. Either is made from the cube serving where it can be
/// ([`build::refresh_or_build`]: its base rows reused), else loaded or built.
fn start_build(
    state: &Arc<AppState>,
    name: &str,
    text: String,
    path: Option<PathBuf>,
    persist: bool,
    trigger: &'static str,
    refresh: bool,
) -> Result<JoinHandle<Result<Reloaded, BuildError>>, ApiError> {
    let prior = state.registry.get(name).map(|slot| slot.load());
    // A refresh builds the definition serving, as it was read (its sources where they were).
    let model = match prior.as_ref().filter(|_| refresh) {
        Some(prior) => prior.cube.model.clone(),
        None => parse_for(state, name, &text, path.as_deref())?,
    };
    let Some(ticket) = state.registry.begin_build(name, &text) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "build_in_progress",
            format!(
                "a build of cube '{name}' is in progress; retry when it ends (GET /v1/cubes/{name} shows its outcome)"
            ),
        ));
    };
    let Ok(permit) = state.builds.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_builds",
            format!(
                "{} builds are running, the most this server runs at once; retry when one ends",
                state.config.limits.max_concurrent_builds
            ),
        ));
    };
    let registry = state.registry.clone();
    let metrics = state.metrics.clone();
    let name = name.to_string();
    let auth = state.config.auth.clone();
    // What the serving cube answered without a cuboid: the new build weighs it first.
    let learned = state
        .registry
        .get(&name)
        .map(|slot| slot.load().cube.missed())
        .unwrap_or_default();
    let options = BuildOptions {
        progress: false,
        memory_budget: state.config.memory_budget,
        learned,
        ..Default::default()
    };
    let snapshots = state.config.snapshots.clone();
    Ok(state.runtimes.build().spawn(async move {
        let _ticket = ticket;
        let _permit = permit;
        let started = Instant::now();
        let result = async {
            // The snapshot serving now is never removed to make room for the new one.
            let serving = registry
                .get(&name)
                .and_then(|slot| slot.load().info.snapshot.clone())
                .map(|s| PathBuf::from(s.dir));
            let built = match &prior {
                Some(prior) => {
                    let before = prior.info.sources.clone().unwrap_or_default();
                    build::refresh_or_build(
                        model,
                        text,
                        &options,
                        snapshots.as_ref(),
                        serving.as_deref(),
                        prior.cube.cube(),
                        &before,
                    )
                    .await?
                }
                None => {
                    build::build_or_load(
                        model,
                        text,
                        &options,
                        snapshots.as_ref(),
                        serving.as_deref(),
                    )
                    .await?
                }
            };
            if persist && let Some(p) = &path {
                write_atomically(p, &built.yaml).map_err(|source| BuildError::Persist {
                    path: p.display().to_string(),
                    source,
                })?;
            }
            let snapshot = Snapshot::new(built, registry.next_version());
            if let Some(auth) = &auth {
                auth.warn_missing_members([snapshot.cube.cube()]);
            }
            let version = snapshot.info.version;
            let build = snapshot.info.build.clone();
            // The outcome is recorded before the snapshot is published: whoever is served the
            // new snapshot also sees that its reload succeeded.
            let ok = ReloadOutcome {
                at: unix_now(),
                trigger,
                ok: true,
                version: Some(version),
                error: None,
            };
            let (slot, previous_version) = match registry.get(&name) {
                Some(slot) => {
                    *lock(&slot.last_reload) = Some(ok);
                    let old = slot.current.swap(Arc::new(snapshot));
                    (slot, Some(old.info.version))
                }
                None => {
                    let slot = Slot::new(snapshot, path.clone());
                    *lock(&slot.last_reload) = Some(ok);
                    (registry.insert(slot), None)
                }
            };
            if let Some(p) = &slot.path {
                *lock(&slot.seen) = stamp(p);
            }
            Ok(Reloaded {
                cube: name.clone(),
                version,
                previous_version,
                build,
                file: slot.path.as_ref().map(|p| p.display().to_string()),
            })
        }
        .await;
        metrics.build(result.is_ok(), started.elapsed());
        match &result {
            Ok(done) => {
                tracing::info!(cube = %name, version = done.version, previous = ?done.previous_version, trigger, seconds = done.build.as_ref().map_or(0.0, |b| b.seconds), "definition reloaded");
            }
            Err(e) => {
                tracing::warn!(cube = %name, trigger, error = %e, "reload rejected; the previous snapshot keeps serving");
                if let Some(slot) = registry.get(&name) {
                    *lock(&slot.last_reload) = Some(failed(trigger, &ApiError::from(e)));
                }
            }
        }
        result
    }))
}

fn failed(trigger: &'static str, e: &ApiError) -> ReloadOutcome {
    ReloadOutcome {
        at: unix_now(),
        trigger,
        ok: false,
        version: None,
        error: Some(
            serde_json::json!({"code": e.code, "message": e.message, "details": e.details}),
        ),
    }
}

/// Polls the definition files every `every` until `stop` changes, reloading edited ones and
/// serving new ones.
pub(crate) async fn watch(
    state: Arc<AppState>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Files in the folder that serve no cube, as last seen (so a bad one is reported once).
    let mut strangers: HashMap<PathBuf, Option<crate::registry::FileStamp>> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for slot in state.registry.slots() {
            check_file(&state, &slot);
            check_sources(&state, &slot);
        }
        if let Some(dir) = &state.config.definitions_dir {
            scan_folder(&state, dir, &mut strangers);
        }
    }
}

/// Reloads `slot` if its file changed to a text that is neither served nor being built.
fn check_file(state: &Arc<AppState>, slot: &Slot) {
    let Some(path) = &slot.path else { return };
    let now = stamp(path);
    if now.is_none() || *lock(&slot.seen) == now {
        return;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    if text == slot.load().yaml || state.registry.is_building(&slot.name, &text) {
        *lock(&slot.seen) = now;
        return;
    }
    match start_reload(state, &slot.name, text, Some(path.clone()), false, "file") {
        Ok(_) => *lock(&slot.seen) = now,
        // Busy: try again on the next tick.
        Err(e) if e.code == "build_in_progress" || e.code == "too_many_builds" => {}
        Err(e) => {
            tracing::warn!(cube = %slot.name, file = %path.display(), error = %e.message, details = %e.details, "edited definition rejected; the previous snapshot keeps serving");
            *lock(&slot.last_reload) = Some(failed("file", &e));
            *lock(&slot.seen) = now;
        }
    }
}

/// Refreshes `slot`'s cube when its source files changed (a new month's files landed) and
/// have stayed so for a tick; a change whose refresh failed is not tried again until the files
/// change again.
fn check_sources(state: &Arc<AppState>, slot: &Slot) {
    let serving = slot.load();
    let now = lattice_engine::source::load::fingerprint(&serving.cube.model);
    let mut seen = lock(&slot.sources_seen);
    let settled = seen.last.as_ref() == Some(&now);
    seen.last = Some(now.clone());
    if !settled
        || serving.info.sources.as_ref() == Some(&now)
        || seen.tried.as_ref() == Some(&now)
        || state.registry.is_building(&slot.name, &serving.yaml)
    {
        return;
    }
    match start_refresh(state, slot, "sources") {
        Ok(_) => seen.tried = Some(now),
        // Busy: try again on the next tick.
        Err(e) if e.code == "build_in_progress" || e.code == "too_many_builds" => {}
        Err(e) => {
            tracing::warn!(cube = %slot.name, error = %e.message, "cannot refresh with the changed sources; the cube serving keeps serving");
            *lock(&slot.last_reload) = Some(failed("sources", &e));
            seen.tried = Some(now);
        }
    }
}

/// Serves the cubes of new definition files in the folder.
fn scan_folder(
    state: &Arc<AppState>,
    dir: &FsPath,
    strangers: &mut HashMap<PathBuf, Option<crate::registry::FileStamp>>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let slots = state.registry.slots();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let is_yaml = path.extension().is_some_and(|x| x == "yaml" || x == "yml");
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !is_yaml
            || hidden
            || slots
                .iter()
                .any(|s| s.path.as_deref() == Some(path.as_path()))
        {
            continue;
        }
        let now = stamp(&path);
        if strangers.get(&path) == Some(&now) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let base = base_dir(Some(&path), state.config.data_dir.as_deref());
        let label = path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        let name = match build::parse(&text, &label, &base) {
            Ok(model) => model.name,
            Err(e) => {
                let e = ApiError::from(&e);
                tracing::warn!(file = %path.display(), error = %e.message, details = %e.details, "new definition file rejected");
                strangers.insert(path, now);
                continue;
            }
        };
        if let Some(slot) = state.registry.get(&name) {
            tracing::warn!(file = %path.display(), cube = %name, served_from = ?slot.path, "new definition file names a cube that is already served; ignored");
            strangers.insert(path, now);
            continue;
        }
        match start_reload(state, &name, text, Some(path.clone()), false, "file") {
            Ok(_) => {
                strangers.insert(path, now);
            }
            Err(e) if e.code == "build_in_progress" || e.code == "too_many_builds" => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e.message, "new definition file rejected");
                strangers.insert(path, now);
            }
        }
    }
}
