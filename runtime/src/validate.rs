//! Static checks of a module before it is accepted: everything that can be refused without
//! running it. wasmi validates the module too (types, stack discipline) and is configured to
//! refuse floats itself; these checks come first so that the refusal names the reason.

use crate::abi::{self, AbiType};
use crate::error::ValidationError;
use crate::Limits;
use sha2::{Digest, Sha256};
use wasmparser::{CompositeInnerType, Encoding, ExternalKind, Parser, Payload, TypeRef, ValType};

/// What the runtime learned about an accepted module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// SHA-256 of the module bytes: the key of the module cache and what a definition pins.
    pub hash: [u8; 32],
    pub size: usize,
    /// The callable exports, sorted.
    pub functions: Vec<String>,
    /// The host functions the module imports, sorted.
    pub imports: Vec<String>,
    pub memory_min_pages: u32,
    pub memory_max_pages: Option<u32>,
}

impl ModuleInfo {
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }

    pub fn has_function(&self, name: &str) -> bool {
        self.functions
            .binary_search_by(|f| f.as_str().cmp(name))
            .is_ok()
    }
}

pub fn module_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn malformed(e: wasmparser::BinaryReaderError) -> ValidationError {
    ValidationError::Malformed(e.to_string())
}

fn abi_types(types: &[ValType]) -> Option<Vec<AbiType>> {
    types
        .iter()
        .map(|t| match t {
            ValType::I32 => Some(AbiType::I32),
            ValType::I64 => Some(AbiType::I64),
            _ => None,
        })
        .collect()
}

fn is_float(t: &ValType) -> bool {
    matches!(t, ValType::F32 | ValType::F64)
}

/// A function type with only integer types (the only kind the ABI and the checks accept).
type Sig = (Vec<AbiType>, Vec<AbiType>);

fn describe(sig: &Sig) -> String {
    format!("{:?} -> {:?}", sig.0, sig.1)
}

