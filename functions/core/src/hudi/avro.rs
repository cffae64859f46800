//! The Avro schema Hudi keeps in each commit (`extraMetadata.schema`), derived from the Arrow
//! schema of the data columns. Readers cast what they read to this schema, so the logical types
//! must match the Parquet types exactly: Timestamp(µs, UTC) is `timestamp-micros` (a `-millis`
//! schema reads garbage, `local-timestamp-*` is not supported by the Hudi reader), Date32 is `date`.
//! The `_hoodie_*` meta fields are left out, as Hudi's own writers do: readers add them.

use arrow_schema::{DataType, Schema, TimeUnit};
use serde_json::{Value, json};

use crate::error::{CoreError, Result};

pub fn avro_schema(table_name: &str, schema: &Schema) -> Result<String> {
    let fields = schema
        .fields()
        .iter()
        .map(|field| {
            let base = avro_type(field.data_type()).ok_or_else(|| CoreError::Table {
                table: table_name.to_owned(),
                message: format!(
                    "column {} has no Avro mapping: {}",
                    field.name(),
                    field.data_type()
                ),
            })?;
            Ok(if field.is_nullable() {
                json!({"name": field.name(), "type": ["null", base], "default": null})
            } else {
                json!({"name": field.name(), "type": base})
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let record = json!({
        "type": "record",
        "name": format!("{table_name}_record"),
        "namespace": format!("hoodie.{table_name}"),
        "fields": fields,
    });
    Ok(record.to_string())
}

fn avro_type(data_type: &DataType) -> Option<Value> {
    Some(match data_type {
        DataType::Utf8 => json!("string"),
        DataType::Int32 => json!("int"),
        DataType::Int64 => json!("long"),
        DataType::Float64 => json!("double"),
        DataType::Boolean => json!("boolean"),
        DataType::Date32 => json!({"type": "int", "logicalType": "date"}),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC" => {
            json!({"type": "long", "logicalType": "timestamp-micros"})
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::Field;

    use super::*;

    #[test]
    fn maps_logical_types_and_nullability() {
        let schema = Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
                true,
            ),
            Field::new("d", DataType::Date32, true),
        ]);
        let avro: Value = serde_json::from_str(&avro_schema("patient", &schema).unwrap()).unwrap();
        assert_eq!(avro["name"], "patient_record");
        assert_eq!(avro["fields"][0]["type"], "string");
        assert_eq!(
            avro["fields"][1]["type"][1]["logicalType"],
            "timestamp-micros"
        );
        assert_eq!(avro["fields"][2]["type"][1]["logicalType"], "date");
        assert_eq!(avro["fields"][2]["default"], Value::Null);
    }

    #[test]
    fn refuses_local_timestamps() {
        let schema = Schema::new(vec![Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        )]);
        assert!(avro_schema("x", &schema).is_err());
    }
}
