//! The state dict inside a decoded pickle: its tensors by name, and the storage bytes
//! each one's view reaches.

use super::unpickle::Unpickler;
use super::value::{Seq, TensorRef, Value};
use anyhow::{anyhow, bail, Context, Result};
use std::rc::Rc;

/// The state dict's tensors, in file order.
pub(super) fn state_dict_refs(pkl: &[u8]) -> Result<Vec<(String, Rc<TensorRef>)>> {
    let root = Unpickler::new(pkl).run().context("decoding data.pkl")?;
    let dict = find_state_dict(&root, 0).ok_or_else(|| {
        anyhow!("no state dict found (expected a dict of tensors, or one under 'model_state_dict' or 'state_dict')")
    })?;
    let tensors: Vec<(String, Rc<TensorRef>)> = dict
        .items
        .iter()
        .filter_map(|(k, v)| match (k, v) {
            (Value::Str(name), Value::Tensor(t)) => Some((name.to_string(), Rc::clone(t))),
            _ => None,
        })
        .collect();
    if tensors.is_empty() {
        bail!("the checkpoint holds no tensors");
    }
    Ok(tensors)
}

/// The bytes of storage a tensor view reaches: offset + the farthest element, checked
/// for overflow and for negative sizes, strides and offsets (which `torch.save` never writes).
pub(super) fn storage_bytes(t: &TensorRef) -> Result<u64> {
    if t.size.len() != t.stride.len() {
        bail!(
            "shape {:?} and strides {:?} differ in length",
            t.size,
            t.stride
        );
    }
    if t.offset < 0 || t.size.iter().chain(&t.stride).any(|&v| v < 0) {
        bail!(
            "negative shape, stride or offset ({:?}, {:?}, {})",
            t.size,
            t.stride,
            t.offset
        );
    }
    if t.size.contains(&0) {
        return Ok(0);
    }
    let too_large = || {
        anyhow!(
            "shape {:?} with strides {:?} is too large",
            t.size,
            t.stride
        )
    };
    let last = t
        .size
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset as u64, |acc, (&s, &st)| {
            (s as u64 - 1)
                .checked_mul(st as u64)
                .and_then(|x| acc.checked_add(x))
        })
        .ok_or_else(too_large)?;
    last.checked_add(1)
        .and_then(|n| n.checked_mul(t.kind.elt_size_in_bytes() as u64))
        .ok_or_else(too_large)
}

/// The dict of tensors: the root, or one under a training checkpoint's usual keys.
fn find_state_dict(v: &Value, depth: usize) -> Option<&Seq<(Value, Value)>> {
    let Value::Dict(d) = v else { return None };
    if d.items.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) {
        return Some(d);
    }
    if depth >= 4 {
        return None;
    }
    for key in ["model_state_dict", "state_dict", "model"] {
        if let Some((_, inner)) = d
            .items
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if &**s == key))
        {
            if let Some(found) = find_state_dict(inner, depth + 1) {
                return Some(found);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn view(size: &[i64], stride: &[i64], offset: i64) -> TensorRef {
        TensorRef {
            kind: Kind::Float,
            key: "0".into(),
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        }
    }

    #[test]
    fn a_view_reaches_its_farthest_element() {
        assert_eq!(storage_bytes(&view(&[2, 3], &[3, 1], 0)).unwrap(), 24);
        // Transposed, offset by 2: element 2 + 1*1 + 2*2 = 7 is the last.
        assert_eq!(storage_bytes(&view(&[2, 3], &[1, 2], 2)).unwrap(), 32);
        assert_eq!(storage_bytes(&view(&[0, 3], &[3, 1], 5)).unwrap(), 0);
        assert_eq!(storage_bytes(&view(&[], &[], 1)).unwrap(), 8);
    }

    #[test]
    fn impossible_views_are_refused() {
        for (t, want) in [
            (view(&[2], &[1, 1], 0), "differ in length"),
            (view(&[2], &[-1], 0), "negative"),
            (view(&[2], &[1], -1), "negative"),
            (view(&[i64::MAX, 2], &[i64::MAX, 1], 0), "too large"),
        ] {
            let err = storage_bytes(&t).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
