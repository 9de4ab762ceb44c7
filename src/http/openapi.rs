//! The OpenAPI 3.1 description of the HTTP API, generated from the handlers' annotations
//! (`utoipa`) and served at `/v1/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "jitmux", description = "Just-in-time archive transmux: each user's recordings as MP4 files, quasi-streams and live tails."),
    paths(super::files::files, super::clips::clip, super::exports::create, super::exports::list, super::exports::get_one, super::exports::cancel, super::thumbnails::thumbnail, super::share::share, super::me::me, super::ingest::put),
    components(schemas(
        super::listing::Listing,
        super::listing::Entry,
        super::exports::ExportRequest,
        super::exports::ExportStatus,
        super::exports::ExportList,
        super::exports::ItemStatus,
        super::exports::ItemError,
        crate::jobs::export::ExportItem,
        crate::jobs::export::ClipItem,
        crate::jobs::export::Destination,
        crate::jobs::export::ZipDestination,
        super::share::ShareRequest,
        super::share::ShareResponse,
        super::me::Me,
        super::me::MeLimits,
        super::me::MeActive,
        super::me::MeInstance,
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
