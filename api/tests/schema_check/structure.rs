//! The structural rules of CRD schemas (what kube-apiserver refuses), and the schema nodes
//! CEL rules reach, for the cost checks.

use regex::Regex;
use serde_json::Value;

pub const SCALARS: [&str; 4] = ["string", "integer", "number", "boolean"];
pub const TYPES: [&str; 6] = ["object", "array", "string", "integer", "number", "boolean"];
/// OpenAPI keywords a structural CRD schema may not use.
pub const FORBIDDEN: [&str; 12] = [
    "$ref",
    "$schema",
    "definitions",
    "dependencies",
    "deprecated",
    "discriminator",
    "id",
    "patternProperties",
    "readOnly",
    "writeOnly",
    "xml",
    "additionalItems",
];

pub fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

/// Collects the structural violations of a schema node and its children, and every node that
/// carries `x-kubernetes-validations` (with its path).
pub fn walk_structure(
    node: &Value,
    path: &str,
    under_spec: bool,
    problems: &mut Vec<String>,
    rule_nodes: &mut Vec<(String, Value)>,
) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: a schema must be an object"));
        return;
    };
    for key in FORBIDDEN {
        if obj.contains_key(key) {
            problems.push(format!(
                "{path}: `{key}` is not allowed in a structural schema"
            ));
        }
    }
    if is_true(&node["uniqueItems"]) {
        problems.push(format!("{path}: uniqueItems cannot be true"));
    }
    let int_or_string = is_true(&node["x-kubernetes-int-or-string"]);
    let preserve = is_true(&node["x-kubernetes-preserve-unknown-fields"]);
    let ty = node["type"].as_str();
    match ty {
        Some(t) if !TYPES.contains(&t) => problems.push(format!("{path}: unknown type {t:?}")),
        Some(t) if int_or_string => problems.push(format!(
            "{path}: type {t:?} together with x-kubernetes-int-or-string"
        )),
        None if !int_or_string && !preserve => problems.push(format!(
            "{path}: no `type` (every structural schema node needs one)"
        )),
        _ => {}
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        problems.push(format!(
            "{path}: properties and additionalProperties are mutually exclusive"
        ));
    }
    if node["additionalProperties"] == Value::Bool(false) {
        problems.push(format!("{path}: additionalProperties cannot be false"));
    }
    if ty == Some("array") && !node["items"].is_object() {
        problems.push(format!("{path}: an array needs a single `items` schema"));
    }
    // `spec.resources` is Kubernetes' own ResourceRequirements (from k8s-openapi), kept as the
    // Pod API has it; no rule reads it.
    let embedded = path == "spec.resources" || path.starts_with("spec.resources.");
    if ty == Some("array") && under_spec && !embedded && !node["maxItems"].is_u64() {
        problems.push(format!(
            "{path}: a list under spec needs maxItems (CEL cost and request size are bounded by it)"
        ));
    }

    if let Some(list_type) = node.get("x-kubernetes-list-type") {
        let items = &node["items"];
        match list_type.as_str() {
            _ if ty != Some("array") => {
                problems.push(format!("{path}: x-kubernetes-list-type on a non-array"))
            }
            Some("atomic") => {}
            Some("set") => {
                let item_type = items["type"].as_str().unwrap_or("");
                if !SCALARS.contains(&item_type) {
                    problems.push(format!(
                        "{path}: x-kubernetes-list-type set needs scalar items, not {item_type:?}"
                    ));
                }
            }
            Some("map") => {
                if items["type"] != "object" {
                    problems.push(format!(
                        "{path}: x-kubernetes-list-type map needs object items"
                    ));
                }
                let keys = node["x-kubernetes-list-map-keys"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if keys.is_empty() {
                    problems.push(format!(
                        "{path}: x-kubernetes-list-type map needs x-kubernetes-list-map-keys"
                    ));
                }
                let required: Vec<&Value> = items["required"]
                    .as_array()
                    .map(|r| r.iter().collect())
                    .unwrap_or_default();
                for key in &keys {
                    let k = key.as_str().unwrap_or("");
                    let prop = &items["properties"][k];
                    if prop.is_null() {
                        problems.push(format!(
                            "{path}: list-map key {k:?} is not a property of the items"
                        ));
                        continue;
                    }
                    if !SCALARS.contains(&prop["type"].as_str().unwrap_or("")) {
                        problems.push(format!("{path}: list-map key {k:?} is not a scalar"));
                    }
                    if !required.contains(&key) && prop.get("default").is_none() {
                        problems.push(format!(
                            "{path}: list-map key {k:?} must be required (or have a default)"
                        ));
                    }
                }
            }
            other => problems.push(format!("{path}: unknown x-kubernetes-list-type {other:?}")),
        }
    }
    if node.get("x-kubernetes-list-map-keys").is_some() && node["x-kubernetes-list-type"] != "map" {
        problems.push(format!(
            "{path}: x-kubernetes-list-map-keys without x-kubernetes-list-type: map"
        ));
    }

    if let Some(rules) = node.get("x-kubernetes-validations") {
        match rules.as_array() {
            Some(rules) if !rules.is_empty() => {
                for r in rules {
                    if r["rule"].as_str().is_none_or(str::is_empty) {
                        problems.push(format!("{path}: a validation without a rule"));
                    }
                    if r["message"].as_str().is_none_or(str::is_empty)
                        && r.get("messageExpression").is_none()
                    {
                        problems.push(format!("{path}: rule {} has no message", r["rule"]));
                    }
                    if let Some(reason) = r.get("reason") {
                        let allowed = [
                            "FieldValueInvalid",
                            "FieldValueForbidden",
                            "FieldValueRequired",
                            "FieldValueDuplicate",
                        ];
                        if !allowed.iter().any(|a| reason == a) {
                            problems.push(format!("{path}: unknown reason {reason}"));
                        }
                    }
                }
                rule_nodes.push((path.to_string(), node.clone()));
            }
            _ => problems.push(format!(
                "{path}: x-kubernetes-validations must be a non-empty list"
            )),
        }
    }

    if let Some(props) = node["properties"].as_object() {
        for (name, child) in props {
            let child_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let spec = under_spec || (path.is_empty() && name == "spec");
            walk_structure(child, &child_path, spec, problems, rule_nodes);
        }
    }
    if node["items"].is_object() {
        walk_structure(
            &node["items"],
            &format!("{path}[*]"),
            under_spec,
            problems,
            rule_nodes,
        );
    }
    if node["additionalProperties"].is_object() {
        walk_structure(
            &node["additionalProperties"],
            &format!("{path}[*]"),
            under_spec,
            problems,
            rule_nodes,
        );
    }
}