/// Runs every static check; `limits` gives the size and memory caps.
pub fn check(bytes: &[u8], limits: &Limits) -> Result<ModuleInfo, ValidationError> {
    if bytes.len() > limits.max_module_bytes {
        return Err(ValidationError::TooLarge {
            size: bytes.len(),
            limit: limits.max_module_bytes,
        });
    }
    let mut types: Vec<Sig> = Vec::new();
    // The type index of every function, imported ones first (the wasm index space).
    let mut func_types: Vec<u32> = Vec::new();
    let mut imports: Vec<String> = Vec::new();
    let mut memory: Option<(u32, Option<u32>)> = None;
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let mut code_index = 0usize;
    let mut imported_funcs = 0usize;

    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::Version { encoding, .. } if encoding != Encoding::Module => {
                return Err(ValidationError::Malformed(
                    "a component, not a core module".into(),
                ));
            }
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub in group.map_err(malformed)?.into_types() {
                        let CompositeInnerType::Func(ft) = &sub.composite_type.inner else {
                            return Err(ValidationError::Feature("GC types".into()));
                        };
                        if ft.params().iter().chain(ft.results()).any(is_float) {
                            return Err(ValidationError::FloatingPoint(format!(
                                "type {} has a float parameter or result",
                                types.len()
                            )));
                        }
                        let (Some(p), Some(r)) = (abi_types(ft.params()), abi_types(ft.results()))
                        else {
                            return Err(ValidationError::Feature(format!(
                                "type {} uses vector or reference values",
                                types.len()
                            )));
                        };
                        types.push((p, r));
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(malformed)?;
                    let refuse = |reason: String| ValidationError::Import {
                        module: import.module.to_string(),
                        name: import.name.to_string(),
                        reason,
                    };
                    if import.module != abi::HOST_MODULE {
                        return Err(refuse(format!(
                            "only functions of the {:?} module can be imported",
                            abi::HOST_MODULE
                        )));
                    }
                    let TypeRef::Func(ty) = import.ty else {
                        return Err(refuse("only functions can be imported".into()));
                    };
                    let Some(host) = abi::HOST_FUNCTIONS.iter().find(|h| h.name == import.name)
                    else {
                        return Err(refuse("no such host function".into()));
                    };
                    let sig = types
                        .get(ty as usize)
                        .ok_or_else(|| refuse(format!("unknown type {ty}")))?;
                    if sig.0 != host.params || sig.1 != host.results {
                        return Err(refuse(format!(
                            "signature {} does not match the host's {}",
                            describe(sig),
                            describe(&(host.params.to_vec(), host.results.to_vec()))
                        )));
                    }
                    imports.push(import.name.to_string());
                    func_types.push(ty);
                    imported_funcs += 1;
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    func_types.push(ty.map_err(malformed)?);
                }
            }
            Payload::MemorySection(reader) => {
                for mem in reader {
                    let mem = mem.map_err(malformed)?;
                    if memory.is_some() {
                        return Err(ValidationError::Memory("more than one memory".into()));
                    }
                    if mem.memory64 || mem.shared {
                        return Err(ValidationError::Feature("64-bit or shared memory".into()));
                    }
                    let cap = u64::from(limits.max_memory_pages);
                    if mem.initial > cap {
                        return Err(ValidationError::Memory(format!(
                            "starts with {} pages; the limit is {cap}",
                            mem.initial
                        )));
                    }
                    if let Some(max) = mem.maximum {
                        if max > cap {
                            return Err(ValidationError::Memory(format!(
                                "declares a maximum of {max} pages; the limit is {cap}"
                            )));
                        }
                    }
                    // Both fit in u32: they are at most `cap`, itself a u32.
                    memory = Some((mem.initial as u32, mem.maximum.map(|m| m as u32)));
                }
            }
            Payload::GlobalSection(reader) => {
                for g in reader {
                    let g = g.map_err(malformed)?;
                    if is_float(&g.ty.content_type) {
                        return Err(ValidationError::FloatingPoint("a float global".into()));
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for e in reader {
                    let e = e.map_err(malformed)?;
                    exports.push((e.name.to_string(), e.kind, e.index));
                }
            }
            Payload::StartSection { .. } => return Err(ValidationError::StartFunction),
            Payload::TagSection(_) => {
                return Err(ValidationError::Feature("exception handling".into()))
            }
            Payload::CodeSectionEntry(body) => {
                let func = imported_funcs + code_index;
                code_index += 1;
                for local in body.get_locals_reader().map_err(malformed)? {
                    let (_, ty) = local.map_err(malformed)?;
                    if is_float(&ty) {
                        return Err(ValidationError::FloatingPoint(format!(
                            "function {func} has a float local"
                        )));
                    }
                }
                let mut ops = body.get_operators_reader().map_err(malformed)?;
                while !ops.eof() {
                    let op = ops.read().map_err(malformed)?;
                    // Operators carry only numbers and types, never user text, so their debug
                    // form names every float operator (f32.add, i32.trunc_f64_s, ...) and every
                    // float block or select type. Validation runs once per module, not per call.
                    let text = format!("{op:?}");
                    if text.contains("F32") || text.contains("F64") {
                        let name = text.split([' ', '{', '(']).next().unwrap_or(&text);
                        return Err(ValidationError::FloatingPoint(format!(
                            "function {func} uses {name}"
                        )));
                    }
                }
            }
            _ => {}
        }
    }

    let Some((memory_min_pages, memory_max_pages)) = memory else {
        return Err(ValidationError::MissingExport {
            name: abi::MEMORY_EXPORT.into(),
            reason: "the module must define its memory (imported memories are refused)".into(),
        });
    };
    let sig_of = |func: u32| -> Option<&Sig> {
        func_types
            .get(func as usize)
            .and_then(|t| types.get(*t as usize))
    };
    let callable: Sig = (
        abi::CALLABLE_PARAMS.to_vec(),
        abi::CALLABLE_RESULTS.to_vec(),
    );
    let alloc: Sig = (vec![AbiType::I32], vec![AbiType::I32]);
    let mut functions = Vec::new();
    let mut has_memory = false;
    let mut has_alloc = false;
    for (name, kind, index) in &exports {
        let refuse = |reason: String| ValidationError::Export {
            name: name.clone(),
            reason,
        };
        match kind {
            ExternalKind::Memory if name == abi::MEMORY_EXPORT => has_memory = true,
            ExternalKind::Func => {
                let sig = sig_of(*index).ok_or_else(|| refuse("unknown function".into()))?;
                if name == abi::ALLOC_EXPORT {
                    if *sig != alloc {
                        return Err(refuse(format!(
                            "must be (i32) -> i32, is {}",
                            describe(sig)
                        )));
                    }
                    has_alloc = true;
                } else if name.starts_with(abi::RESERVED_EXPORT_PREFIX) {
                    return Err(refuse(format!(
                        "names starting with {:?} are reserved",
                        abi::RESERVED_EXPORT_PREFIX
                    )));
                } else if *sig != callable {
                    return Err(refuse(format!(
                        "callable functions must be (i32 args_ptr, i32 args_len) -> i32, is {}",
                        describe(sig)
                    )));
                } else {
                    functions.push(name.clone());
                }
            }
            ExternalKind::Memory => {
                return Err(refuse(format!(
                    "the memory must be exported as {:?}",
                    abi::MEMORY_EXPORT
                )))
            }
            // Exported globals and tables are harmless: nothing outside the call sees them.
            _ => {}
        }
    }
    if !has_memory {
        return Err(ValidationError::MissingExport {
            name: abi::MEMORY_EXPORT.into(),
            reason: "the host reads arguments and results through it".into(),
        });
    }
    if !has_alloc {
        return Err(ValidationError::MissingExport {
            name: abi::ALLOC_EXPORT.into(),
            reason: "the host calls it to place a call's arguments in memory".into(),
        });
    }
    if functions.is_empty() {
        return Err(ValidationError::MissingExport {
            name: "<callable>".into(),
            reason: "at least one function (i32, i32) -> i32 must be exported".into(),
        });
    }
    functions.sort();
    imports.sort();
    imports.dedup();
    Ok(ModuleInfo {
        hash: module_hash(bytes),
        size: bytes.len(),
        functions,
        imports,
        memory_min_pages,
        memory_max_pages,
    })
}
