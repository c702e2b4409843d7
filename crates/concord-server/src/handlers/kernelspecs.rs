//! `/api/kernelspecs`, `/api/kernelspecs/{name}` and `/kernelspecs/{name}/{file}` (logos,
//! `kernel.js`, `kernel.css`), as jupyter_server serves them.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use concord_authz::{Action, Resource, ResourceType};
use concord_kernels::KernelSpecError;
use serde_json::{json, Map, Value};

use crate::http::error::{ApiError, ApiResult};
use crate::http::guard::Guard;
use crate::http::matcher::RouteParams;
use crate::state::App;

/// A kernelspec as an authorization resource (type `kernelspecs`, its name as the id), so a
/// policy that tells kernelspecs apart can hide some.
fn spec_resource(name: &str) -> Resource {
    Resource {
        id: Some(name.to_string()),
        ..Resource::service(ResourceType::Kernelspecs)
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Kernel spec {name} not found"))
}

/// `GET /api/kernelspecs`: `{default, kernelspecs: {name: model}}`, only what the caller
/// may read.
pub async fn list(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
) -> ApiResult<Response> {
    let svc = &app.kernels;
    let km = svc.kernels.clone();
    let base_url = app.settings.base_url.clone();
    // Reading kernel.json files is file work: off the async threads.
    let all = tokio::task::spawn_blocking(move || {
        km.kernelspecs()
            .find_all()
            .into_iter()
            .map(|(name, spec)| (name, spec.model(&base_url)))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|_| ApiError::internal("Listing kernelspecs failed unexpectedly"))?;
    let mut specs = Map::new();
    for (name, model) in all {
        if guard.may(Action::Read, &spec_resource(&name)) {
            specs.insert(name, model);
        }
    }
    let default = svc.kernels.config().default_kernel_name.clone();
    Ok(Json(json!({"default": default, "kernelspecs": Value::Object(specs)})).into_response())
}

/// `GET /api/kernelspecs/{kernel_name}`.
pub async fn get(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let svc = &app.kernels;
    let name = params.get("kernel_name").unwrap_or_default().to_string();
    if !guard.may(Action::Read, &spec_resource(&name)) {
        return Err(not_found(&name));
    }
    let km = svc.kernels.clone();
    let lookup = name.clone();
    let spec = tokio::task::spawn_blocking(move || km.kernelspecs().get(&lookup))
        .await
        .map_err(|_| ApiError::internal("Reading the kernelspec failed unexpectedly"))?
        .map_err(|_| not_found(&name))?;
    Ok(Json(spec.model(&app.settings.base_url)).into_response())
}

/// `GET /kernelspecs/{kernel_name}/{*path}`: a file of the kernelspec's directory (never
/// outside it).
pub async fn resource(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    Extension(params): Extension<RouteParams>,
) -> ApiResult<Response> {
    let svc = &app.kernels;
    let name = params.get("kernel_name").unwrap_or_default().to_string();
    let raw = params.get("path").unwrap_or_default();
    let file = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::not_found("Not Found"))?
        .into_owned();
    if !guard.may(Action::Read, &spec_resource(&name)) {
        return Err(not_found(&name));
    }
    let km = svc.kernels.clone();
    let (lookup, wanted) = (name.clone(), file.clone());
    // Reading the file is file work: off the async threads.
    let read = tokio::task::spawn_blocking(move || km.kernelspecs().resource(&lookup, &wanted))
        .await
        .map_err(|_| ApiError::internal("Reading the kernelspec resource failed unexpectedly"))?;
    let resource = match read {
        Ok(resource) => resource,
        Err(KernelSpecError::NoSuchKernel(_)) => return Err(not_found(&name)),
        Err(_) => return Err(ApiError::not_found(format!("File {file} not found"))),
    };
    let mut response = (StatusCode::OK, resource.bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(resource.mime_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if file.to_ascii_lowercase().ends_with(".png") {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=2592000"),
        );
    }
    Ok(response)
}
