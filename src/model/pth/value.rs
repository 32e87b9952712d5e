//! The values a pickle builds, shared rather than copied, and what building them may
//! cost: nesting depth, objects created, work done.

use anyhow::{bail, Result};
use std::rc::Rc;
use tch::Kind;

/// Deepest nesting of lists, tuples and dicts (a training checkpoint nests about 6 deep).
pub const MAX_DEPTH: usize = 64;
/// Most values the pickle may create (every push counts).
pub const MAX_OBJECTS: u64 = 1 << 20;
/// Most work: one unit per opcode and per item copied when a container the memo also
/// holds is changed (the memo keeps the value it was given).
pub const MAX_WORK: u64 = 4 << 20;

/// A decoded pickle value. Every clone is cheap (shared), so memo references cost nothing.
#[derive(Debug, Clone)]
pub(super) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    List(Seq<Value>),
    Tuple(Seq<Value>),
    Dict(Seq<(Value, Value)>),
    Global(Rc<(String, String)>),
    Storage(Rc<(Kind, String)>),
    Tensor(Rc<TensorRef>),
    /// A call or object we do not interpret (kept so the structure stays intact).
    Opaque(Rc<str>),
    Mark,
}

/// Items of a list, tuple or dict, shared, with the nesting depth they reach.
#[derive(Debug, Clone)]
pub(super) struct Seq<T> {
    pub(super) depth: usize,
    pub(super) items: Rc<Vec<T>>,
}

pub(super) trait Deep {
    fn depth(&self) -> usize;
}

impl Deep for Value {
    fn depth(&self) -> usize {
        match self {
            Value::List(s) | Value::Tuple(s) => s.depth,
            Value::Dict(s) => s.depth,
            _ => 0,
        }
    }
}

impl Deep for (Value, Value) {
    fn depth(&self) -> usize {
        self.0.depth().max(self.1.depth())
    }
}

impl<T: Deep + Clone> Seq<T> {
    pub(super) fn new(items: Vec<T>) -> Result<Self> {
        let depth = 1 + items.iter().map(Deep::depth).max().unwrap_or(0);
        check_depth(depth)?;
        Ok(Seq {
            depth,
            items: Rc::new(items),
        })
    }

    /// Appends `more`; a container the memo shares is copied first (charged to `budget`).
    pub(super) fn extend(&mut self, more: Vec<T>, budget: &mut Budget) -> Result<()> {
        let depth = self
            .depth
            .max(1 + more.iter().map(Deep::depth).max().unwrap_or(0));
        check_depth(depth)?;
        if Rc::strong_count(&self.items) > 1 {
            budget.work(self.items.len() as u64)?;
        }
        Rc::make_mut(&mut self.items).extend(more);
        self.depth = depth;
        Ok(())
    }
}

fn check_depth(depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!("pickle nests containers deeper than {MAX_DEPTH}");
    }
    Ok(())
}

/// What the pickle has spent so far, against [`MAX_OBJECTS`] and [`MAX_WORK`].
#[derive(Default)]
pub(super) struct Budget {
    objects: u64,
    work: u64,
}

impl Budget {
    pub(super) fn object(&mut self) -> Result<()> {
        self.objects += 1;
        if self.objects > MAX_OBJECTS {
            bail!("pickle creates more than {MAX_OBJECTS} objects");
        }
        Ok(())
    }

    pub(super) fn work(&mut self, units: u64) -> Result<()> {
        self.work = self.work.saturating_add(units);
        if self.work > MAX_WORK {
            bail!("pickle needs more than {MAX_WORK} steps to decode");
        }
        Ok(())
    }
}

/// A short description of a value for error messages: a few items, a few levels.
pub(super) fn describe(v: &Value) -> String {
    fn go(v: &Value, out: &mut String, levels: usize) {
        let seq = |out: &mut String, open: &str, close: &str, items: &[Value]| {
            out.push_str(open);
            for (i, x) in items.iter().take(6).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                go(x, out, levels - 1);
            }
            if items.len() > 6 {
                out.push_str(&format!(", ... ({} items)", items.len()));
            }
            out.push_str(close);
        };
        match v {
            Value::List(s) | Value::Tuple(s) if levels == 0 => {
                out.push_str(&format!("<{} items>", s.items.len()))
            }
            Value::Dict(s) if levels == 0 || !s.items.is_empty() => {
                out.push_str(&format!("{{<{} entries>}}", s.items.len()))
            }
            Value::Dict(_) => out.push_str("{}"),
            Value::List(s) => seq(out, "[", "]", &s.items),
            Value::Tuple(s) => seq(out, "(", ")", &s.items),
            Value::None => out.push_str("None"),
            Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => out.push_str(&f.to_string()),
            Value::Str(s) => out.push_str(&format!("{:?}", clip(s))),
            Value::Bytes(b) => out.push_str(&format!("<{} bytes>", b.len())),
            Value::Global(g) => out.push_str(&format!("{}.{}", clip(&g.0), clip(&g.1))),
            Value::Storage(s) => out.push_str(&format!("<{:?} storage {}>", s.0, clip(&s.1))),
            Value::Tensor(t) => out.push_str(&format!("<tensor {:?}>", t.size)),
            Value::Opaque(s) => out.push_str(&format!("<{}>", clip(s))),
            Value::Mark => out.push_str("<mark>"),
        }
    }
    let mut out = String::new();
    go(v, &mut out, 2);
    out
}

/// At most 60 characters of `s`.
pub(super) fn clip(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

/// A tensor as `_rebuild_tensor_v2` describes it: a view into storage `key`.
#[derive(Debug, Clone)]
pub(super) struct TensorRef {
    pub(super) kind: Kind,
    pub(super) key: String,
    pub(super) offset: i64,
    pub(super) size: Vec<i64>,
    pub(super) stride: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_stay_short() {
        let long = "x".repeat(100);
        assert_eq!(clip(&long), format!("{}...", "x".repeat(60)));
        let items = (0..8).map(Value::Int).collect();
        let list = Value::List(Seq::new(items).unwrap());
        assert_eq!(describe(&list), "[0, 1, 2, 3, 4, 5, ... (8 items)]");
        let nested = Value::Tuple(Seq::new(vec![list.clone(), Value::Str(long.into())]).unwrap());
        assert!(
            describe(&nested).starts_with("([0, 1,"),
            "{}",
            describe(&nested)
        );
    }
}
