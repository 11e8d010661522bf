//! The OpenAPI schemas of the task API's types, built from the task types'
//! own declarations (`kinds/`), so that the document lists every type with
//! exactly the payload its `parse` accepts.

use std::borrow::Cow;

use utoipa::{
    openapi::{
        schema::{Object, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type},
        RefOr,
    },
    PartialSchema, ToSchema,
};

use super::{TaskRequest, TaskType, MAX_FAIL_TIMES};

impl PartialSchema for TaskType {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(TaskType::ALL.iter().map(|kind| kind.as_str())))
            .description(Some("A task type."))
            .into()
    }
}

impl ToSchema for TaskType {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TaskType")
    }
}

/// `payload.fail_times`, which every task type accepts (`null`: 0).
fn fail_times() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .minimum(Some(0))
        .maximum(Some(MAX_FAIL_TIMES))
        .description(Some(
            "How many first attempts fail on purpose (trying out retries and dead letters).",
        ))
        .build()
}

/// One task type's request: `{"type": "<name>", "payload": {...}}`; the
/// payload may be left out (or `null`) when nothing in it is required.
fn request_of(kind: TaskType) -> Object {
    let mut payload = kind.payload_schema();
    let payload_required = !payload.required.is_empty();
    if !payload_required {
        payload.schema_type = SchemaType::from_iter([Type::Object, Type::Null]);
    }
    payload
        .properties
        .insert("fail_times".into(), fail_times().into());
    let builder = ObjectBuilder::new()
        .schema_type(Type::Object)
        .title(Some(kind.as_str()))
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([kind.as_str()])),
        )
        .required("type")
        .property("payload", payload);
    if payload_required {
        builder.required("payload").build()
    } else {
        builder.build()
    }
}

/// The body of `POST /api/tasks`: one of the task types' requests.
impl PartialSchema for TaskRequest {
    fn schema() -> RefOr<Schema> {
        TaskType::ALL
            .iter()
            .fold(OneOfBuilder::new(), |one_of, &kind| {
                one_of.item(request_of(kind))
            })
            .description(Some("A task: its type and the payload that type takes."))
            .into()
    }
}

impl ToSchema for TaskRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TaskRequest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The examples each type's schema describes are accepted, and what
    /// the schema rules out is refused.
    #[test]
    fn the_schema_and_the_validation_agree_on_examples() {
        let accepted = [
            json!({"type": "echo"}),
            json!({"type": "echo", "payload": {"anything": [1, 2]}}),
            json!({"type": "sleep", "payload": {"ms": 0}}),
            json!({"type": "sleep", "payload": {"ms": 5.0, "fail_times": null}}),
            json!({"type": "echo", "payload": null}),
            json!({"type": "sleep", "payload": {"ms": 10000, "fail_times": 100}}),
            json!({"type": "hash", "payload": {"data": ""}}),
            json!({"type": "hash", "payload": {"data": "x", "rounds": 100000}}),
        ];
        for body in accepted {
            assert!(TaskRequest::from_json(&body).is_ok(), "{body}");
        }
        let refused = [
            json!({"type": "sleep"}),
            json!({"type": "sleep", "payload": {"ms": 10001}}),
            json!({"type": "hash", "payload": {"data": "x", "rounds": 0}}),
            json!({"type": "echo", "payload": {"fail_times": 101}}),
            json!({"type": "echo", "payload": {"fail_times": 1.5}}),
            json!({"type": "sleep", "payload": null}),
        ];
        for body in refused {
            assert!(TaskRequest::from_json(&body).is_err(), "{body}");
        }
        let document = serde_json::to_value(TaskRequest::schema()).unwrap();
        let kinds = document["oneOf"].as_array().unwrap();
        assert_eq!(kinds.len(), TaskType::ALL.len());
        let sleep = &kinds[1];
        assert_eq!(sleep["properties"]["type"]["enum"], json!(["sleep"]));
        assert_eq!(sleep["required"], json!(["type", "payload"]));
        assert_eq!(sleep["properties"]["payload"]["required"], json!(["ms"]));
        assert_eq!(
            sleep["properties"]["payload"]["properties"]["ms"]["maximum"],
            10000
        );
        assert_eq!(
            kinds[0]["required"],
            json!(["type"]),
            "echo's payload is optional"
        );
    }
}
