/*!
Policy files → validated model. `file` mirrors the YAML (with line numbers), `model` is what
the gateway runs on, `path` is the field-path language, `route` normalises request paths and
matches them against route templates.
*/
pub mod path;
pub mod model;

pub use model::*;
pub use path::{FieldPath, PathError, Segment};
