//! `/api`: the JSON API. One module per area.

pub mod openapi;
pub mod records;
