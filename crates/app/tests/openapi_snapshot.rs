//! The OpenAPI document of the example app, pinned: a change to routes,
//! schemas or rules in the document shows up in review as a snapshot diff.

#[test]
fn taskboard_openapi_document() {
    let model = charter_model::compile(include_str!("../../../examples/taskboard/app.md")).model.unwrap();
    insta::assert_json_snapshot!(charter_app::openapi::document(&model));
}

/// `email` filters are documented exactly when some kind of caller may
/// read every user's address (the server refuses them to everyone else).
#[test]
fn email_filters_are_documented_when_some_role_reads_every_address() {
    let user_params = |spec: &str| -> Vec<String> {
        let model = charter_model::compile(spec).model.unwrap();
        let doc = charter_app::openapi::document(&model);
        doc["paths"]["/api/users"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let spec = |rule: &str| {
        format!("# Staff\n\n## Roles\n- member (default)\n- admin\n\n## Entities\n\n### User\n| field | type | rules |\n|-------|------|-------|\n| desk  | int  |       |\n\nPermissions:\n- read: signed in\n{rule}")
    };
    let admin = user_params(&spec("- read email: admin\n"));
    assert!(admin.iter().any(|p| p == "email") && admin.iter().any(|p| p == "email__contains"), "{admin:?}");
    for hidden in [spec(""), spec("- read email: desk = 1\n")] {
        let params = user_params(&hidden);
        assert!(params.iter().all(|p| !p.starts_with("email")), "{params:?}");
        assert!(params.iter().any(|p| p == "desk"));
    }
}
