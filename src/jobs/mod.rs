//! Background jobs that outlive a request: export jobs ([`export`]), queued in the catalog and
//! run by whichever node claims them. Jobs know files only through [`export::Items`], which the
//! layer above (HTTP, the CLI) provides over the media layer, so this module uses only the
//! catalog, the store and the model.

pub mod export;
