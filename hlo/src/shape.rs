//! Array and tuple shapes. Every array is laid out row-major (`minor_to_major = [rank-1..0]`).
use crate::dtype::ElementType;
use std::fmt;

/// An array type: element type and dimension sizes (static, non-negative).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArrayShape {
    pub ty: ElementType,
    pub dims: Vec<i64>,
}

impl ArrayShape {
    pub fn new(ty: ElementType, dims: impl Into<Vec<i64>>) -> Self {
        Self {
            ty,
            dims: dims.into(),
        }
    }

    pub fn scalar(ty: ElementType) -> Self {
        Self { ty, dims: vec![] }
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    pub fn num_elements(&self) -> i64 {
        self.dims.iter().product()
    }

    pub fn byte_size(&self) -> i64 {
        self.num_elements() * self.ty.byte_size() as i64
    }

    pub fn is_scalar(&self) -> bool {
        self.dims.is_empty()
    }

    /// Same dimensions with another element type.
    pub fn with_type(&self, ty: ElementType) -> Self {
        Self {
            ty,
            dims: self.dims.clone(),
        }
    }

    /// Row-major layout, XLA's `minor_to_major`.
    pub fn minor_to_major(&self) -> Vec<i64> {
        (0..self.dims.len() as i64).rev().collect()
    }
}

impl fmt::Display for ArrayShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.ty)?;
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The shape of an HLO value: an array, a tuple of shapes, or a token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    Array(ArrayShape),
    Tuple(Vec<Shape>),
    Token,
}

impl Shape {
    pub fn array(ty: ElementType, dims: impl Into<Vec<i64>>) -> Self {
        Shape::Array(ArrayShape::new(ty, dims))
    }

    pub fn scalar(ty: ElementType) -> Self {
        Shape::Array(ArrayShape::scalar(ty))
    }

    pub fn as_array(&self) -> Option<&ArrayShape> {
        match self {
            Shape::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn tuple_elements(&self) -> Option<&[Shape]> {
        match self {
            Shape::Tuple(t) => Some(t),
            _ => None,
        }
    }

    /// Array shapes in depth-first order (the flattened outputs of a tuple-rooted program).
    pub fn leaves(&self) -> Vec<&ArrayShape> {
        let mut out = Vec::new();
        fn walk<'a>(s: &'a Shape, out: &mut Vec<&'a ArrayShape>) {
            match s {
                Shape::Array(a) => out.push(a),
                Shape::Tuple(t) => t.iter().for_each(|e| walk(e, out)),
                Shape::Token => {}
            }
        }
        walk(self, &mut out);
        out
    }

    /// XLA text with layouts: `f32[2,3]{1,0}`, `(f32[], s32[4]{0})`.
    pub fn to_text_with_layout(&self) -> String {
        match self {
            Shape::Array(a) => {
                if a.is_scalar() {
                    a.to_string()
                } else {
                    let l: Vec<String> = a.minor_to_major().iter().map(|d| d.to_string()).collect();
                    format!("{a}{{{}}}", l.join(","))
                }
            }
            Shape::Tuple(t) => {
                let parts: Vec<String> = t.iter().map(|s| s.to_text_with_layout()).collect();
                format!("({})", parts.join(", "))
            }
            Shape::Token => "token[]".to_string(),
        }
    }
}

impl From<ArrayShape> for Shape {
    fn from(a: ArrayShape) -> Self {
        Shape::Array(a)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Array(a) => write!(f, "{a}"),
            Shape::Tuple(t) => {
                f.write_str("(")?;
                for (i, s) in t.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{s}")?;
                }
                f.write_str(")")
            }
            Shape::Token => f.write_str("token[]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        let s = Shape::array(ElementType::F32, vec![2, 3]);
        assert_eq!(s.to_string(), "f32[2,3]");
        assert_eq!(s.to_text_with_layout(), "f32[2,3]{1,0}");
        let t = Shape::Tuple(vec![Shape::scalar(ElementType::S32), s]);
        assert_eq!(t.to_text_with_layout(), "(s32[], f32[2,3]{1,0})");
        assert_eq!(t.leaves().len(), 2);
    }
}
