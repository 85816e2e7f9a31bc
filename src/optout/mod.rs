/*!
Opt-out data on disk: the durable [`store`] the gateway, the admin API and the `optouts`
commands share. The in-memory set and the bulk file formats are in `gateway_core::optout`.
*/

pub mod store;

pub use store::{ImportSummary, OptOutStore};
