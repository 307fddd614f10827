//! The API contract: an OpenAPI 3.1 document generated from the handlers' own annotations and
//! types (utoipa), served at `GET /api/v1/openapi.json`. What every operation shares — the
//! bearer scheme, 401/403 for a missing or refused session, 400/413/422 for a body that cannot
//! be used, 503 and `Retry-After` for an outage — is added here once, from what each operation
//! declares, so no handler repeats it and none can forget it. A test compares the document with
//! the routes Rocket mounts, and `scripts/test` fuzzes a live app against it (schemathesis).

use rocket::fairing::AdHoc;
use rocket::http::ContentType;
use rocket::{State, get, routes};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, ObjectBuilder, RefOr, Type};
use utoipa::{Modify, OpenApi};

use crate::auth::{self, security};
use crate::error::ApiError;
use crate::{account, admin, bank, transfer};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "redbank API",
        description = "Sign-in, sessions, strong authentication, the account and transfers of \
            redbank, for mobile clients. Authenticate with `Authorization: Bearer <token>` from \
            `POST /api/v1/login` (browser sessions use their cookie and a CSRF header instead). \
            Live updates: `GET /events` (server-sent events) with the same bearer token. \
            Every error is JSON: `{\"error\": \"…\"}`.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        openapi_json,
        auth::signin::routes::api_login,
        auth::sessions::routes::api_me,
        auth::sessions::routes::api_logout,
        auth::sessions::routes::api_refresh,
        auth::sessions::routes::api_sessions,
        auth::sessions::routes::api_revoke_others,
        auth::sessions::routes::api_revoke,
        auth::signin::routes::login_totp,
        auth::signin::routes::login_recovery,
        auth::signin::routes::login_renew,
        auth::signin::routes::login_passkey_options,
        auth::signin::routes::login_passkey,
        security::routes::totp_begin,
        security::routes::totp_confirm,
        security::routes::totp_remove,
        security::routes::recovery_renew,
        security::routes::passkey_options,
        security::routes::passkey_add,
        security::routes::passkey_list,
        security::routes::passkey_remove,
        auth::step_up::routes::step_up_totp,
        auth::step_up::routes::step_up_recovery,
        auth::step_up::routes::step_up_password,
        auth::step_up::routes::step_up_passkey_options,
        auth::step_up::routes::step_up_passkey,
        security::routes::security_activity,
        security::routes::not_me,
        account::routes::password_check,
        account::routes::password_change,
        account::routes::password_forgot,
        account::routes::password_reset_options,
        account::routes::password_reset_passkey,
        account::routes::password_reset,
        account::routes::open_account,
        account::routes::signup_passkey_options,
        account::routes::email_verify,
        account::routes::email_change,
        account::routes::email_undo,
        account::closing::routes::account_export,
        account::closing::routes::account_close,
        bank::routes::api_account,
        bank::routes::api_balance,
        bank::routes::api_spenders,
        bank::routes::api_transactions,
        bank::routes::api_search,
        bank::routes::seed_balance,
        bank::routes::seed_spenders,
        bank::routes::seed_transactions,
        bank::routes::seed_search,
        transfer::routes::api_create,
        transfer::routes::api_get,
        transfer::routes::api_options,
        transfer::routes::api_confirm,
        admin::routes::api_sessions,
        admin::routes::api_revoke,
        admin::routes::api_revoke_user,
        admin::routes::api_reset_factors,
        admin::routes::api_failed_sign_ins,
        admin::routes::api_stats,
    ),
    components(schemas(ApiError)),
    security(("bearer" = [])),
    modifiers(&Shared),
    tags(
        (name = "session", description = "Signing in with a password, and the caller's sessions"),
        (name = "sign-in", description = "Finishing a sign-in with a second factor, or a passkey"),
        (name = "factors", description = "Authenticator app, passkeys, recovery codes, security activity"),
        (name = "step-up", description = "Confirming it is you again before a sensitive action (RFC 9470)"),
        (name = "password", description = "The password rules, changing the password, and resetting a forgotten one"),
        (name = "account", description = "The caller's account"),
        (name = "seed", description = "The Banking-On-Redis demo's endpoints, same shapes"),
        (name = "transfers", description = "Money to another account, confirmed by strong authentication"),
        (name = "admin", description = "The operator console (role `admin`, at AAL2; 403 for others)"),
        (name = "meta", description = "This document"),
    ),
)]
pub struct ApiDoc;

