/*!
Policy files → validated model. `file` mirrors the YAML (with line numbers), `load` validates
it into `model`, which is what the gateway runs on, `route`
normalises request paths and matches them against route templates.
*/
pub mod categories;
pub mod file;
pub mod load;
pub mod model;
pub mod route;
mod tls;

pub use load::{
    base_dir, env_name_shown, env_variable, env_variable_unquoted, load, load_partly, Diagnostic,
    Env, Loaded, Partial, PartnerTlsOnly, PolicySource, SourceFile,
};
pub use model::*;
pub use route::{normalize_path, RouteMatch};
