//! The IR: a module owns computations, a computation owns instructions, both in arenas indexed by
//! `u32` ids. Invariant relied on everywhere: an instruction's operands come before it in its
//! computation (define-before-use), and a computation's callees come before it in the module.
mod ids;
mod op;
mod sharding;

pub use ids::{CompId, InstrId};
pub use op::*;
pub use sharding::Sharding;

use crate::shape::Shape;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Instruction {
    pub op: Op,
    pub operands: Vec<InstrId>,
    pub shape: Shape,
    pub sharding: Option<Sharding>,
    /// The builder name scope the instruction was created in (`encoder/layer_0/attention`);
    /// lowered to `OpMetadata.op_name` = `<scope>/<opcode>` so XLA dumps and profiles name
    /// the layer each fusion came from. Shared, as every instruction of a scope holds it.
    pub scope: Option<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Computation {
    pub name: String,
    pub instrs: Vec<Instruction>,
    /// Parameter instructions by parameter number.
    pub params: Vec<InstrId>,
    pub root: InstrId,
}

impl Computation {
    pub fn instr(&self, id: InstrId) -> &Instruction {
        &self.instrs[id.index()]
    }

    pub fn root_shape(&self) -> &Shape {
        &self.instr(self.root).shape
    }

    pub fn param_shapes(&self) -> Vec<&Shape> {
        self.params.iter().map(|&p| &self.instr(p).shape).collect()
    }

    pub fn param_names(&self) -> Vec<String> {
        self.params
            .iter()
            .map(|&p| match &self.instr(p).op {
                Op::Parameter { name, .. } => name.clone(),
                _ => String::new(),
            })
            .collect()
    }

    /// Ids in definition order.
    pub fn ids(&self) -> impl Iterator<Item = InstrId> {
        (0..self.instrs.len() as u32).map(InstrId)
    }
}

/// An output that reuses (aliases) a donated parameter's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    /// Index of the output in the (flattened, one-level) result tuple; empty for a non-tuple root.
    pub output_index: Vec<i64>,
    pub param_number: u32,
    pub param_index: Vec<i64>,
    /// MUST_ALIAS when true, MAY_ALIAS otherwise.
    pub must_alias: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub name: String,
    /// Callees before callers.
    pub computations: Vec<Computation>,
    pub entry: CompId,
    pub aliases: Vec<Alias>,
}

impl Module {
    pub fn comp(&self, id: CompId) -> &Computation {
        &self.computations[id.index()]
    }

    pub fn entry_computation(&self) -> &Computation {
        self.comp(self.entry)
    }

    /// Shapes of the entry parameters, by number.
    pub fn param_shapes(&self) -> Vec<Shape> {
        self.entry_computation()
            .param_shapes()
            .into_iter()
            .cloned()
            .collect()
    }

    pub fn result_shape(&self) -> &Shape {
        self.entry_computation().root_shape()
    }

    /// Number of instructions over all computations.
    pub fn instruction_count(&self) -> usize {
        self.computations.iter().map(|c| c.instrs.len()).sum()
    }

    /// Declares that output `output_index` (an element of a tuple root) reuses parameter
    /// `param_number`'s buffer: the parameter is donated when the program runs.
    pub fn alias_output_to_param(&mut self, output_index: i64, param_number: u32) {
        self.aliases.push(Alias {
            output_index: vec![output_index],
            param_number,
            param_index: vec![],
            must_alias: false,
        });
    }
}
