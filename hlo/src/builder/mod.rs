//! The builder: XLA-style op constructors with shape inference at every op.
//!
//! A [`ModuleBuilder`] owns the computations under construction; a [`Builder`] is a cheap
//! `Copy` handle to one of them (the entry or a sub-computation such as a reducer), and a
//! [`Value`] is a `Copy` handle to one instruction. Ops take `&self`, so calls nest freely:
//! `b.add(b.dot(x, w)?, bias)?`. A computation is closed with [`Builder::finish`], which returns
//! its [`CompId`]; only finished computations can be called, so the module's computations are
//! always ordered callees before callers.
//!
//! Name scopes: [`Builder::scope`] (an RAII guard) or [`Builder::with_scope`] opens a scope for
//! the whole module until it is closed; scopes nest with `/` (`encoder/layer_3/attention`) and
//! every instruction records the scope active when it was created. Lowering writes it to
//! `OpMetadata.op_name` (`encoder/layer_3/attention/dot`), as JAX does with `named_scope`.

mod collectives;
mod control;
mod dot;
mod elementwise;
mod indexing;
mod misc;
mod reduce;
mod shape_ops;
#[cfg(test)]
mod test_util;

use crate::autodiff::{CustomSite, GradMarks};
use crate::dtype::{ElementType, NativeType};
use crate::error::{shape_err, HloError, Result};
use crate::ir::{BinaryOp, CompId, Computation, InstrId, Instruction, Module, Op, Sharding};
use crate::literal::Literal;
use crate::shape::{ArrayShape, Shape};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// A handle to one instruction of a computation under construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Value {
    draft: u32,
    id: InstrId,
}

impl Value {
    pub fn id(self) -> InstrId {
        self.id
    }
}

struct Draft {
    name: String,
    instrs: Vec<Instruction>,
    params: Vec<InstrId>,
    /// `stop_gradient` marks and custom-gradient sites.
    marks: GradMarks,
    done: bool,
}

#[derive(Default)]
struct State {
    drafts: Vec<Draft>,
    finished: Vec<Computation>,
    /// The autodiff marks of each finished computation (by `CompId`), kept for inlining.
    finished_marks: Vec<GradMarks>,
    reducers: HashMap<(BinaryOp, ElementType), CompId>,
    /// Gradient rules of custom-call targets (`ModuleBuilder::register_vjp`).
    vjp_rules: HashMap<String, Arc<crate::autodiff::VjpRule>>,
    /// Open name scopes, innermost last, each as its full path (`None`: no scope, as inside a
    /// shared reducer), so the current one is cloned, not joined, at every instruction.
    scopes: Vec<Option<Arc<str>>>,
}

/// Closes the name scope it was returned for when dropped (and any opened inside it and not
/// closed yet), restoring the scope that was active before.
#[must_use = "the scope closes when the guard is dropped"]
pub struct ScopeGuard<'m> {
    m: &'m ModuleBuilder,
    depth: usize,
}

impl Drop for ScopeGuard<'_> {
    fn drop(&mut self) {
        // `state` is only borrowed inside builder calls, never across a guard's drop.
        if let Ok(mut st) = self.m.state.try_borrow_mut() {
            st.scopes.truncate(self.depth);
        }
    }
}

/// Owns the computations of one module while they are built.
pub struct ModuleBuilder {
    name: String,
    state: RefCell<State>,
}

