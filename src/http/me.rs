//! `GET /v1/me`: the caller's program instance on this node.

use axum::extract::State;

use super::auth::Caller;
use super::instance::Kind;
use super::{ApiError, AppState};
use crate::model::rfc3339;

/// `GET /v1/me` answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Me {
    pub user: String,
    pub limits: MeLimits,
    pub active: MeActive,
    pub instance: MeInstance,
}

/// Per-user limits.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MeLimits {
    pub max_streams: usize,
    pub max_downloads: usize,
    pub max_workers: usize,
}

/// Bodies being sent now.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MeActive {
    pub streams: usize,
    pub downloads: usize,
}

/// The user's program instance on this node.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MeInstance {
    /// Creation time, RFC 3339.
    pub created: String,
}

/// `GET /v1/me`: the caller's instance: limits and what is in flight.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "me",
    responses(
        (status = 200, description = "The caller's instance", body = Me),
        (status = 401, description = "Missing or invalid token", body = String, content_type = "text/plain"),
    ),
    security(("bearer" = []))
)]
pub async fn me(State(state): State<AppState>, Caller(user): Caller) -> Result<axum::Json<Me>, ApiError> {
    let inst = state.instances.get(&user);
    Ok(axum::Json(Me {
        user: user.name,
        limits: MeLimits {
            max_streams: inst.limits.max_streams,
            max_downloads: inst.limits.max_downloads,
            max_workers: inst.limits.max_workers,
        },
        active: MeActive { streams: inst.active(Kind::Stream), downloads: inst.active(Kind::Download) },
        instance: MeInstance { created: rfc3339(inst.created_ms) },
    }))
}
