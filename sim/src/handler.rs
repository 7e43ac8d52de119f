//! The HTTP handler: routing, request counting, fault decisions, and the verbs on resources.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::body::{BodyError, SimBody};
use crate::error::SimError;
use crate::fault::{Decision, ErrorBody, InjectedError};
use crate::fields::FieldValidation;
use crate::lifecycle::UpdateMode;
use crate::patch::PatchType;
use crate::protobuf::Wire;
use crate::query::{ListParams, Query, Rv};
use crate::routes::{self, ResourceRequest, Route};
use crate::selector::{FieldSelector, LabelSelector, Selectors};
use crate::sim::{lock, Inner};
use crate::store::Replay;
use crate::table::TableOpts;
use crate::watch::{self, WatchSpec, WatchStart};

/// A JSON response.
pub(crate) fn json_response(code: u16, v: &Value) -> Response<SimBody> {
    bytes_response(code, serde_json::to_vec(v).unwrap_or_default())
}

/// A response with an already-serialized JSON body.
pub(crate) fn bytes_response(code: u16, body: Vec<u8>) -> Response<SimBody> {
    let mut resp = Response::new(SimBody::full(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// A `Status` response for an error.
pub(crate) fn error_response(e: &SimError) -> Response<SimBody> {
    let mut resp = json_response(e.code(), &e.to_status());
    // As the apiserver's error writer: a Status suggesting a retry also sets Retry-After.
    if let Some(secs) = e.retry_after() {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// Read a request body up to the size cap.
pub(crate) async fn read_body<B>(body: B, max: usize) -> Result<Bytes, SimError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(SimError::TooLarge(max))
        }
        Err(e) if e.downcast_ref::<crate::server::BodyDeadline>().is_some() => {
            Err(SimError::RequestTimeout(e.to_string()))
        }
        Err(e) => Err(SimError::BadRequest(format!(
            "error reading request body: {e}"
        ))),
    }
}

/// Why a resource request did not produce a normal response.
enum Failure {
    /// Answer with this Status.
    Status(SimError),
    /// Drop the connection without answering (an injected stall that ran out).
    Drop,
}

impl From<SimError> for Failure {
    fn from(e: SimError) -> Self {
        Failure::Status(e)
    }
}

/// Handle one request (the bearer-token check first, for every path); `Err` means: drop the
/// connection without a response.
pub(crate) async fn handle<B>(
    inner: Arc<Inner>,
    req: Request<B>,
) -> Result<Response<SimBody>, BodyError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !crate::auth::authorized(inner.config.token.as_ref(), req.headers()) {
        return Ok(json_response(401, &crate::auth::unauthorized_status()));
    }
    Ok(match handle_inner(inner, req).await {
        Ok(resp) => resp,
        Err(Failure::Status(e)) => error_response(&e),
        Err(Failure::Drop) => return Err(BodyError::Reset),
    })
}

async fn handle_inner<B>(inner: Arc<Inner>, req: Request<B>) -> Result<Response<SimBody>, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if path.starts_with("/_sim/") || path == "/_sim" {
        return Ok(crate::admin::handle(&inner, &parts.method, &path, body).await);
    }
    let registry = inner.registry();
    if parts.method == Method::GET {
        if path == "/openapi/v3" {
            return Ok(json_response(200, &crate::openapi::root(&registry)));
        }
        if let Some(doc) = path
            .strip_prefix("/openapi/v3/")
            .and_then(|p| crate::openapi::group_version(&registry, p))
        {
            return Ok(json_response(200, &doc));
        }
    }
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let query = Query::parse(parts.uri.query()).with_user_agent(user_agent);
    let route = match routes::route(&path, &registry) {
        Ok(r) => r,
        Err(e) => {
            lock(&inner.stats).unrouted += 1;
            return Ok(error_response(&e));
        }
    };
    let get_only = |v: Value| {
        if parts.method == Method::GET {
            json_response(200, &v)
        } else {
            error_response(&SimError::MethodNotAllowed)
        }
    };
    Ok(match route {
        Route::Version => get_only(crate::discovery::version()),
        Route::CoreVersions => get_only(crate::discovery::core_versions()),
        Route::Groups => get_only(crate::discovery::group_list(&registry)),
        Route::Group(g) => get_only(crate::discovery::group(&registry, &g)),
        Route::ResourceList { group, version } => {
            get_only(crate::discovery::resource_list(&registry, &group, &version))
        }
        Route::Resource(rr) => {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let accept = parts
                .headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let table = TableOpts::from_request(accept, query.get("includeObject"));
            let wire = Wire::negotiate(accept);
            resource(
                &inner,
                &parts.method,
                rr,
                &query,
                (&content_type, wire),
                table,
                body,
            )
            .await?
        }
    })
}

