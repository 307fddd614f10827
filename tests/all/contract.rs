//! The API contract: the OpenAPI document served at `/api/v1/openapi.json` names exactly the API
//! routes Rocket mounts, with their methods (schemathesis fuzzes a live app against it in
//! `tests/contract.rs`).

use std::collections::BTreeSet;

use rocket::http::{ContentType, Status};
use serde_json::Value;

use crate::common::TestApp;

/// `/api/v1/transfers/<id>/confirm?<q>` → `/api/v1/transfers/{id}/confirm`.
fn openapi_path(rocket_path: &str) -> String {
    let path = rocket_path.split('?').next().unwrap_or_default();
    path.split('/')
        .map(|seg| match seg.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
            Some(name) => format!("{{{}}}", name.trim_end_matches("..")),
            None => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[rocket::async_test]
async fn the_document_covers_every_mounted_api_route_and_nothing_else() {
    let app = TestApp::new().await;
    let res = app.get_expecting("/api/v1/openapi.json", Status::Ok, ContentType::JSON).await;
    let doc: Value = res.into_json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    let mounted: BTreeSet<(String, String)> = app
        .client
        .rocket()
        .routes()
        .filter(|r| {
            let path = r.uri.path();
            path.starts_with("/api/v1/") || path.starts_with("/transaction/")
        })
        .map(|r| (r.method.as_str().to_lowercase(), openapi_path(&r.uri.to_string())))
        .collect();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone()))
        })
        .filter(|(method, _)| ["get", "post", "put", "delete", "patch"].contains(&method.as_str()))
        .collect();
    assert!(mounted.len() > 40, "the API routes: {mounted:?}");
    let missing: Vec<_> = mounted.difference(&documented).collect();
    assert!(missing.is_empty(), "mounted but not in the OpenAPI document: {missing:?}");
    let phantom: Vec<_> = documented.difference(&mounted).collect();
    assert!(phantom.is_empty(), "documented but not mounted: {phantom:?}");

    // Every operation says what its errors look like and when to come back after a 503, and
    // has its own operationId (links name them).
    let mut ids = BTreeSet::new();
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        let id = op["operationId"].as_str().unwrap();
        assert!(ids.insert(id), "operationId {id} twice");
        if id == "openapi_json" {
            // Made at start: the one operation that never waits for Redis.
            assert!(op["responses"]["503"].is_null());
            continue;
        }
        let busy = &op["responses"]["503"];
        assert_eq!(busy["headers"]["Retry-After"]["schema"]["type"], "integer", "{method} {path}");
        assert_eq!(
            busy["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ApiError",
            "{method} {path}"
        );
        // Links (which the fuzzer follows) name operations that exist.
        let links =
            op["responses"].as_object().unwrap().values().filter_map(|r| r["links"].as_object());
        for link in links.flat_map(|l| l.values()) {
            let target = link["operationId"].as_str().unwrap_or_else(|| panic!("{link}"));
            let exists =
                doc["paths"].as_object().unwrap().values().any(|item| {
                    item.as_object().unwrap().values().any(|o| o["operationId"] == target)
                });
            assert!(exists, "{method} {path} links to {target}, which is not in the document");
        }
        let public = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r == &serde_json::json!({})));
        if !public {
            assert!(op["responses"]["401"].is_object(), "{method} {path} has no 401");
        }
    }
}

/// A transfer's amount is what clients may send: a positive number, or a decimal string of
/// dollars with at most two decimals (a client generator builds its type from this).
#[rocket::async_test]
async fn a_transfers_amount_is_documented_as_a_number_or_a_decimal_string() {
    let app = TestApp::new().await;
    let res = app.client.get("/api/v1/openapi.json").dispatch().await;
    let doc: Value = res.into_json().await.unwrap();
    let amount = &doc["components"]["schemas"]["NewTransfer"]["properties"]["amount"];
    let kinds: Vec<&str> =
        amount["oneOf"].as_array().unwrap().iter().filter_map(|s| s["type"].as_str()).collect();
    assert_eq!(kinds, ["number", "string"], "{amount}");
    assert_eq!(amount["oneOf"][0]["exclusiveMinimum"], 0, "{amount}");
    assert!(amount["oneOf"][1]["pattern"].as_str().unwrap().contains("[0-9]{1,2}"), "{amount}");
}

/// An error the document promises is the error the app sends: the `ApiError` shape.
#[rocket::async_test]
async fn errors_have_the_documented_shape() {
    let app = TestApp::new().await;
    let res = app.client.get("/api/v1/me").dispatch().await;
    assert_eq!(res.status(), Status::Unauthorized);
    let body: Value = res.into_json().await.unwrap();
    assert_eq!(body.as_object().unwrap().keys().collect::<Vec<_>>(), ["error"]);
}