impl ModuleBuilder {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            state: RefCell::new(State::default()),
        }
    }

    /// Opens a new computation (the entry or a sub-computation).
    pub fn builder(&self, name: impl Into<String>) -> Builder<'_> {
        let mut st = self.state.borrow_mut();
        st.drafts.push(Draft {
            name: name.into(),
            instrs: vec![],
            params: vec![],
            marks: GradMarks::default(),
            done: false,
        });
        Builder {
            m: self,
            draft: (st.drafts.len() - 1) as u32,
        }
    }

    /// The name scope new instructions get (`None` outside any scope).
    pub fn current_scope(&self) -> Option<Arc<str>> {
        self.state.borrow().scopes.last().cloned().flatten()
    }

    /// Opens scope `name` inside the current one (see [`Builder::scope`]).
    pub fn scope(&self, name: &str) -> ScopeGuard<'_> {
        let path: Arc<str> = match self.current_scope() {
            Some(outer) => format!("{outer}/{name}").into(),
            None => name.into(),
        };
        self.enter_scope_path(Some(path))
    }

    /// Makes `path` the current scope as it is, not nested in the current one (autodiff's
    /// `grad/<forward scope>`; `None` for instructions shared by every scope).
    pub(crate) fn enter_scope_path(&self, path: Option<Arc<str>>) -> ScopeGuard<'_> {
        let mut st = self.state.borrow_mut();
        let depth = st.scopes.len();
        st.scopes.push(path);
        ScopeGuard { m: self, depth }
    }

    /// A scalar `(a, b) -> op(a, b)` computation, built once per (op, type) and reused.
    pub fn scalar_reducer(&self, op: BinaryOp, ty: ElementType) -> Result<CompId> {
        if let Some(&c) = self.state.borrow().reducers.get(&(op, ty)) {
            return Ok(c);
        }
        // Shared by every scope that reduces, so it belongs to none of them.
        let _unscoped = self.enter_scope_path(None);
        let b = self.builder(format!("{}_{}", op.opcode(), ty));
        let x = b.parameter(Shape::scalar(ty), "x")?;
        let y = b.parameter(Shape::scalar(ty), "y")?;
        let r = b.binary(op, x, y)?;
        let c = b.finish(r)?;
        self.state.borrow_mut().reducers.insert((op, ty), c);
        Ok(c)
    }

    /// Shape of a finished computation's root and its parameter shapes.
    pub fn signature(&self, comp: CompId) -> Result<(Vec<Shape>, Shape)> {
        let st = self.state.borrow();
        let c = st
            .finished
            .get(comp.index())
            .ok_or_else(|| HloError::Computation {
                name: comp.to_string(),
                msg: "no such finished computation".into(),
            })?;
        Ok((
            c.param_shapes().into_iter().cloned().collect(),
            c.root_shape().clone(),
        ))
    }

    /// A copy of a finished computation and its autodiff marks (for inlining).
    pub(crate) fn finished_computation(&self, comp: CompId) -> Result<(Computation, GradMarks)> {
        let st = self.state.borrow();
        match (
            st.finished.get(comp.index()),
            st.finished_marks.get(comp.index()),
        ) {
            (Some(c), Some(ng)) => Ok((c.clone(), ng.clone())),
            _ => Err(HloError::Computation {
                name: comp.to_string(),
                msg: "no such finished computation".into(),
            }),
        }
    }

    /// Whether finished computation `comp` is `(a, b) -> op(a, b)` (either operand order).
    pub(crate) fn is_scalar_binary(&self, comp: CompId, op: BinaryOp) -> bool {
        let st = self.state.borrow();
        let Some(c) = st.finished.get(comp.index()) else {
            return false;
        };
        let root = c.instr(c.root);
        let ps = &c.params;
        root.op == Op::Binary(op)
            && ps.len() == 2
            && (root.operands == [ps[0], ps[1]] || root.operands == [ps[1], ps[0]])
    }

    pub(crate) fn set_vjp_rule(&self, target: String, rule: Arc<crate::autodiff::VjpRule>) {
        self.state.borrow_mut().vjp_rules.insert(target, rule);
    }

    pub(crate) fn vjp_rule(&self, target: &str) -> Option<Arc<crate::autodiff::VjpRule>> {
        self.state.borrow().vjp_rules.get(target).cloned()
    }

    /// The largest channel id of any collective built so far (drafts and finished), or 0.
    pub(crate) fn max_channel_id(&self) -> i64 {
        let st = self.state.borrow();
        let finished = st.finished.iter().flat_map(|c| &c.instrs);
        let drafts = st.drafts.iter().flat_map(|d| &d.instrs);
        finished
            .chain(drafts)
            .filter_map(|i| match &i.op {
                Op::AllReduce { attrs, .. }
                | Op::AllGather { attrs, .. }
                | Op::ReduceScatter { attrs, .. }
                | Op::AllToAll { attrs, .. } => attrs.channel_id,
                Op::CollectivePermute { channel_id, .. } => *channel_id,
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Closes the module with `entry` as its entry computation and runs the verifier.
    pub fn build(self, entry: CompId) -> Result<Module> {
        let st = self.state.into_inner();
        if entry.index() >= st.finished.len() {
            return Err(HloError::Computation {
                name: entry.to_string(),
                msg: "entry is not a finished computation of this module".into(),
            });
        }
        let module = Module {
            name: self.name,
            computations: st.finished,
            entry,
            aliases: vec![],
        };
        crate::passes::verify(&module)?;
        Ok(module)
    }
}

/// A handle to one computation under construction. `Copy`; every op method takes `&self`.
#[derive(Clone, Copy)]
pub struct Builder<'m> {
    m: &'m ModuleBuilder,
    draft: u32,
}

impl<'m> Builder<'m> {
    pub fn module(&self) -> &'m ModuleBuilder {
        self.m
    }

    /// Opens name scope `name` inside the current one until the guard is dropped:
    ///
    /// ```
    /// # use hlo::{ModuleBuilder, Shape, ElementType::F32};
    /// let m = ModuleBuilder::new("m");
    /// let b = m.builder("main");
    /// let x = b.parameter(Shape::array(F32, vec![2]), "x")?;
    /// let _encoder = b.scope("encoder");
    /// let y = {
    ///     let _layer = b.scope("layer_0");
    ///     b.exp(x)? // in scope "encoder/layer_0"
    /// };
    /// assert_eq!(m.current_scope().as_deref(), Some("encoder"));
    /// # Ok::<(), hlo::HloError>(())
    /// ```
    ///
    /// Scopes belong to the module, so sub-computations built meanwhile (loop bodies, ...) are
    /// in them too.
    pub fn scope(&self, name: &str) -> ScopeGuard<'m> {
        self.m.scope(name)
    }

    /// Runs `f` inside name scope `name` (see [`Builder::scope`]).
    pub fn with_scope<R>(&self, name: &str, f: impl FnOnce(&Self) -> R) -> R {
        let _scope = self.scope(name);
        f(self)
    }

    /// Appends an instruction after checking its operands belong to this open computation.
    pub(crate) fn push(&self, op: Op, operands: &[Value], shape: Shape) -> Result<Value> {
        let scope = self.m.current_scope();
        self.push_scoped(op, operands, shape, scope)
    }

    /// [`Builder::push`] with the scope given (inlining keeps the callee's scopes).
    pub(crate) fn push_scoped(
        &self,
        op: Op,
        operands: &[Value],
        shape: Shape,
        scope: Option<Arc<str>>,
    ) -> Result<Value> {
        let opcode = op.opcode();
        let mut st = self.m.state.borrow_mut();
        let draft = &mut st.drafts[self.draft as usize];
        if draft.done {
            return Err(HloError::Computation {
                name: draft.name.clone(),
                msg: format!("{opcode} added after finish"),
            });
        }
        if let Some(v) = operands.iter().find(|v| v.draft != self.draft) {
            return Err(HloError::ForeignValue {
                op: opcode,
                value: v.id.to_string(),
                origin: format!("draft {}", v.draft),
                target: draft.name.clone(),
            });
        }
        let id = InstrId(draft.instrs.len() as u32);
        draft.instrs.push(Instruction {
            op,
            operands: operands.iter().map(|v| v.id).collect(),
            shape,
            sharding: None,
            scope,
        });
        Ok(Value {
            draft: self.draft,
            id,
        })
    }

    /// The value of instruction `id` of this computation (autodiff walks the draft by id).
    pub(crate) fn value_at(&self, id: InstrId) -> Value {
        Value {
            draft: self.draft,
            id,
        }
    }

    /// A copy of the instructions built so far.
    pub(crate) fn instructions(&self) -> Vec<Instruction> {
        self.m.state.borrow().drafts[self.draft as usize]
            .instrs
            .clone()
    }

    /// Marks `v` as a constant for autodiff (see `Builder::stop_gradient`).
    pub(crate) fn mark_no_grad(&self, v: Value) {
        let mut st = self.m.state.borrow_mut();
        st.drafts[self.draft as usize].marks.no_grad.insert(v.id);
    }

    /// Marks `v` as a custom-gradient site (see `Builder::custom_vjp`).
    pub(crate) fn mark_custom(&self, v: Value, site: CustomSite) {
        let mut st = self.m.state.borrow_mut();
        st.drafts[self.draft as usize]
            .marks
            .custom
            .insert(v.id, site);
    }

    /// This computation's autodiff marks so far.
    pub(crate) fn grad_marks(&self) -> GradMarks {
        self.m.state.borrow().drafts[self.draft as usize]
            .marks
            .clone()
    }

    /// The shape of a value of this computation.
    pub fn shape(&self, v: Value) -> Result<Shape> {
        self.shape_for(v, "shape")
    }

    /// The shape of a value, naming `op` if the value belongs to another computation.
    fn shape_for(&self, v: Value, op: &'static str) -> Result<Shape> {
        let st = self.m.state.borrow();
        if v.draft != self.draft {
            return Err(HloError::ForeignValue {
                op,
                value: v.id.to_string(),
                origin: format!("draft {}", v.draft),
                target: st.drafts[self.draft as usize].name.clone(),
            });
        }
        Ok(st.drafts[self.draft as usize].instrs[v.id.index()]
            .shape
            .clone())
    }

    /// The array shape of a value; errors (naming `op`) on tuples and tokens.
    pub fn array_shape(&self, v: Value, op: &'static str) -> Result<ArrayShape> {
        match self.shape_for(v, op)? {
            Shape::Array(a) => Ok(a),
            s => Err(shape_err(op, "expected an array operand", &[&s])),
        }
    }

    pub fn element_type(&self, v: Value) -> Result<ElementType> {
        Ok(self.array_shape(v, "element_type")?.ty)
    }

    pub fn dims(&self, v: Value) -> Result<Vec<i64>> {
        Ok(self.array_shape(v, "dims")?.dims)
    }

    /// Annotates a value with a sharding (for SPMD partitioning).
    pub fn set_sharding(&self, v: Value, sharding: Sharding) -> Result<()> {
        self.shape(v)?;
        let mut st = self.m.state.borrow_mut();
        st.drafts[self.draft as usize].instrs[v.id.index()].sharding = Some(sharding);
        Ok(())
    }

    /// Declares the next parameter (numbered in call order).
    pub fn parameter(&self, shape: impl Into<Shape>, name: &str) -> Result<Value> {
        let number = self.m.state.borrow().drafts[self.draft as usize]
            .params
            .len() as u32;
        let v = self.push(
            Op::Parameter {
                number,
                name: name.to_string(),
            },
            &[],
            shape.into(),
        )?;
        self.m.state.borrow_mut().drafts[self.draft as usize]
            .params
            .push(v.id);
        Ok(v)
    }

    pub fn constant(&self, lit: Literal) -> Result<Value> {
        let shape = Shape::Array(lit.shape().clone());
        self.push(Op::Constant(lit), &[], shape)
    }

    pub fn scalar<T: NativeType>(&self, v: T) -> Result<Value> {
        self.constant(Literal::scalar(v))
    }

    /// A scalar constant of element type `ty` with value `v`.
    pub fn scalar_of(&self, ty: ElementType, v: f64) -> Result<Value> {
        self.constant(Literal::scalar_from_f64(ty, v))
    }

    /// An array constant from row-major values.
    pub fn constant_slice<T: NativeType>(&self, values: &[T], dims: &[i64]) -> Result<Value> {
        self.constant(Literal::from_slice(values, dims)?)
    }

    /// A constant `v` broadcast to `shape`.
    pub fn full(&self, shape: &ArrayShape, v: f64) -> Result<Value> {
        let s = self.scalar_of(shape.ty, v)?;
        self.broadcast_in_dim(s, &shape.dims, &[])
    }

    pub fn zeros_like(&self, x: Value) -> Result<Value> {
        let a = self.array_shape(x, "zeros_like")?;
        self.full(&a, 0.0)
    }

    /// Values 0, 1, 2, ... along `dim` of `shape`.
    pub fn iota(&self, shape: &ArrayShape, dim: i64) -> Result<Value> {
        if dim < 0 || dim as usize >= shape.rank() {
            return Err(shape_err(
                "iota",
                format!("dimension {dim} out of range"),
                &[shape],
            ));
        }
        if shape.ty.is_pred() {
            return Err(shape_err("iota", "pred iota is not allowed", &[shape]));
        }
        self.push(Op::Iota { dim }, &[], Shape::Array(shape.clone()))
    }

    pub fn tuple(&self, items: &[Value]) -> Result<Value> {
        let shapes = items
            .iter()
            .map(|&v| self.shape(v))
            .collect::<Result<Vec<_>>>()?;
        self.push(Op::Tuple, items, Shape::Tuple(shapes))
    }

    pub fn get_tuple_element(&self, t: Value, index: i64) -> Result<Value> {
        let s = self.shape(t)?;
        let elems = s
            .tuple_elements()
            .ok_or_else(|| shape_err("get-tuple-element", "operand is not a tuple", &[&s]))?;
        let e = usize::try_from(index)
            .ok()
            .and_then(|i| elems.get(i))
            .ok_or_else(|| {
                shape_err(
                    "get-tuple-element",
                    format!("index {index} out of range"),
                    &[&s],
                )
            })?
            .clone();
        self.push(Op::GetTupleElement { index }, &[t], e)
    }

    /// Closes this computation with `root` as its result and returns its id.
    pub fn finish(&self, root: Value) -> Result<CompId> {
        self.shape(root)?;
        let mut st = self.m.state.borrow_mut();
        let taken: std::collections::HashSet<String> =
            st.finished.iter().map(|c| c.name.clone()).collect();
        let draft = &mut st.drafts[self.draft as usize];
        if draft.done {
            return Err(HloError::Computation {
                name: draft.name.clone(),
                msg: "finished twice".into(),
            });
        }
        draft.done = true;
        let mut name = draft.name.clone();
        let mut k = 1;
        while taken.contains(&name) {
            name = format!("{}.{k}", draft.name);
            k += 1;
        }
        let params = std::mem::take(&mut draft.params);
        let marks = std::mem::take(&mut draft.marks);
        let comp = Computation {
            name,
            instrs: std::mem::take(&mut draft.instrs),
            params,
            root: root.id,
        };
        st.finished.push(comp);
        st.finished_marks.push(marks);
        Ok(CompId((st.finished.len() - 1) as u32))
    }

    /// Checks that `comp` takes `params` and returns `result`, naming `op` otherwise.
    pub(crate) fn check_signature(
        &self,
        op: &'static str,
        comp: CompId,
        params: &[Shape],
        result: &Shape,
    ) -> Result<()> {
        let (p, r) = self.m.signature(comp)?;
        if p != params || &r != result {
            let want = format!("({}) -> {result}", join(params));
            let got = format!("({}) -> {r}", join(&p));
            return Err(shape_err(
                op,
                format!("called computation has signature {got}, expected {want}"),
                &[],
            ));
        }
        Ok(())
    }
}

pub(crate) fn join(shapes: &[Shape]) -> String {
    shapes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