/// The document, built once at ignition.
pub struct Document(String);

/// This document (OpenAPI 3.1).
#[utoipa::path(
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
#[get("/api/v1/openapi.json")]
pub fn openapi_json(doc: &State<Document>) -> (ContentType, String) {
    (ContentType::JSON, doc.0.clone())
}

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("OpenAPI", |rocket| async {
        match serde_json::to_string_pretty(&document()) {
            Ok(json) => rocket.manage(Document(json)).mount("/", routes![openapi_json]),
            Err(e) => {
                rocket::error!("the OpenAPI document could not be written: {e}");
                rocket
            }
        }
    })
}

/// The document as JSON. utoipa 5.5 writes a Link object's fields in snake case
/// (`operation_id`); OpenAPI spells them in camel case, and tools ignore the others.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let links = doc["paths"].as_object_mut().into_iter().flat_map(|paths| paths.values_mut());
    let links = links
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.to_owned(), value);
            }
        }
    }
    let spread = match doc["components"]["schemas"].as_object_mut() {
        Some(schemas) => spread_tagged_unions(schemas),
        None => Vec::new(),
    };
    // An enum now spread into every struct that used it is no longer named: it would only be
    // one more set of models in a generated client.
    let text = doc.to_string();
    for name in spread {
        if !text.contains(&format!("\"#/components/schemas/{name}\"")) {
            if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
                schemas.remove(&name);
            }
        }
    }
    doc
}

/// A struct that flattens a tagged enum into its own fields (`ActivityView`: `at`, `ip`,
/// `user_agent` and the `Activity`) is written by utoipa as an `allOf` of the enum's `oneOf` and
/// an object — which client generators reject (openapi-python-client drops the whole response).
/// Each is rewritten as what it is on the wire: a `oneOf` of whole objects, one per variant, each
/// with the struct's fields too. Answers the enums it spread.
fn spread_tagged_unions(schemas: &mut serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    use serde_json::Value;
    let mut spread_enums = Vec::new();
    let names: Vec<String> = schemas.keys().cloned().collect();
    for name in names {
        let Some([first, own]) = schemas[&name]["allOf"].as_array().map(Vec::as_slice) else {
            continue;
        };
        let target = first["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/"));
        let Some(target) = target.map(str::to_owned) else { continue };
        let Some(variants) = schemas.get(&target).and_then(|t| t["oneOf"].as_array()) else {
            continue;
        };
        let spread: Vec<Value> = variants
            .iter()
            .map(|variant| {
                let mut whole = variant.clone();
                for field in ["properties", "required"] {
                    match (&mut whole[field], &own[field]) {
                        (Value::Object(mine), Value::Object(theirs)) => {
                            mine.extend(theirs.clone());
                        }
                        (Value::Array(mine), Value::Array(theirs)) => {
                            mine.extend(theirs.iter().cloned());
                        }
                        (slot @ Value::Null, theirs) => *slot = theirs.clone(),
                        _ => {}
                    }
                }
                whole
            })
            .collect();
        let description = schemas[&name]["description"].clone();
        let mut replaced = serde_json::json!({ "oneOf": spread });
        if !description.is_null() {
            replaced["description"] = description;
        }
        schemas.insert(name, replaced);
        spread_enums.push(target);
    }
    spread_enums
}

/// Adds what operations share, from what each declares.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        for item in doc.paths.paths.values_mut() {
            let ops =
                [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                add_shared(op);
            }
        }
    }
}

/// Whether the operation needs a session: it inherits the document's bearer requirement, or names
/// one (an empty requirement, `security(())`, marks the public ones).
fn needs_session(op: &Operation) -> bool {
    match &op.security {
        None => true,
        Some(reqs) => !reqs.iter().any(|r| r == &Default::default()),
    }
}

