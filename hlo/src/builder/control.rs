//! Control flow: while, conditional and call, each checked against its computations'
//! signatures.
use super::{join, Builder, Value};
use crate::dtype::ElementType;
use crate::error::{shape_err, Result};
use crate::ir::{CompId, Op};
use crate::shape::Shape;

impl Builder<'_> {
    /// Runs `body: S -> S` while `cond: S -> pred[]` holds, starting from `init: S`.
    pub fn while_loop(&self, cond: CompId, body: CompId, init: Value) -> Result<Value> {
        let s = self.shape(init)?;
        let pred = Shape::scalar(ElementType::Pred);
        self.check_signature("while", cond, std::slice::from_ref(&s), &pred)?;
        self.check_signature("while", body, std::slice::from_ref(&s), &s)?;
        self.push(Op::While { cond, body }, &[init], s)
    }

    /// Runs one branch on its operand. A `pred[]` selector picks between exactly two branches,
    /// true branch first (XLA's order); an `s32[]` index picks among N (out of range: the last).
    /// Branch i takes `branch_operands[i]`; all branches return the same shape.
    pub fn conditional(
        &self,
        selector: Value,
        branches: &[CompId],
        branch_operands: &[Value],
    ) -> Result<Value> {
        let sel = self.shape(selector)?;
        let operand_shapes = branch_operands
            .iter()
            .map(|&v| self.shape(v))
            .collect::<Result<Vec<_>>>()?;
        let fail = |m: String| Err(shape_err("conditional", m, &[&sel, &join(&operand_shapes)]));
        let want = match sel.as_array() {
            Some(a) if a.is_scalar() && a.ty == ElementType::Pred => Some(2),
            Some(a) if a.is_scalar() && a.ty == ElementType::S32 => None,
            _ => return fail("the selector must be a pred[] or s32[] scalar".into()),
        };
        if branches.is_empty() || want.is_some_and(|n| n != branches.len()) {
            return fail(format!(
                "{} branches: a pred selector needs exactly 2, an index at least 1",
                branches.len()
            ));
        }
        if branch_operands.len() != branches.len() {
            return fail(format!(
                "{} branch operands for {} branches",
                branch_operands.len(),
                branches.len()
            ));
        }
        let (_, result) = self.module().signature(branches[0])?;
        for (&b, s) in branches.iter().zip(&operand_shapes) {
            self.check_signature("conditional", b, std::slice::from_ref(s), &result)?;
        }
        let mut operands = vec![selector];
        operands.extend_from_slice(branch_operands);
        let op = Op::Conditional {
            branches: branches.to_vec(),
        };
        self.push(op, &operands, result)
    }

    /// Calls `comp` on `args` (its parameters, in order).
    pub fn call(&self, comp: CompId, args: &[Value]) -> Result<Value> {
        let shapes = args
            .iter()
            .map(|&v| self.shape(v))
            .collect::<Result<Vec<_>>>()?;
        let (_, result) = self.module().signature(comp)?;
        self.check_signature("call", comp, &shapes, &result)?;
        self.push(Op::Call { comp }, args, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::test_util::shape_err_msg as err;
    use crate::dtype::ElementType::{F32, S32};
    use crate::lower::to_proto;
    use crate::ModuleBuilder;

    /// cond: i < 10 on the state (s32[], f32[3]).
    fn loop_parts(m: &ModuleBuilder) -> (CompId, CompId, Shape) {
        let state = Shape::Tuple(vec![Shape::scalar(S32), Shape::array(F32, vec![3])]);
        let c = m.builder("cond");
        let s = c.parameter(state.clone(), "s").unwrap();
        let i = c.get_tuple_element(s, 0).unwrap();
        let ten = c.scalar(10i32).unwrap();
        let lt = c.lt(i, ten).unwrap();
        let cond = c.finish(lt).unwrap();
        let b = m.builder("body");
        let s = b.parameter(state.clone(), "s").unwrap();
        let i = b.get_tuple_element(s, 0).unwrap();
        let x = b.get_tuple_element(s, 1).unwrap();
        let one = b.scalar(1i32).unwrap();
        let i1 = b.add(i, one).unwrap();
        let x1 = b.add(x, x).unwrap();
        let t = b.tuple(&[i1, x1]).unwrap();
        let body = b.finish(t).unwrap();
        (cond, body, state)
    }

    /// A branch `x -> x * k` on f32[2] (or of `shape` when given).
    fn scale(m: &ModuleBuilder, shape: Shape, k: f32) -> CompId {
        let b = m.builder("branch");
        let x = b.parameter(shape, "x").unwrap();
        let c = b.scalar(k).unwrap();
        let y = b.mul(x, c).unwrap();
        b.finish(y).unwrap()
    }

    #[test]
    fn while_loop_shape_checks_and_lowering() {
        let m = ModuleBuilder::new("t");
        let (cond, body, state) = loop_parts(&m);
        let e = m.builder("main");
        let init = e.parameter(state.clone(), "init").unwrap();
        let w = e.while_loop(cond, body, init).unwrap();
        assert_eq!(e.shape(w).unwrap(), state);
        // swapped computations: the body does not return pred
        assert!(err(e.while_loop(body, cond, init), "while").contains("signature"));
        // an init of another shape
        let f = e.parameter(Shape::array(F32, vec![3]), "f").unwrap();
        assert!(err(e.while_loop(cond, body, f), "while").contains("signature"));
        let entry = e.finish(w).unwrap();
        let p = to_proto(&m.build(entry).unwrap()).unwrap();
        let main = p.computations.last().unwrap();
        let wp = main
            .instructions
            .iter()
            .find(|i| i.opcode == "while")
            .unwrap();
        // XLA's order: body first, then condition.
        let id = |name: &str| p.computations.iter().find(|c| c.name == name).unwrap().id;
        assert_eq!(wp.called_computation_ids, vec![id("body"), id("cond")]);
    }

    #[test]
    fn conditional_pred_and_index() {
        let m = ModuleBuilder::new("t");
        let v = Shape::array(F32, vec![2]);
        let (b0, b1, b2) = (
            scale(&m, v.clone(), 2.0),
            scale(&m, v.clone(), 3.0),
            scale(&m, v.clone(), 4.0),
        );
        let e = m.builder("main");
        let x = e.parameter(v.clone(), "x").unwrap();
        let p = e.parameter(Shape::scalar(ElementType::Pred), "p").unwrap();
        let i = e.parameter(Shape::scalar(S32), "i").unwrap();
        let c = e.conditional(p, &[b0, b1], &[x, x]).unwrap();
        assert_eq!(e.shape(c).unwrap(), v);
        let c3 = e.conditional(i, &[b0, b1, b2], &[x, x, x]).unwrap();
        assert_eq!(e.shape(c3).unwrap(), v);
        assert!(
            err(e.conditional(p, &[b0, b1, b2], &[x, x, x]), "conditional").contains("exactly 2")
        );
        assert!(err(e.conditional(i, &[b0, b1], &[x]), "conditional").contains("1 branch operands"));
        assert!(err(e.conditional(x, &[b0, b1], &[x, x]), "conditional").contains("selector"));
        assert!(err(e.conditional(i, &[], &[]), "conditional").contains("0 branches"));
        // a branch taking another shape
        let w = Shape::array(F32, vec![3]);
        let b3 = scale(&m, w, 5.0);
        assert!(err(e.conditional(i, &[b0, b3], &[x, x]), "conditional").contains("signature"));
        let t = e.tuple(&[c, c3]).unwrap();
        let entry = e.finish(t).unwrap();
        let proto = to_proto(&m.build(entry).unwrap()).unwrap();
        let main = proto.computations.last().unwrap();
        let conds: Vec<_> = main
            .instructions
            .iter()
            .filter(|i| i.opcode == "conditional")
            .collect();
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[0].called_computation_ids.len(), 2);
        assert_eq!(conds[0].operand_ids.len(), 3);
        assert_eq!(conds[1].called_computation_ids.len(), 3);
    }

    #[test]
    fn call_checks_and_lowers() {
        let m = ModuleBuilder::new("t");
        let v = Shape::array(F32, vec![2]);
        let f = scale(&m, v.clone(), 2.0);
        let e = m.builder("main");
        let x = e.parameter(v.clone(), "x").unwrap();
        let y = e.call(f, &[x]).unwrap();
        assert_eq!(e.shape(y).unwrap(), v);
        assert!(err(e.call(f, &[x, x]), "call").contains("signature"));
        let s = e.parameter(Shape::scalar(F32), "s").unwrap();
        assert!(err(e.call(f, &[s]), "call").contains("signature"));
        let entry = e.finish(y).unwrap();
        let p = to_proto(&m.build(entry).unwrap()).unwrap();
        let main = p.computations.last().unwrap();
        let call = main
            .instructions
            .iter()
            .find(|i| i.opcode == "call")
            .unwrap();
        assert_eq!(call.called_computation_ids, vec![p.computations[0].id]);
    }
}
