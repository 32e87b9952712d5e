//! The pickle `torch.save(state_dict)` writes, for a flat dict of tensors.

use super::storage_name;
use anyhow::Result;
use tch::Tensor;

/// Pickle writer for a flat `OrderedDict[str, Tensor]`, the way `torch.save(state_dict)`
/// lays it out (protocol 2), so `torch.load` (also with `weights_only=True`) reads it.
struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    fn op(&mut self, b: u8) {
        self.out.push(b);
    }
    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    fn string(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.extend_from_slice(&[b'K', v as u8]);
        } else if let Ok(v32) = i32::try_from(v) {
            self.out.push(b'J');
            self.out.extend_from_slice(&v32.to_le_bytes());
        } else {
            self.out.extend_from_slice(&[0x8a, 8]);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn int_tuple(&mut self, vs: &[i64]) {
        self.op(b'(');
        for &v in vs {
            self.int(v);
        }
        self.op(b't');
    }
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.op(b')');
        self.op(b'R');
    }
}

/// The `data.pkl` of a state dict holding `tensors`, in order, and each tensor's storage
/// bytes (contiguous, on the CPU), storage `i` for tensor `i`.
pub(super) fn pickle_state_dict(tensors: &[(String, Tensor)]) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let mut p = Pickler { out: vec![0x80, 2] };
    p.empty_ordered_dict();
    p.op(b'(');
    let mut storages = Vec::new();
    for (i, (name, t)) in tensors.iter().enumerate() {
        let t = t.to_device(tch::Device::Cpu).contiguous();
        let kind = t.kind();
        let numel = t.numel();
        p.string(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.op(b'(');
        // persistent id: ('storage', torch.<Kind>Storage, key, 'cpu', numel)
        p.op(b'(');
        p.string("storage");
        p.global("torch", storage_name(kind)?);
        p.string(&i.to_string());
        p.string("cpu");
        p.int(numel as i64);
        p.op(b't');
        p.op(b'Q');
        p.int(0);
        p.int_tuple(&t.size());
        p.int_tuple(&t.stride());
        p.op(0x89);
        p.empty_ordered_dict();
        p.op(b't');
        p.op(b'R');
        let mut bytes = vec![0u8; numel * kind.elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel)?;
        storages.push(bytes);
    }
    p.op(b'u');
    p.op(b'.');
    Ok((p.out, storages))
}
