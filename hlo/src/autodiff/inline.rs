//! Inlining a finished computation into a draft, and the whole-computation form of
//! autodiff built on it: `grad_computation(mb, comp, wrt_params)`.
use crate::builder::{Builder, ModuleBuilder, Value};
use crate::error::{shape_err, Result};
use crate::ir::{CompId, Op};
use crate::shape::Shape;

impl Builder<'_> {
    /// Re-emits the instructions of finished computation `comp` into this one, with `args` as
    /// its parameters, and returns the value of its root. Shardings, name scopes (an unscoped
    /// instruction takes the current one), `stop_gradient` marks and custom-gradient sites are
    /// kept; sub-computations (reducers, ...) are shared, not copied.
    pub fn inline(&self, comp: CompId, args: &[Value]) -> Result<Value> {
        let (c, marks) = self.module().finished_computation(comp)?;
        let want: Vec<&Shape> = c.param_shapes();
        let got = args
            .iter()
            .map(|&v| self.shape(v))
            .collect::<Result<Vec<_>>>()?;
        if want.len() != got.len() || want.iter().zip(&got).any(|(w, g)| *w != g) {
            let disp: Vec<&dyn std::fmt::Display> =
                got.iter().map(|s| s as &dyn std::fmt::Display).collect();
            return Err(shape_err(
                "inline",
                format!(
                    "computation '{}' takes ({}), got {} arguments",
                    c.name,
                    crate::builder::join(&want.into_iter().cloned().collect::<Vec<_>>()),
                    args.len()
                ),
                &disp,
            ));
        }
        let mut map: Vec<Option<Value>> = vec![None; c.instrs.len()];
        for (&p, &a) in c.params.iter().zip(args) {
            map[p.index()] = Some(a);
        }
        for (i, ins) in c.instrs.iter().enumerate() {
            if matches!(ins.op, Op::Parameter { .. }) {
                continue;
            }
            let operands = ins
                .operands
                .iter()
                .map(|o| map.get(o.index()).copied().flatten())
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    shape_err(
                        "inline",
                        format!("computation '{}' uses a value before defining it", c.name),
                        &[],
                    )
                })?;
            let scope = ins.scope.clone().or_else(|| self.module().current_scope());
            let v = self.push_scoped(ins.op.clone(), &operands, ins.shape.clone(), scope)?;
            if let Some(s) = &ins.sharding {
                self.set_sharding(v, s.clone())?;
            }
            let id = crate::ir::InstrId(i as u32);
            if marks.no_grad.contains(&id) {
                self.mark_no_grad(v);
            }
            if let Some(site) = marks.custom.get(&id) {
                // Inputs come before the site, so they are already mapped.
                let inputs = site
                    .inputs
                    .iter()
                    .map(|o| map.get(o.index()).copied().flatten().map(|x| x.id()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        shape_err(
                            "inline",
                            format!("computation '{}': a custom_vjp input is missing", c.name),
                            &[],
                        )
                    })?;
                self.mark_custom(
                    v,
                    super::CustomSite {
                        inputs,
                        rule: site.rule.clone(),
                    },
                );
            }
            map[i] = Some(v);
        }
        map.get(c.root.index()).copied().flatten().ok_or_else(|| {
            shape_err(
                "inline",
                format!("computation '{}' has no root", c.name),
                &[],
            )
        })
    }
}

/// A new computation with the parameters of finished computation `comp`, returning
/// `tuple(outputs..., grads...)`: the outputs are `comp`'s root, or the elements of a tuple
/// root; the first output is the loss (a float scalar) and the others are carried along
/// undifferentiated (metrics, ...). `grads[i]` is the gradient of the loss with respect to
/// parameter `wrt_params[i]`.
pub fn grad_computation(mb: &ModuleBuilder, comp: CompId, wrt_params: &[u32]) -> Result<CompId> {
    let (c, _) = mb.finished_computation(comp)?;
    let b = mb.builder(format!("{}_grad", c.name));
    let names = c.param_names();
    let params = c
        .param_shapes()
        .into_iter()
        .zip(&names)
        .map(|(s, n)| b.parameter(s.clone(), n))
        .collect::<Result<Vec<_>>>()?;
    let root = b.inline(comp, &params)?;
    let outputs = match b.shape(root)? {
        Shape::Tuple(items) => (0..items.len() as i64)
            .map(|k| b.get_tuple_element(root, k))
            .collect::<Result<Vec<_>>>()?,
        _ => vec![root],
    };
    let loss = *outputs.first().ok_or_else(|| {
        shape_err(
            "grad",
            format!("computation '{}' returns an empty tuple: no loss", c.name),
            &[],
        )
    })?;
    let wrt = wrt_params
        .iter()
        .map(|&p| {
            params.get(p as usize).copied().ok_or_else(|| {
                shape_err(
                    "grad",
                    format!(
                        "parameter {p} does not exist: '{}' has {} parameters",
                        c.name,
                        params.len()
                    ),
                    &[],
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let grads = b.grad(loss, &wrt)?;
    let all: Vec<Value> = outputs.into_iter().chain(grads).collect();
    let t = b.tuple(&all)?;
    b.finish(t)
}