fn add_shared(op: &mut Operation) {
    let has_body = op.request_body.is_some();
    let has_query = op.parameters.as_ref().is_some_and(|ps| {
        ps.iter().any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query))
    });
    let session = needs_session(op);
    let responses = &mut op.responses.responses;
    let mut add = |code: &str, description: &str| {
        responses.entry(code.to_owned()).or_insert_with(|| error(description).into());
    };
    if session {
        add(
            "401",
            "No valid session or token; or, for a sensitive action, a step-up is needed first \
             (`error` = `step_up_required`, with RFC 9470's `WWW-Authenticate` challenge)",
        );
        add(
            "403",
            "The session may not do this (a browser session's token used as a bearer token, a \
             missing CSRF header on a cookie request, or a role it lacks)",
        );
    }
    if has_body {
        add("400", "The body could not be read");
        add("413", "The body is too large");
        add("422", "The body is not the JSON this operation expects");
    }
    if has_query {
        add("400", "A query parameter has a value this operation cannot use");
    }
    // The document itself is made at start: it never waits for Redis.
    if op.operation_id.as_deref() != Some("openapi_json") {
        let busy = "Redis is unavailable or the app is too busy: retry after `Retry-After` seconds";
        add("503", busy);
    }
    // Every 429 and 503 says when to come back.
    for code in ["429", "503"] {
        if let Some(RefOr::T(response)) = responses.get_mut(code) {
            let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
            let header = HeaderBuilder::new()
                .schema(seconds)
                .description(Some("Seconds to wait before trying again"))
                .build();
            response.headers.insert("Retry-After".to_owned(), header);
        }
    }
}

fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(error_body())).build())
        .build()
}

fn error_body() -> RefOr<utoipa::openapi::schema::Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ApiError"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation answers 503 with `Retry-After`, and the secured ones 401 and 403; the
    /// public ones say so with an empty requirement.
    #[test]
    fn shared_responses_are_added() {
        let doc = ApiDoc::openapi();
        let login = doc.paths.paths["/api/v1/login"].post.as_ref().expect("login");
        assert!(!needs_session(login));
        assert!(!login.responses.responses.contains_key("403"));
        let me = doc.paths.paths["/api/v1/me"].get.as_ref().expect("me");
        assert!(needs_session(me));
        for code in ["401", "403", "503"] {
            assert!(me.responses.responses.contains_key(code), "{code}");
        }
        let RefOr::T(busy) = &me.responses.responses["503"] else { panic!("503 is inline") };
        assert!(busy.headers.contains_key("Retry-After"));
        let create = doc.paths.paths["/api/v1/transfers"].post.as_ref().expect("transfers");
        let RefOr::T(throttled) = &create.responses.responses["429"] else { panic!("429") };
        assert!(throttled.headers.contains_key("Retry-After"));
        assert!(create.responses.responses.contains_key("413"));
    }

    /// The security activity's entries are a `oneOf` of whole objects, one per kind, each with the
    /// entry's own fields: no `allOf` of a `oneOf` is left for a client generator to reject.
    #[test]
    fn a_flattened_tagged_enum_is_a_one_of_whole_objects() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let view = &schemas["ActivityView"];
        assert!(view.get("allOf").is_none(), "{view}");
        let kinds = view["oneOf"].as_array().expect("oneOf");
        let raw = serde_json::to_value(ApiDoc::openapi()).expect("document");
        let variants = raw["components"]["schemas"]["Activity"]["oneOf"].as_array().expect("enum");
        assert_eq!(kinds.len(), variants.len());
        assert!(schemas.get("Activity").is_none(), "the spread enum is still a schema of its own");
        for kind in kinds {
            assert_eq!(kind["type"], "object", "{kind}");
            for field in ["at", "ip", "user_agent", "type"] {
                assert!(kind["properties"].get(field).is_some(), "{field} in {kind}");
                assert!(
                    kind["required"].as_array().is_some_and(|r| r.iter().any(|f| f == field)),
                    "{field} required in {kind}"
                );
            }
        }
        let sign_in = kinds.iter().find(|k| k["properties"]["type"]["enum"][0] == "sign_in");
        assert!(sign_in.is_some_and(|k| k["properties"].get("new_device").is_some()));
        // Nothing else is an allOf of a union.
        for (name, schema) in schemas.as_object().expect("schemas") {
            for part in schema["allOf"].as_array().into_iter().flatten() {
                let target = part["$ref"].as_str().and_then(|r| r.rsplit('/').next());
                let union = target.is_some_and(|t| schemas[t].get("oneOf").is_some());
                assert!(!union, "{name} is an allOf of the union {target:?}");
            }
        }
    }
}
