//! `dynamodb`: GetItem (200 with the item as plain JSON, not DynamoDB's typed form; 404 when
//! there is none), PutItem from a JSON object (201), DeleteItem (204), and Query on the
//! partition key (200 with `items` and, when there are more, a `cursor` for the next page,
//! passed back as `?cursor=`).

use std::collections::HashMap;

use aws_sdk_dynamodb::{Client, primitives::Blob, types::AttributeValue};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use axum::response::Response;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::StatusCode;
use serde_json::{Map, Number, Value, json};

use super::{
    call::{Call, json_response, per_call, service_client},
    config::{DynamoDbAction, DynamoOperation},
};
use crate::error::Error;

/// An item's largest size (DynamoDB quotas).
const MAX_ITEM: usize = 400 * 1000;

type Item = HashMap<String, AttributeValue>;

pub struct DynamoRoute {
    client: Client,
    action: DynamoDbAction,
}

impl DynamoRoute {
    pub fn new(
        base: &aws_types::SdkConfig,
        http: Option<SharedHttpClient>,
        action: &DynamoDbAction,
    ) -> Self {
        Self {
            client: service_client!(aws_sdk_dynamodb, base, http),
            action: action.clone(),
        }
    }

    pub async fn call(&self, call: &mut Call) -> Result<Response, Error> {
        match self.action.operation_for(&call.parts.method) {
            DynamoOperation::Get => self.get(call).await,
            DynamoOperation::Put => self.put(call).await,
            DynamoOperation::Delete => self.delete(call).await,
            DynamoOperation::Query => self.query(call).await,
        }
    }

    /// The item's key attributes, from the route's templates.
    fn key(&self, call: &Call) -> Result<Item, Error> {
        self.action
            .key
            .iter()
            .map(|key| {
                let value = call.render(&key.value)?;
                if value.is_empty() {
                    return Err(Error::InvalidBody("a key attribute must not be empty"));
                }
                let value = if key.number {
                    if value.parse::<f64>().is_err() {
                        return Err(Error::InvalidBody(
                            "a numeric key attribute must be a number",
                        ));
                    }
                    AttributeValue::N(value)
                } else {
                    AttributeValue::S(value)
                };
                Ok((key.name.clone(), value))
            })
            .collect()
    }

    async fn get(&self, call: &mut Call) -> Result<Response, Error> {
        call.describe("dynamodb", "GetItem", self.action.table.as_str());
        let key = self.key(call)?;
        let output = call.settle(
            self.client
                .get_item()
                .table_name(&self.action.table)
                .set_key(Some(key))
                .customize()
                .config_override(per_call!(aws_sdk_dynamodb, call))
                .send()
                .await,
        )?;
        match output.item() {
            Some(item) => Ok(json_response(StatusCode::OK, &item_json(item))),
            None => Err(call.not_found("item")),
        }
    }

    async fn put(&self, call: &mut Call) -> Result<Response, Error> {
        call.describe("dynamodb", "PutItem", self.action.table.as_str());
        call.at_most(MAX_ITEM)?;
        let Value::Object(members) = call.json_body()? else {
            return Err(Error::InvalidBody("an item must be a JSON object"));
        };
        let mut item: Item = members
            .iter()
            .map(|(name, value)| (name.clone(), attribute(value)))
            .collect();
        // The key comes from the route (the path, a header...), whatever the body says.
        item.extend(self.key(call)?);
        call.settle(
            self.client
                .put_item()
                .table_name(&self.action.table)
                .set_item(Some(item.clone()))
                .set_condition_expression(self.action.condition.clone())
                .customize()
                .config_override(per_call!(aws_sdk_dynamodb, call))
                .send()
                .await,
        )?;
        Ok(json_response(StatusCode::CREATED, &item_json(&item)))
    }

    async fn delete(&self, call: &mut Call) -> Result<Response, Error> {
        call.describe("dynamodb", "DeleteItem", self.action.table.as_str());
        let key = self.key(call)?;
        call.settle(
            self.client
                .delete_item()
                .table_name(&self.action.table)
                .set_key(Some(key))
                .set_condition_expression(self.action.condition.clone())
                .customize()
                .config_override(per_call!(aws_sdk_dynamodb, call))
                .send()
                .await,
        )?;
        let mut response = Response::default();
        *response.status_mut() = StatusCode::NO_CONTENT;
        Ok(response)
    }

