//! Row ids as distinct types: catalog identities (`BIGINT`), never mixed up with one another.

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type, serde::Serialize)]
        #[sqlx(transparent)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    /// A user: the owner of a virtual file tree (`users.id`).
    UserId
);
id!(
    /// A camera of a user (`cameras.id`).
    CameraId
);
id!(
    /// A recording: one file of the tree (`recordings.id`).
    RecordingId
);
id!(
    /// An export job (`exports.id`).
    ExportId
);