/// Whether every string and list of a node (and, for a list, of its items) has a bound.
pub fn unbounded_parts(node: &Value, path: &str, out: &mut Vec<String>) {
    match node["type"].as_str() {
        Some("string") if !node["maxLength"].is_u64() && !node["enum"].is_array() => {
            out.push(format!("{path} (string without maxLength)"))
        }
        Some("array") => {
            if !node["maxItems"].is_u64() {
                out.push(format!("{path} (list without maxItems)"));
            }
            unbounded_parts(&node["items"], &format!("{path}[*]"), out);
        }
        // Inside a list the rule reaches every field of every item.
        Some("object") if path.contains("[*]") => {
            for (name, child) in node["properties"].as_object().into_iter().flatten() {
                unbounded_parts(child, &format!("{path}.{name}"), out);
            }
        }
        _ => {}
    }
}

/// The schema nodes that `self.a.b` / `oldSelf.a.b` chains in a rule reach from `node`.
pub fn referenced_nodes(node: &Value, rule: &str) -> Vec<(String, Value)> {
    let chain = Regex::new(r"\b(?:self|oldSelf)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)").unwrap();
    let mut out = Vec::new();
    for cap in chain.captures_iter(rule) {
        let mut cur = node;
        let mut path = String::from("self");
        for seg in cap[1].split('.').skip(1) {
            match cur["properties"].get(seg) {
                Some(child) => {
                    cur = child;
                    path.push('.');
                    path.push_str(seg);
                }
                None => break, // a method (`size`, `all`…) or metadata, bounded by the apiserver
            }
        }
        out.push((path, cur.clone()));
    }
    out
}