    async fn query(&self, call: &mut Call) -> Result<Response, Error> {
        call.describe("dynamodb", "Query", self.action.table.as_str());
        let Some((name, value)) = self.key(call)?.into_iter().next() else {
            return Err(Error::Internal("a query route without its key".into()));
        };
        let start = call
            .parts
            .uri
            .query()
            .and_then(|query| {
                url::form_urlencoded::parse(query.as_bytes())
                    .find(|(key, _)| key == "cursor")
                    .map(|(_, cursor)| cursor.into_owned())
            })
            .map(|cursor| decode_cursor(&cursor))
            .transpose()?;
        let output = call.settle(
            self.client
                .query()
                .table_name(&self.action.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", name)
                .expression_attribute_values(":pk", value)
                .limit(self.action.limit as i32)
                .set_exclusive_start_key(start)
                .customize()
                .config_override(per_call!(aws_sdk_dynamodb, call))
                .send()
                .await,
        )?;
        let items: Vec<Value> = output.items().iter().map(item_json).collect();
        let mut body = json!({ "items": items });
        if let Some(last) = output.last_evaluated_key() {
            body["cursor"] = json!(encode_cursor(last));
        }
        Ok(json_response(StatusCode::OK, &body))
    }
}

/// An item as plain JSON: numbers as numbers, binary as base64, sets as arrays.
fn item_json(item: &Item) -> Value {
    Value::Object(
        item.iter()
            .map(|(name, value)| (name.clone(), value_json(value)))
            .collect(),
    )
}

fn value_json(value: &AttributeValue) -> Value {
    let number = |text: &str| {
        serde_json::from_str::<Number>(text).map_or_else(|_| json!(text), Value::Number)
    };
    match value {
        AttributeValue::S(text) => json!(text),
        AttributeValue::N(text) => number(text),
        AttributeValue::B(blob) => {
            json!(base64::engine::general_purpose::STANDARD.encode(blob.as_ref()))
        }
        AttributeValue::Bool(flag) => json!(flag),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(items) => Value::Array(items.iter().map(value_json).collect()),
        AttributeValue::M(members) => Value::Object(
            members
                .iter()
                .map(|(name, value)| (name.clone(), value_json(value)))
                .collect(),
        ),
        AttributeValue::Ss(items) => json!(items),
        AttributeValue::Ns(items) => Value::Array(items.iter().map(|n| number(n)).collect()),
        AttributeValue::Bs(items) => Value::Array(
            items
                .iter()
                .map(|b| json!(base64::engine::general_purpose::STANDARD.encode(b.as_ref())))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// A JSON value as an attribute: numbers `N`, strings `S`, arrays `L`, objects `M`.
fn attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(flag) => AttributeValue::Bool(*flag),
        Value::Number(number) => AttributeValue::N(number.to_string()),
        Value::String(text) => AttributeValue::S(text.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(attribute).collect()),
        Value::Object(members) => AttributeValue::M(
            members
                .iter()
                .map(|(name, value)| (name.clone(), attribute(value)))
                .collect(),
        ),
    }
}

/// The next page's start: the last key, in DynamoDB's typed JSON (key attributes are `S`,
/// `N` or `B`), base64url.
fn encode_cursor(key: &Item) -> String {
    let typed: Map<String, Value> = key
        .iter()
        .filter_map(|(name, value)| {
            let typed = match value {
                AttributeValue::S(text) => json!({ "S": text }),
                AttributeValue::N(text) => json!({ "N": text }),
                AttributeValue::B(blob) => {
                    json!({ "B": URL_SAFE_NO_PAD.encode(blob.as_ref()) })
                }
                _ => return None,
            };
            Some((name.clone(), typed))
        })
        .collect();
    URL_SAFE_NO_PAD.encode(Value::Object(typed).to_string())
}

fn decode_cursor(cursor: &str) -> Result<Item, Error> {
    const INVALID: Error = Error::InvalidBody("the cursor is not one this route gave out");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| INVALID)?;
    let Ok(Value::Object(members)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(INVALID);
    };
    members
        .into_iter()
        .map(|(name, typed)| {
            let value = match (typed.get("S"), typed.get("N"), typed.get("B")) {
                (Some(Value::String(text)), None, None) => AttributeValue::S(text.clone()),
                (None, Some(Value::String(text)), None) if text.parse::<f64>().is_ok() => {
                    AttributeValue::N(text.clone())
                }
                (None, None, Some(Value::String(encoded))) => AttributeValue::B(Blob::new(
                    URL_SAFE_NO_PAD.decode(encoded).map_err(|_| INVALID)?,
                )),
                _ => return Err(INVALID),
            };
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_json_and_attributes_convert_both_ways() {
        let json = json!({ "id": "a", "n": 3, "f": 1.5, "ok": true, "none": null,
                           "tags": ["x", 2], "profile": { "city": "London" } });
        let Value::Object(members) = &json else {
            unreachable!()
        };
        let item: Item = members
            .iter()
            .map(|(name, value)| (name.clone(), attribute(value)))
            .collect();
        assert_eq!(item["n"], AttributeValue::N("3".into()));
        assert_eq!(item_json(&item), json);
    }

    #[test]
    fn a_cursor_round_trips_and_a_forged_one_is_refused() {
        let key: Item = [
            ("pk".to_owned(), AttributeValue::S("user#1".into())),
            ("sk".to_owned(), AttributeValue::N("42".into())),
        ]
        .into();
        assert_eq!(decode_cursor(&encode_cursor(&key)).unwrap(), key);
        assert!(decode_cursor("not base64!").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode(r#"{"pk":{"N":"x"}}"#)).is_err());
    }
}