/// The flow schema and priority level an injected throttling answer names (the real filter sends
/// their UIDs, never their names).
const PF_FLOW_SCHEMA_UID: &str = "5f1c6a52-8d2e-4c3b-9a7f-0d1e2f3a4b5c";
const PF_PRIORITY_LEVEL_UID: &str = "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f";

fn injected_error(e: InjectedError) -> Response<SimBody> {
    let mut resp = match e.body {
        ErrorBody::Text => {
            // As Go's http.Error writes it for the apiserver's tooManyRequests: text, nosniff, a newline.
            let text = if e.code == 429 {
                "Too many requests, please try again later.\n".to_string()
            } else {
                let reason = StatusCode::from_u16(e.code)
                    .ok()
                    .and_then(|c| c.canonical_reason())
                    .unwrap_or("Error");
                format!("{reason}\n")
            };
            let mut resp = bytes_response(e.code, text.into_bytes());
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            if e.code == 429 {
                h.insert(
                    "x-kubernetes-pf-flowschema-uid",
                    HeaderValue::from_static(PF_FLOW_SCHEMA_UID),
                );
                h.insert(
                    "x-kubernetes-pf-prioritylevel-uid",
                    HeaderValue::from_static(PF_PRIORITY_LEVEL_UID),
                );
            }
            resp
        }
        ErrorBody::Status | ErrorBody::Auto => {
            json_response(e.code, &crate::status::injected(e.code))
        }
    };
    if e.code == 429 || e.retry_after_seconds.is_some() {
        let secs = e.retry_after_seconds.unwrap_or(1).to_string();
        if let Ok(v) = HeaderValue::from_str(&secs) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

async fn silence(duration: Option<Duration>) {
    match duration {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending::<()>().await,
    }
}

async fn apply_pre_faults(d: &Decision) -> Result<Option<Response<SimBody>>, Failure> {
    if !d.latency.is_zero() {
        tokio::time::sleep(d.latency).await;
    }
    if let Some((headers, duration)) = d.stall {
        if headers {
            // Headers now, then no body bytes; after `duration` (if any) the connection drops.
            let s =
                futures::stream::once(silence(duration)).map(|_| Err::<Bytes, _>(BodyError::Reset));
            let mut resp = Response::new(SimBody::stream(s));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(Some(resp));
        }
        silence(duration).await;
        return Err(Failure::Drop);
    }
    if let Some(e) = d.http_error {
        return Ok(Some(injected_error(e)));
    }
    Ok(None)
}

use futures::StreamExt;

async fn resource<B>(
    inner: &Arc<Inner>,
    method: &Method,
    rr: ResourceRequest,
    query: &Query,
    (content_type, wire): (&str, Wire),
    table: Option<TableOpts>,
    body: B,
) -> Result<Response<SimBody>, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let info = &rr.info.clone();
    let watch_flag = query.flag("watch");
    let verb = rr.verb(method, watch_flag).map_err(Failure::Status)?;
    lock(&inner.stats).count_request(verb, &info.plural);
    let ns = rr.namespace.as_deref();
    let has_continue = query.get("continue").is_some_and(|c| !c.is_empty());
    let decision = inner.faults.decide(&info.plural, verb, ns, has_continue);
    {
        let mut stats = lock(&inner.stats);
        for f in &decision.fired {
            if verb == "watch" {
                stats.count_watch_fault(f, false);
            } else {
                stats.count_fault(f);
            }
        }
    }
    if let Some(resp) = apply_pre_faults(&decision).await? {
        return Ok(resp);
    }
    execute(
        inner,
        rr,
        verb,
        query,
        (content_type, wire),
        table,
        decision,
        body,
    )
    .await
    .map_err(Failure::Status)
}

/// Carry out a verb (after faults that answer early).
#[allow(clippy::too_many_arguments)]
async fn execute<B>(
    inner: &Arc<Inner>,
    rr: ResourceRequest,
    verb: &'static str,
    query: &Query,
    (content_type, wire): (&str, Wire),
    table: Option<TableOpts>,
    decision: Decision,
    body: B,
) -> Result<Response<SimBody>, SimError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let info = &rr.info.clone();
    let ns = rr.namespace.as_deref();
    if rr.subresource.as_deref() == Some("scale") {
        return scale_request(
            inner,
            info,
            ns,
            rr.name.as_deref().unwrap_or(""),
            verb,
            query,
            (content_type, wire),
            body,
        )
        .await;
    }
    let mode = if rr.subresource.as_deref() == Some("status") {
        UpdateMode::Status
    } else {
        UpdateMode::Main
    };
    let name = rr.name.clone().unwrap_or_default();
    match verb {
        "get" => {
            // GET on /status returns the whole object, like the apiserver.
            let obj = inner.get(info, ns, &name)?;
            match table {
                Some(t) => Ok(json_response(
                    200,
                    &crate::table::from_object(info, &obj, inner.clock.now(), t, true),
                )),
                None => Ok(wire.object(200, info, &obj)),
            }
        }
        "list" | "watch" | "deletecollection" => {
            let params = ListParams::from_query(query)?;
            let selectors = Selectors {
                labels: LabelSelector::parse(&params.label_selector)?,
                fields: FieldSelector::parse(&params.field_selector, info)?,
            };
            match verb {
                "list" => {
                    if decision.expire && params.continue_token.is_some() {
                        return Err(crate::list::expired());
                    }
                    let read = crate::list::read(
                        params.rv,
                        params.rv_match,
                        params.continue_token.is_some(),
                    )?;
                    crate::list::wait_for(&inner.store, read).await?;
                    let now = inner.clock.now();
                    let (bytes, last) = crate::list::render(
                        &inner.store,
                        info,
                        ns,
                        &selectors,
                        crate::list::PageSpec {
                            read,
                            limit: params.limit,
                            continue_token: params.continue_token.as_deref(),
                        },
                        table.map(|t| (t, now)),
                        wire,
                    )?;
                    if last {
                        lock(&inner.stats).count_list_served(&info.plural);
                    }
                    Ok(crate::protobuf::body_response(200, bytes))
                }
                "watch" => {
                    // A streaming list (sendInitialEvents) at an RV the store has not reached waits
                    // for it, then ends with the 504 Status as its only event (cacher
                    // `waitUntilWatchCacheFreshAndForceAllEvents` + `newErrWatcher`); a plain watch
                    // at a future RV starts at once and sends the events after it, as upstream.
                    let stale = match params.rv {
                        Rv::At(n) if params.send_initial_events && !decision.expire => {
                            crate::store::wait_fresh(&inner.store, n, crate::store::FRESH_WAIT)
                                .await
                                .err()
                        }
                        _ => None,
                    };
                    Ok(start_watch(
                        inner,
                        rr,
                        params,
                        selectors,
                        decision,
                        (table, wire),
                        stale,
                    ))
                }
                _ => {
                    let opts = read_body(body, inner.config.max_body).await?;
                    let opts = query.delete_options(&opts)?;
                    let mut deleted = Vec::new();
                    for obj in inner.selected(info, ns, &selectors) {
                        let n = obj
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        let onns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
                        if let Ok(d) = inner.delete(info, onns.or(ns), n, &opts) {
                            deleted.push(d);
                        }
                    }
                    let store = lock(&inner.store);
                    Ok(wire.object(
                        200,
                        info,
                        &serde_json::json!({
                            "kind": info.list_kind(), "apiVersion": info.api_version(),
                            "metadata": {"resourceVersion": store.current_rv().to_string()},
                            "items": Value::Array(deleted),
                        }),
                    ))
                }
            }
        }
        "create" | "update" | "patch" => {
            let options = match verb {
                "create" => "CreateOptions",
                "update" => "UpdateOptions",
                _ => "PatchOptions",
            };
            let dry_run = query.dry_run(options)?;
            let fields = crate::query::field_validation(query, options)?;
            let manager = query.field_manager()?;
            let bytes = read_body(body, inner.config.max_body).await?;
            if verb == "patch" && crate::apply::is_apply(content_type) {
                return server_side_apply(inner, info, ns, &name, query, &bytes, mode, dry_run);
            }
            if verb == "patch" {
                let kind = PatchType::from_content_type(content_type)?;
                let write = Write {
                    mode,
                    dry_run,
                    fields,
                    manager,
                };
                let (obj, warnings) =
                    guaranteed_patch(inner, info, ns, &name, kind, &bytes, write)?;
                return Ok(with_warnings(wire.object(200, info, &obj), &warnings));
            }
            let (obj, bytes) = crate::protobuf::decode_body(info, content_type, bytes)?;
            let (obj, warnings) = decode_fields(info, &bytes, &obj, fields)?;
            // The warnings are recorded once decoded: they go out with whatever the write answers,
            // a later 409 or 422 included (the apiserver's warning recorder writes headers on
            // every response).
            let written = (|| {
                if let Err(size) = crate::limits::check_size(&obj, crate::limits::MAX_OBJECT_BYTES)
                {
                    return Err(crate::patch::too_large(&obj, size));
                }
                crate::validation::object_meta(info, &obj, verb == "create")?;
                if verb == "create" {
                    if rr.subresource.is_some() {
                        return Err(SimError::MethodNotAllowed);
                    }
                    Ok((
                        201,
                        inner.create(info, ns, obj, true, dry_run, Some(&manager))?,
                    ))
                } else {
                    Ok((
                        200,
                        inner.update(info, ns, &name, obj, mode, dry_run, Some(&manager))?,
                    ))
                }
            })();
            Ok(match written {
                Ok((code, obj)) => with_warnings(wire.object(code, info, &obj), &warnings),
                Err(e) => with_warnings(error_response(&e), &warnings),
            })
        }
        "delete" => {
            if rr.subresource.is_some() {
                return Err(SimError::MethodNotAllowed);
            }
            // DeleteOptions: preconditions, grace, finalizers (`Inner::delete`); 200 with the
            // object, removed or (graceful, finalizers) marked with a deletionTimestamp.
            let opts = read_body(body, inner.config.max_body).await?;
            let opts = query.delete_options(&opts)?;
            let obj = inner.delete(info, ns, &name, &opts)?;
            // handlers/delete.go: 202 Accepted when the object was not deleted at once (it carries
            // a deletionTimestamp and is still stored) and the client asked for cascading
            // deletion with the deprecated `orphanDependents: false`; 200 otherwise.
            let kept = obj.pointer("/metadata/deletionTimestamp").is_some()
                && inner.get(info, ns, &name).is_ok_and(|live| {
                    live.pointer("/metadata/uid") == obj.pointer("/metadata/uid")
                });
            let code = if kept && opts.orphan_dependents == Some(false) {
                202
            } else {
                200
            };
            Ok(wire.object(code, info, &obj))
        }
        _ => Err(SimError::MethodNotAllowed),
    }
}

