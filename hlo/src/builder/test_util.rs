//! Helpers shared by the builder's unit tests.
use super::{Builder, Value};
use crate::error::{HloError, Result};
use crate::lower::to_proto;
use crate::proto::{HloInstructionProto, HloModuleProto};
use crate::ModuleBuilder;

/// The message of a shape error from `op`; fails the test on anything else.
pub(crate) fn shape_err_msg(r: Result<Value>, op: &str) -> String {
    match r {
        Err(HloError::Shape { op: o, msg, .. }) if o == op => msg,
        other => panic!("expected a {op} shape error, got {other:?}"),
    }
}

/// Builds a module whose entry returns `f(builder)`, lowers it and returns the proto.
pub(crate) fn lower_entry(f: impl FnOnce(&Builder) -> Result<Value>) -> HloModuleProto {
    let m = ModuleBuilder::new("t");
    let b = m.builder("main");
    let r = f(&b).unwrap();
    let e = b.finish(r).unwrap();
    to_proto(&m.build(e).unwrap()).unwrap()
}

/// The root instruction of the entry computation (the module's last).
pub(crate) fn entry_root(p: &HloModuleProto) -> &HloInstructionProto {
    let entry = p.computations.last().unwrap();
    entry
        .instructions
        .iter()
        .find(|i| i.id == entry.root_id)
        .unwrap()
}
