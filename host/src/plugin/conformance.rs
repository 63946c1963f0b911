//! ABI v1 conformance of a compiled module: its imports and exports against
//! what the host provides and calls (docs/ABI.md §5, §6). The daemon refuses a
//! module with any problem at load, and `collector check` lists them all.

use collector_sdk::abi;
use wasmtime::{ExternType, FuncType, Module, ValType};

/// What [`check_abi`] found.
#[derive(Debug, Default)]
pub struct AbiReport {
    /// Human-readable problems; empty when the module conforms.
    pub problems: Vec<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Exports `_initialize` (a WASI reactor).
    pub wasi_reactor: bool,
}

/// The signature the host provides for an import of module `collector`.
fn host_import(name: &str) -> Option<(&'static [ValType], &'static [ValType])> {
    use ValType::I32;
    match name {
        abi::IMPORT_LOG => Some((&[I32, I32, I32], &[])),
        abi::IMPORT_SET_ERROR => Some((&[I32, I32], &[])),
        abi::IMPORT_HTTP_SEND => Some((&[I32, I32], &[I32])),
        abi::IMPORT_HTTP_WAIT => Some((&[I32, I32, I32], &[I32])),
        abi::IMPORT_HTTP_STATUS | abi::IMPORT_HTTP_BODY_LEN => Some((&[I32], &[I32])),
        abi::IMPORT_HTTP_READ => Some((&[I32, I32, I32, I32], &[I32])),
        abi::IMPORT_HTTP_HEADER => Some((&[I32, I32, I32, I32, I32], &[I32])),
        abi::IMPORT_HTTP_ERROR => Some((&[I32, I32, I32], &[I32])),
        abi::IMPORT_HTTP_CLOSE => Some((&[I32], &[])),
        _ => None,
    }
}

fn same_types(a: &[ValType], b: &[ValType]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| ValType::eq(x, y))
}

fn fmt_func(params: &[ValType], results: &[ValType]) -> String {
    format!(
        "(func{}{})",
        fmt_types("param", params),
        fmt_types("result", results)
    )
}

fn fmt_func_type(f: &FuncType) -> String {
    let p: Vec<ValType> = f.params().collect();
    let r: Vec<ValType> = f.results().collect();
    fmt_func(&p, &r)
}

/// Checks a module's imports and exports against ABI v1.
pub fn check_abi(module: &Module) -> AbiReport {
    use ValType::I32;
    let mut r = AbiReport::default();
    for imp in module.imports() {
        let full = format!("{}.{}", imp.module(), imp.name());
        match imp.module() {
            abi::IMPORT_MODULE => match (host_import(imp.name()), imp.ty()) {
                (None, _) => r.problems.push(format!(
                    "imports `{full}`, which the host does not provide (ABI v1 offers collector.log, \
                     collector.set_error and WASI preview 1)"
                )),
                (Some((p, res)), ExternType::Func(f)) => {
                    let (fp, fr): (Vec<ValType>, Vec<ValType>) = (f.params().collect(), f.results().collect());
                    if !same_types(&fp, p) || !same_types(&fr, res) {
                        r.problems.push(format!(
                            "imports `{full}` as {}, but the host provides it as {}",
                            fmt_func_type(&f),
                            fmt_func(p, res)
                        ));
                    }
                }
                (Some((p, res)), _) => r.problems.push(format!(
                    "imports `{full}` as something other than a function; the host provides {}",
                    fmt_func(p, res)
                )),
            },
            "wasi_snapshot_preview1" => {}
            _ => r.problems.push(format!(
                "imports `{full}`, which the host does not provide (ABI v1 offers collector.log, \
                 collector.set_error and WASI preview 1)"
            )),
        }
        r.imports.push(full);
    }
    let optional: [(&str, &[ValType], &[ValType]); 3] = [
        (abi::SNAPSHOT, &[], &[ValType::I64]),
        (abi::RESTORE, &[I32, I32], &[I32]),
        (abi::JSON_BATCHES, &[], &[]),
    ];
    let required: [(&str, &[ValType], &[ValType]); 4] = [
        (abi::VERSION_MARKER, &[], &[]),
        (abi::ALLOC, &[I32], &[I32]),
        (abi::INIT, &[I32, I32], &[I32]),
        (abi::DISPATCH, &[I32, I32], &[I32]),
    ];
    for exp in module.exports() {
        r.exports.push(exp.name().to_owned());
    }
    r.wasi_reactor = match module.get_export(abi::WASI_INITIALIZE) {
        None => false,
        Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => true,
        Some(other) => {
            let found = match other {
                ExternType::Func(f) => fmt_func_type(&f),
                _ => "not a function".to_owned(),
            };
            r.problems.push(format!(
                "exports `{}` as {found}: a WASI reactor's `_initialize` must be (func); \
                 rename it if it is something else",
                abi::WASI_INITIALIZE
            ));
            false
        }
    };
    match module.get_export(abi::MEMORY) {
        Some(ExternType::Memory(_)) => {}
        _ => r.problems.push(format!(
            "does not export `{}` (a linear memory), required by ABI v1",
            abi::MEMORY
        )),
    }
    let present_optional = optional
        .into_iter()
        .filter(|(n, _, _)| module.get_export(n).is_some());
    for (name, params, results) in required.into_iter().chain(present_optional) {
        let sig = format!(
            "(func{}{})",
            fmt_types("param", params),
            fmt_types("result", results)
        );
        match module.get_export(name) {
            None if name == abi::VERSION_MARKER => r.problems.push(format!(
                "does not export `{name}` {sig}: not an ABI v1 plugin (or built for another ABI version)"
            )),
            None => r.problems.push(format!("does not export `{name}` {sig}, required by ABI v1")),
            Some(ExternType::Func(f)) => {
                let p: Vec<ValType> = f.params().collect();
                let res: Vec<ValType> = f.results().collect();
                if !same_types(&p, params) || !same_types(&res, results) {
                    r.problems.push(format!(
                        "exports `{name}` as {}, but ABI v1 wants {sig}",
                        fmt_func_type(&f)
                    ));
                }
            }
            Some(_) => r.problems.push(format!("exports `{name}` but it is not a function {sig}")),
        }
    }
    r
}

fn fmt_types(kind: &str, tys: &[ValType]) -> String {
    if tys.is_empty() {
        return String::new();
    }
    let names: Vec<String> = tys.iter().map(|t| t.to_string()).collect();
    format!(" ({kind} {})", names.join(" "))
}