/// A server-side apply (`crate::apply`): the object is created from the configuration when
/// absent (201), else the configuration is applied over it (200); a concurrent write retries,
/// like [`guaranteed_patch`].
#[allow(clippy::too_many_arguments)]
fn server_side_apply(
    inner: &Arc<Inner>,
    info: &crate::resource::Resource,
    ns: Option<&str>,
    name: &str,
    query: &Query,
    body: &[u8],
    mode: UpdateMode,
    dry_run: bool,
) -> Result<Response<SimBody>, SimError> {
    let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(SimError::InvalidFields {
            kind: "PatchOptions.meta.k8s.io".into(),
            name: String::new(),
            causes: vec![crate::error::FieldCause {
                reason: "FieldValueRequired",
                field: "fieldManager".into(),
                message: "Required value: is required for apply patch".into(),
            }],
        });
    };
    let force = query.flag("force");
    let config = crate::apply::parse_config(body)?;
    let kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if kind != info.kind || api_version != info.api_version() {
        return Err(SimError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or kind {kind} does not match {}",
            info.api_version(),
            info.kind
        )));
    }
    if let Some(n) = config.pointer("/metadata/name").and_then(Value::as_str) {
        if n != name {
            return Err(SimError::BadRequest(
                "the name of the object does not match the name on the URL".into(),
            ));
        }
    }
    let now = inner.clock.now_rfc3339();
    for _ in 0..5 {
        let current = match inner.get(info, ns, name) {
            Ok(v) => Some(v),
            Err(SimError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut wanted = crate::apply::apply(current.as_ref(), &config, manager, force, &now)?;
        match current {
            None => {
                wanted["metadata"]["name"] = Value::String(name.to_string());
                match inner.create(info, ns, wanted, true, dry_run, None) {
                    Ok(created) => return Ok(json_response(201, &created)),
                    Err(SimError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            Some(cur) => {
                wanted["metadata"]["resourceVersion"] = cur
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null);
                match inner.update(info, ns, name, wanted, mode, dry_run, None) {
                    Ok(stored) => return Ok(json_response(200, &stored)),
                    Err(SimError::Conflict { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(SimError::Conflict {
        resource: info.qualified(),
        name: name.to_string(),
        message: "the object has been modified; please apply your changes to the latest version and try again".into(),
    })
}

/// GET, PUT or PATCH on `<workload>/scale` (`crate::scale`): the Scale in, `spec.replicas` out.
/// A PATCH is applied to the Scale document and retried on a concurrent write, like
/// [`guaranteed_patch`].
#[allow(clippy::too_many_arguments)]
async fn scale_request<B>(
    inner: &Arc<Inner>,
    info: &crate::resource::Resource,
    ns: Option<&str>,
    name: &str,
    verb: &str,
    query: &Query,
    (content_type, wire): (&str, Wire),
    body: B,
) -> Result<Response<SimBody>, SimError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use crate::scale::{apply_scale, to_scale};
    let dry_run = match verb {
        "get" => false,
        "update" => query.dry_run("UpdateOptions")?,
        "patch" => query.dry_run("PatchOptions")?,
        _ => return Err(SimError::MethodNotAllowed),
    };
    if verb == "get" {
        return Ok(wire.object(200, info, &to_scale(info, &inner.get(info, ns, name)?)));
    }
    let bytes = read_body(body, inner.config.max_body).await?;
    let (patch, put) = if verb == "patch" {
        (Some(PatchType::from_content_type(content_type)?), None)
    } else {
        let scale = crate::protobuf::decode_typed(
            ("autoscaling/v1", "Scale"),
            content_type,
            bytes.clone(),
        )?;
        (None, Some(scale.0))
    };
    for _ in 0..5 {
        let current = inner.get(info, ns, name)?;
        let scale = match patch {
            Some(kind) => {
                let mut s = crate::patch::apply(kind, &to_scale(info, &current), &bytes)?;
                // A patch is against the Scale read now: it carries that version.
                s["metadata"]["resourceVersion"] =
                    to_scale(info, &current)["metadata"]["resourceVersion"].clone();
                s
            }
            None => put.clone().unwrap_or_default(),
        };
        let wanted = apply_scale(info, &current, &scale)?;
        match inner.update(
            info,
            ns,
            name,
            wanted,
            UpdateMode::Main,
            dry_run,
            Some(&query.field_manager()?),
        ) {
            Ok(stored) => return Ok(wire.object(200, info, &to_scale(info, &stored))),
            Err(SimError::Conflict { .. }) if patch.is_some() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(SimError::Conflict {
        resource: info.qualified(),
        name: name.to_string(),
        message: "the object has been modified; please apply your changes to the latest version and try again".into(),
    })
}

/// PATCH the way kube-apiserver's GuaranteedUpdate does it: copy the object out, apply the
/// patch with no lock held (so a costly patch stalls nobody else), then commit only if the
/// object still has the resourceVersion it was read at; if it changed, start again, at most
/// [`crate::limits::MAX_PATCH_ATTEMPTS`] times, then 409 Conflict.
/// How a patch writes: to the main resource or `/status`, for real or as a dry run, and what
/// becomes of unknown fields in the patched object.
struct Write {
    mode: UpdateMode,
    dry_run: bool,
    fields: FieldValidation,
    /// Who the patch is recorded under in managedFields.
    manager: String,
}

/// Decode a create/update body as the apiserver's create.go/update.go do: a type error is 400
/// whatever the directive, unknown or duplicate fields are 400 under `Strict`
/// (`transformDecodeError`: "Pod in version "v1" cannot be handled as a Pod: strict decoding
/// error: …"), warnings under `Warn`, nothing under `Ignore`. Returns the pruned object and the
/// warnings to send.
fn decode_fields(
    info: &crate::resource::ResourceInfo,
    bytes: &[u8],
    obj: &Value,
    directive: FieldValidation,
) -> Result<(Value, Vec<String>), SimError> {
    let cannot = |detail: String| {
        SimError::BadRequest(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {detail}",
            kind = info.kind,
            version = info.version,
        ))
    };
    let checked = crate::fields::check_body(info, bytes, obj).map_err(|e| cannot(e.0))?;
    match directive {
        FieldValidation::Strict if !checked.problems.is_empty() => Err(cannot(format!(
            "strict decoding error: {}",
            checked.problems.join(", ")
        ))),
        FieldValidation::Warn => Ok((checked.object, checked.problems)),
        _ => Ok((checked.object, Vec::new())),
    }
}

/// Decode a patched object as patch.go does: a type error, or unknown fields under `Strict`,
/// is 422 Invalid with no kind or name and one cause on `patch` quoting the patched JSON (a
/// strategic merge patch quotes the patch itself, as Go's `%+v` of the map prints it).
/// Only unknown fields the patch brings are reported: an object stored through the Rust API
/// (which does not validate) may hold some already; they are pruned, not reported.
fn decode_patched(
    info: &crate::resource::ResourceInfo,
    (kind, body): (PatchType, &[u8]),
    old: &Value,
    patched: &Value,
    directive: FieldValidation,
) -> Result<(Value, Vec<String>), SimError> {
    let invalid = |detail: String| {
        let value = match kind {
            PatchType::Strategic => serde_json::from_slice::<Value>(body)
                .map(|p| crate::fields::go_format(&p))
                .unwrap_or_default(),
            _ => serde_json::to_string(patched).unwrap_or_default(),
        };
        SimError::InvalidFields {
            kind: String::new(),
            name: String::new(),
            causes: vec![crate::error::FieldCause {
                reason: "FieldValueInvalid",
                field: "patch".into(),
                message: format!("Invalid value: {value:?}: {detail}"),
            }],
        }
    };
    let mut checked = crate::fields::check(info, patched).map_err(|e| invalid(e.0))?;
    if !checked.problems.is_empty() {
        if let Ok(before) = crate::fields::check(info, old) {
            checked.problems.retain(|p| !before.problems.contains(p));
        }
    }
    match directive {
        FieldValidation::Strict if !checked.problems.is_empty() => Err(invalid(format!(
            "strict decoding error: {}",
            checked.problems.join(", ")
        ))),
        FieldValidation::Warn => Ok((checked.object, checked.problems)),
        _ => Ok((checked.object, Vec::new())),
    }
}

/// Add one `Warning: 299 - "…"` header per report (the apiserver's warning recorder drops
/// repeats of the same text).
fn with_warnings(mut resp: Response<SimBody>, warnings: &[String]) -> Response<SimBody> {
    let mut sent = std::collections::HashSet::new();
    for w in warnings {
        if !sent.insert(w) {
            continue;
        }
        if let Ok(v) = HeaderValue::from_bytes(crate::fields::warning_header(w).as_bytes()) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn guaranteed_patch(
    inner: &Inner,
    info: &crate::resource::Resource,
    ns: Option<&str>,
    name: &str,
    kind: PatchType,
    body: &[u8],
    Write {
        mode,
        dry_run,
        fields,
        manager,
    }: Write,
) -> Result<(Value, Vec<String>), SimError> {
    let key = match (info.namespaced, ns) {
        (true, Some(ns)) => (ns.to_string(), name.to_string()),
        (true, None) => {
            return Err(SimError::BadRequest(format!(
                "{} is namespaced: a namespace is required",
                info.plural
            )))
        }
        (false, _) => (String::new(), name.to_string()),
    };
    let rv_of = |v: &Value| v.pointer("/metadata/resourceVersion").cloned();
    for _ in 0..crate::limits::MAX_PATCH_ATTEMPTS {
        let old = inner.get(info, ns, name)?;
        let patched = crate::patch::apply(kind, &old, body)?;
        let (patched, warnings) = decode_patched(info, (kind, body), &old, &patched, fields)?;
        crate::validation::object_meta(info, &patched, false)?;
        let now = inner.clock.now_rfc3339();
        let status = mode == UpdateMode::Status;
        let new = crate::lifecycle::prepare_update(info, &old, patched, mode)?.map(|mut new| {
            crate::apply::record_update(Some(&old), &mut new, &manager, status, &now);
            new
        });
        let mut store = lock(&inner.store);
        let current = store
            .get(&info.id, &key)
            .ok_or_else(|| SimError::NotFound {
                resource: info.qualified(),
                name: name.to_string(),
            })?;
        if rv_of(current) != rv_of(&old) {
            continue;
        }
        let (stored, released) = match new {
            None => return Ok((current.clone(), warnings)),
            Some(new) if dry_run => {
                return Ok((crate::sim::dry_run_result(current, new), warnings))
            }
            Some(new) => inner.commit_update(&mut store, info, key, mode, new),
        };
        drop(store);
        inner.release(&released);
        return Ok((stored, warnings));
    }
    Err(SimError::Conflict {
        resource: info.qualified(),
        name: name.to_string(),
        message: "the object has been modified; please apply your changes to the latest version and try again".into(),
    })
}

fn start_watch(
    inner: &Arc<Inner>,
    rr: ResourceRequest,
    params: ListParams,
    selectors: Selectors,
    decision: Decision,
    (table, wire): (Option<TableOpts>, Wire),
    stale: Option<SimError>,
) -> Response<SimBody> {
    {
        let mut stats = lock(&inner.stats);
        *stats
            .watch_starts
            .entry(rr.info.plural.to_string())
            .or_default() += 1;
    }
    let ns = rr.namespace.as_deref();
    let (start, rx) = {
        let store = lock(&inner.store);
        let snapshot = |store: &crate::store::Store| {
            let objects = store.objs(&rr.info.id, ns);
            (
                WatchStart::Snapshot {
                    objects,
                    rv: store.current_rv(),
                },
                store.subscribe(),
            )
        };
        if decision.expire {
            let rv = match params.rv {
                Rv::At(n) => n,
                _ => store.current_rv(),
            };
            (
                WatchStart::Expired {
                    requested: rv,
                    oldest: store.current_rv(),
                },
                store.subscribe(),
            )
        } else if let Some(e) = stale {
            (WatchStart::Failed(e.to_status()), store.subscribe())
        } else if params.send_initial_events {
            snapshot(&store)
        } else {
            match params.rv {
                Rv::Unset | Rv::Any => snapshot(&store),
                Rv::At(rv) => match store.replay_after(rv) {
                    Replay::Events(events, rx) => (
                        WatchStart::Replay {
                            events,
                            from_rv: rv,
                        },
                        rx,
                    ),
                    Replay::Expired { compacted_rv } => (
                        WatchStart::Expired {
                            requested: rv,
                            oldest: compacted_rv,
                        },
                        store.subscribe(),
                    ),
                },
            }
        }
    };
    let spec = WatchSpec {
        info: rr.info.clone(),
        namespace: rr.namespace,
        selectors,
        bookmarks: params.bookmarks,
        bookmark_interval: inner.config.bookmark_interval,
        timeout: Some(crate::limits::watch_timeout(
            params.timeout,
            inner.config.watch_timeout,
        )),
        initial_events_end: params.send_initial_events,
        table: table.map(|t| (t, inner.clock.clone())),
        plan_changes: Some(watch::PlanChanges::new(inner.faults.clone())),
    };
    let s = watch::stream(spec, start, rx, decision.watch, inner.stats.clone());
    let mut resp = if table.is_none() && wire.watch_in_protobuf(&rr.info) {
        let mut resp = Response::new(SimBody::stream(crate::protobuf::watch_stream(
            rr.info.clone(),
            s,
        )));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, crate::protobuf::watch_content_type());
        resp
    } else {
        let mut resp = Response::new(SimBody::stream(s));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    };
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}
