//! The OpenAPI 3.1 description of the HTTP API, generated from the handlers' annotations
//! (`utoipa`) and served at `/v1/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "jitmux", description = "Just-in-time archive transmux: each user's recordings as MP4 files, quasi-streams and live tails."),
    paths(crate::service::files, crate::service::thumbnail, crate::service::share, crate::service::me, crate::ingest::put),
    components(schemas(
        crate::service::Listing,
        crate::service::Entry,
        crate::service::ShareRequest,
        crate::service::ShareResponse,
        crate::service::Me,
        crate::service::MeLimits,
        crate::service::MeActive,
        crate::service::MeInstance,
    )),
    modifiers(&Security)
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        let bearer = || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        c.add_security_scheme("bearer", bearer());
        c.add_security_scheme("ingest_key", bearer());
    }
}

/// The API description.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
