//! What `GET /v1/resources` lists: every resource a controller owns, with
//! its desired state (from the applied config) next to what the machine
//! shows, and whether they agree (Talos' "resources you can list"). The
//! types are the API's ([`basalt_api::rpc::Resource`]); each controller
//! builds its entries, converting its internal state with the `From` impls
//! of [`crate::api_views`].

pub use basalt_api::rpc::{Concern, Resource, ResourceState};
