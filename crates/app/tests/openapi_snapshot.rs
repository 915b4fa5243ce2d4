//! The OpenAPI document of the example app, pinned: a change to routes,
//! schemas or rules in the document shows up in review as a snapshot diff.

#[test]
fn taskboard_openapi_document() {
    let model = charter_model::compile(include_str!("../../../examples/taskboard/app.md")).model.unwrap();
    insta::assert_json_snapshot!(charter_app::openapi::document(&model));
}
