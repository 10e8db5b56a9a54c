//! The native API's routes, each declared once. A handler carries its `#[utoipa::path]` — path,
//! method, parameters, bodies, answers — and takes one line in [`endpoints`]; from that table
//! come the router ([`router`]), the route list ([`crate::ROUTES`]: the metrics' labels, the
//! tests' probes) and the OpenAPI document's paths (`crate::openapi`). A path or a method is
//! written nowhere else, so the three cannot disagree.
//!
//! This is what `utoipa-axum` does, without the crate: utoipa's generated `__path_<handler>`
//! type knows the path, methods, operation and the schemas it names.

use std::any::type_name;
use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};
use utoipa::__dev::{SchemaReferences, Tags};
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::{Content, RefOr, schema::Schema};

use crate::AppState;
use crate::{analytics, entities, query, reload, routes, searches, workbench};

/// Schemas by name, as utoipa collects those a path names (and theirs).
pub(crate) type Schemas = Vec<(String, RefOr<Schema>)>;

/// One handler at one path, with its documentation (utoipa's types have no `Debug`).
pub(crate) struct Endpoint {
    /// As the router matches it (`/v1/cubes/{cube}/query`).
    pub path: String,
    pub methods: Vec<HttpMethod>,
    pub operation: Operation,
    /// Pushes the schemas the operation names.
    pub schemas: fn(&mut Schemas),
    route: MethodRouter<Arc<AppState>>,
}

/// `handler`, routed at the path and methods its documentation `P` (its `__path_` type) gives.
fn endpoint<P, H, T>(handler: H) -> Endpoint
where
    P: utoipa::Path + SchemaReferences + Tags<'static>,
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    let methods = P::methods();
    let filter = methods
        .iter()
        .map(method_filter)
        .reduce(MethodFilter::or)
        .expect("a documented route has a method");
    let mut operation = P::operation();
    // The tags are kept beside the operation; the `OpenApi` derive puts them in, as here.
    let tags: Vec<String> = P::tags().into_iter().map(String::from).collect();
    operation.tags = Some(tags).filter(|t| !t.is_empty());
    // utoipa names an operation after its function: a handler named beside another's
    // documentation (routed at the wrong path) stops every debug build and test at once.
    debug_assert!(
        operation
            .operation_id
            .as_deref()
            .is_some_and(|id| type_name::<H>().ends_with(&format!("::{id}"))),
        "{} is routed with the documentation of {:?}",
        type_name::<H>(),
        operation.operation_id
    );
    // The routes whose answers export as tables say so (`export`).
    if crate::export::exportable(&axum::http::Method::POST, &P::path())
        && methods.contains(&HttpMethod::Post)
        && let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200")
    {
        for mime in [crate::export::CSV, crate::export::XLSX] {
            ok.content
                .insert(mime.to_string(), RefOr::T(Content::default()));
        }
        ok.description.push_str(
            "; the same answer as a table with `Accept: text/csv`, or as a spreadsheet with `Accept: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet`",
        );
    }
    Endpoint {
        path: P::path(),
        methods,
        operation,
        schemas: P::schemas,
        route: on(filter, handler),
    }
}

fn method_filter(m: &HttpMethod) -> MethodFilter {
    match m {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
    }
}

/// Every route of the native API, in the order the route list gives them. A handler and its
/// documentation are named together; a test holds each pair to the same function.
pub(crate) fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint::<routes::__path_health, _, _>(routes::health),
        endpoint::<routes::__path_metrics, _, _>(routes::metrics),
        endpoint::<routes::__path_openapi, _, _>(routes::openapi),
        endpoint::<routes::__path_list_cubes, _, _>(routes::list_cubes),
        endpoint::<routes::__path_cube_metadata, _, _>(routes::cube_metadata),
        endpoint::<routes::__path_members, _, _>(routes::members),
        endpoint::<query::__path_query, _, _>(query::query),
        endpoint::<query::__path_drillthrough, _, _>(query::drillthrough),
        endpoint::<routes::__path_get_definition, _, _>(routes::get_definition),
        endpoint::<reload::__path_put_definition, _, _>(reload::put_definition),
        endpoint::<reload::__path_refresh_cube, _, _>(reload::refresh_cube),
        endpoint::<workbench::__path_validate_definition, _, _>(workbench::validate_definition),
        endpoint::<workbench::__path_preview_bands, _, _>(workbench::preview_bands),
        endpoint::<analytics::__path_abnormal_route, _, _>(analytics::abnormal_route),
        endpoint::<analytics::__path_migration_route, _, _>(analytics::migration_route),
        endpoint::<analytics::__path_migration_drill_route, _, _>(analytics::migration_drill_route),
        endpoint::<searches::__path_list, _, _>(searches::list),
        endpoint::<searches::__path_run_adhoc, _, _>(searches::run_adhoc),
        endpoint::<searches::__path_get_one, _, _>(searches::get_one),
        endpoint::<searches::__path_put_one, _, _>(searches::put_one),
        endpoint::<searches::__path_delete_one, _, _>(searches::delete_one),
        endpoint::<searches::__path_run_named, _, _>(searches::run_named),
        endpoint::<entities::__path_entity_route, _, _>(entities::entity_route),
        endpoint::<analytics::__path_pareto_route, _, _>(analytics::pareto_route),
        endpoint::<analytics::__path_performance_route, _, _>(analytics::performance_route),
    ]
}

/// The distinct paths of [`endpoints`], in their order.
pub(crate) fn paths() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in endpoints() {
        if !out.contains(&e.path) {
            out.push(e.path);
        }
    }
    out
}

/// Every endpoint routed (several at one path share it, each with its methods).
pub(crate) fn router() -> Router<Arc<AppState>> {
    endpoints()
        .into_iter()
        .fold(Router::new(), |router, e| router.route(&e.path, e.route))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler named beside another's documentation would be routed at the wrong path
    /// (`endpoint` asserts the pair in debug builds).
    #[test]
    fn each_handler_is_routed_with_its_own_documentation() {
        assert!(!endpoints().is_empty());
    }

    #[test]
    fn a_path_is_listed_once_and_methods_do_not_repeat() {
        let mut seen: Vec<(String, String)> = Vec::new();
        for e in endpoints() {
            for m in &e.methods {
                let key = (e.path.clone(), format!("{:?}", method_filter(m)));
                assert!(!seen.contains(&key), "{key:?} twice");
                seen.push(key);
            }
        }
    }
}
