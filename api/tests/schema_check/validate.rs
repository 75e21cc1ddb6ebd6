//! A minimal OpenAPI v3 validator plus kube-cel: what the apiserver would say about creating
//! (or updating) an object, in its order: nulls pruned and defaults applied, then the schema,
//! then the CEL rules, which the apiserver skips when the schema already produced a "blocking"
//! error (a wrong type, a missing required field, an unsupported enum value, a too long string
//! or list).

use super::schema_of;
use super::structure::is_true;
use regex::Regex;
use serde_json::Value;

/// One validation error, with whether the apiserver would skip the CEL rules because of it.
pub struct Problem {
    pub message: String,
    pub blocking: bool,
}

pub fn at(path: &str) -> String {
    if path.is_empty() {
        "<root>".into()
    } else {
        path.to_string()
    }
}

pub fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => false,
    }
}

/// The OpenAPI keywords the Tally schemas use: type, nullable, enum, minimum/maximum,
/// minLength/maxLength, pattern, minItems/maxItems, required, properties,
/// additionalProperties, x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields,
/// and the uniqueness that x-kubernetes-list-type map/set imply. `default` is not applied here
/// (the caller defaults first, as the apiserver does) and `format` is not checked.
pub fn validate_value(s: &Value, v: &Value, path: &str, out: &mut Vec<Problem>) {
    let mut push = |message: String, blocking: bool| out.push(Problem { message, blocking });
    if v.is_null() {
        if !is_true(&s["nullable"]) {
            push(
                format!("{}: Invalid value: null: must not be null", at(path)),
                true,
            );
        }
        return;
    }
    if is_true(&s["x-kubernetes-int-or-string"]) {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            push(
                format!(
                    "{}: Invalid value: {v}: must be an integer or a string",
                    at(path)
                ),
                true,
            );
        }
        return;
    }
    match s["type"].as_str() {
        Some(ty) if !type_matches(ty, v) => {
            push(
                format!("{}: Invalid value: {v}: must be of type {ty}", at(path)),
                true,
            );
            return;
        }
        Some(_) => {}
        None => return, // preserve-unknown-fields without a type: anything goes
    }
    if let Some(allowed) = s["enum"].as_array() {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            push(
                format!(
                    "{}: Unsupported value: {v}: supported values: {}",
                    at(path),
                    list.join(", ")
                ),
                true,
            );
        }
    }
    if let Some(n) = v.as_f64() {
        let exclusive_min = is_true(&s["exclusiveMinimum"]);
        let exclusive_max = is_true(&s["exclusiveMaximum"]);
        if let Some(min) = s["minimum"].as_f64() {
            if n < min || (exclusive_min && n == min) {
                push(
                    format!(
                        "{}: Invalid value: {v}: should be greater than or equal to {min}",
                        at(path)
                    ),
                    false,
                );
            }
        }
        if let Some(max) = s["maximum"].as_f64() {
            if n > max || (exclusive_max && n == max) {
                push(
                    format!(
                        "{}: Invalid value: {v}: should be less than or equal to {max}",
                        at(path)
                    ),
                    false,
                );
            }
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if let Some(min) = s["minLength"].as_u64() {
            if len < min {
                push(
                    format!(
                        "{}: Invalid value: {v}: should be at least {min} chars long",
                        at(path)
                    ),
                    false,
                );
            }
        }
        if let Some(max) = s["maxLength"].as_u64() {
            if len > max {
                push(
                    format!("{}: Too long: may not be more than {max} bytes", at(path)),
                    true,
                );
            }
        }
        if let Some(pattern) = s["pattern"].as_str() {
            let re = Regex::new(pattern)
                .unwrap_or_else(|e| panic!("{}: bad pattern {pattern}: {e}", at(path)));
            if !re.is_match(text) {
                push(
                    format!(
                        "{}: Invalid value: {v}: {} in body should match '{pattern}'",
                        at(path),
                        at(path)
                    ),
                    false,
                );
            }
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(min) = s["minItems"].as_u64() {
            if (items.len() as u64) < min {
                push(
                    format!(
                        "{}: Invalid value: {}: should have at least {min} items",
                        at(path),
                        items.len()
                    ),
                    false,
                );
            }
        }
        if let Some(max) = s["maxItems"].as_u64() {
            if items.len() as u64 > max {
                push(
                    format!(
                        "{}: Too many: {}: must have at most {max} items",
                        at(path),
                        items.len()
                    ),
                    true,
                );
            }
        }
        let keys: Option<Vec<&str>> = match s["x-kubernetes-list-type"].as_str() {
            Some("set") => Some(Vec::new()),
            Some("map") => Some(
                s["x-kubernetes-list-map-keys"]
                    .as_array()
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        if let Some(keys) = keys {
            let identity = |item: &Value| -> Value {
                if keys.is_empty() {
                    item.clone()
                } else {
                    Value::Array(keys.iter().map(|k| item[*k].clone()).collect())
                }
            };
            let mut seen: Vec<Value> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let id = identity(item);
                if seen.contains(&id) {
                    push(format!("{path}[{i}]: Duplicate value: {id}"), false);
                } else {
                    seen.push(id);
                }
            }
        }
        for (i, item) in items.iter().enumerate() {
            validate_value(&s["items"], item, &format!("{path}[{i}]"), out);
        }
        return;
    }
    if let Some(fields) = v.as_object() {
        for r in s["required"].as_array().into_iter().flatten() {
            let name = r.as_str().unwrap_or("");
            if !fields.contains_key(name) {
                let child = if path.is_empty() {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                };
                out.push(Problem {
                    message: format!("{child}: Required value"),
                    blocking: true,
                });
            }
        }
        let props = s["properties"].as_object();
        let preserve = is_true(&s["x-kubernetes-preserve-unknown-fields"]);
        for (name, value) in fields {
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            if let Some(ps) = props.and_then(|p| p.get(name)) {
                validate_value(ps, value, &child, out);
            } else if s["additionalProperties"].is_object() {
                validate_value(&s["additionalProperties"], value, &child, out);
            } else if !preserve && s["additionalProperties"] != Value::Bool(true) {
                // kubectl asks for strict field validation: an unknown field fails the request.
                out.push(Problem {
                    message: format!("{child}: unknown field \"{name}\""),
                    blocking: true,
                });
            }
        }
    }
}

/// `v` without the null fields whose schema is not nullable: the apiserver drops them before
/// defaulting (and defaults them when the schema has a default), so that CEL rules never see
/// them.
pub fn prune_nulls(s: &Value, v: &Value) -> Value {
    match v {
        Value::Object(fields) => {
            let mut out = serde_json::Map::new();
            for (name, value) in fields {
                let child = s["properties"].get(name).or_else(|| {
                    s["additionalProperties"]
                        .as_object()
                        .map(|_| &s["additionalProperties"])
                });
                match child {
                    Some(cs) if value.is_null() && !is_true(&cs["nullable"]) => {}
                    Some(cs) => {
                        out.insert(name.clone(), prune_nulls(cs, value));
                    }
                    None => {
                        out.insert(name.clone(), value.clone());
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| prune_nulls(&s["items"], i)).collect())
        }
        other => other.clone(),
    }
}

/// What the apiserver would say about creating `obj` (or updating `old` into `obj`).
pub struct Report {
    /// Schema errors and failed CEL rules, as "path: message".
    pub errors: Vec<String>,
    /// Rules kube-cel could not evaluate (a broken rule, not a refused object).
    pub engine: Vec<String>,
}

pub fn check_report(obj: &Value, old: Option<&Value>) -> Report {
    let mut errors = Vec::new();
    let api_version = obj["apiVersion"].as_str().unwrap_or("");
    let kind = obj["kind"].as_str().unwrap_or("");
    let Some(version) = api_version.strip_prefix("tally.dev/") else {
        return Report {
            errors: vec![format!("apiVersion {api_version:?} is not tally.dev")],
            engine: vec![],
        };
    };
    let Some(schema) = schema_of(kind, version) else {
        return Report {
            errors: vec![format!("no kind {kind:?} in {api_version}")],
            engine: vec![],
        };
    };
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let subdomain =
        Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap();
    if name.is_empty() || name.len() > 253 || !subdomain.is_match(name) {
        errors.push(format!(
            "metadata.name: Invalid value: {name:?}: a DNS-1123 subdomain is required"
        ));
    }

    // Nulls of non-nullable fields dropped and defaults applied first, as the apiserver does;
    // then the schema (apiVersion, kind and metadata are the apiserver's own, not part of the
    // CRD schema).
    let obj = &prune_nulls(&schema, obj);
    let old = old.map(|o| prune_nulls(&schema, o));
    let old = old.as_ref();
    let defaulted = kube_cel::apply_defaults(&schema, obj);
    let mut body = defaulted.clone();
    if let Some(fields) = body.as_object_mut() {
        for k in ["apiVersion", "kind", "metadata"] {
            fields.remove(k);
        }
    }
    let mut problems = Vec::new();
    validate_value(&schema, &body, "", &mut problems);
    let blocking = problems.iter().any(|p| p.blocking);
    errors.extend(problems.into_iter().map(|p| p.message));

    let mut engine = Vec::new();
    if blocking {
        errors.push(
            "<root>: Invalid value: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
        );
    } else if let Err(failures) = kube_cel::validate(&schema, obj, old) {
        for f in failures {
            let line = format!("{}: {}", at(&f.field_path), f.message);
            if f.kind == kube_cel::ErrorKind::ValidationFailure {
                errors.push(line);
            } else {
                engine.push(format!("{line} [{:?}, rule `{}`]", f.kind, f.rule));
            }
        }
    }
    Report { errors, engine }
}

/// The errors for `obj`; panics when a rule could not be evaluated at all.
pub fn check(obj: &Value, old: Option<&Value>) -> Vec<String> {
    let report = check_report(obj, old);
    assert!(
        report.engine.is_empty(),
        "kube-cel could not evaluate rules of {} {}:\n  {}",
        obj["kind"],
        obj["metadata"]["name"],
        report.engine.join("\n  ")
    );
    report.errors
}
