//! PyTorch checkpoints (`torch.save` zip archives) read and written without Python.
//!
//! A `.pth` is a zip holding `<name>/data.pkl` (a pickle describing the objects) and one
//! raw little-endian storage per tensor under `<name>/data/<key>`. The pickle reader here
//! understands what `torch.save` writes for state dicts and training checkpoints (dicts,
//! lists, tuples, numbers, strings, `OrderedDict`, `_rebuild_tensor_v2`, `_rebuild_parameter`,
//! persistent storage ids); anything else becomes an opaque value that is never a tensor.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::Path;
use tch::{Kind, Tensor};

/// A decoded pickle value. Payloads we never interpret are kept for error messages.
#[derive(Debug, Clone)]
#[allow(dead_code)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage {
        kind: Kind,
        key: String,
    },
    Tensor(TensorRef),
    /// A call or object we do not interpret (kept so the structure stays intact).
    Opaque(String),
    Mark,
}

#[derive(Debug, Clone)]
struct TensorRef {
    kind: Kind,
    key: String,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

fn storage_name(kind: Kind) -> Result<&'static str> {
    Ok(match kind {
        Kind::Float => "FloatStorage",
        Kind::Double => "DoubleStorage",
        Kind::Half => "HalfStorage",
        Kind::BFloat16 => "BFloat16Storage",
        Kind::Int64 => "LongStorage",
        Kind::Int => "IntStorage",
        Kind::Int16 => "ShortStorage",
        Kind::Int8 => "CharStorage",
        Kind::Uint8 => "ByteStorage",
        Kind::Bool => "BoolStorage",
        other => bail!("cannot store a {other:?} tensor in a PyTorch checkpoint"),
    })
}

/// The pickle virtual machine, reduced to what `torch.save` emits.
struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Unpickler {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| anyhow!("pickle ends early at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| anyhow!("unterminated pickle line"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value> {
        self.stack
            .pop()
            .ok_or_else(|| anyhow!("pickle stack underflow at byte {}", self.pos))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| anyhow!("pickle mark missing at byte {}", self.pos))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&mut self) -> Result<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| anyhow!("pickle stack empty at byte {}", self.pos))
    }

    fn str_of(&mut self, n: usize) -> Result<Value> {
        Ok(Value::Str(
            String::from_utf8_lossy(self.take(n)?).into_owned(),
        ))
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'(' => self.stack.push(Value::Mark),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let at = self
                        .stack
                        .len()
                        .checked_sub(n)
                        .ok_or_else(|| anyhow!("pickle stack underflow"))?;
                    let items = self.stack.split_off(at);
                    self.stack.push(Value::Tuple(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(pairs(items)));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    if let Value::Dict(d) = self.top()? {
                        d.push((k, v));
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if let Value::Dict(d) = self.top()? {
                        d.extend(pairs(items));
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    if let Value::List(l) = self.top()? {
                        l.push(v);
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    if let Value::List(l) = self.top()? {
                        l.extend(items);
                    }
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                b'r' => {
                    let k = self.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                b'h' | b'j' => {
                    let k = if op == b'h' {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    let v = self
                        .memo
                        .get(&k)
                        .cloned()
                        .ok_or_else(|| anyhow!("pickle memo {k} missing"))?;
                    self.stack.push(v);
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into()?);
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take(2)?.try_into()?);
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let bytes = self.take(n)?;
                    if n > 8 {
                        bail!("pickle integer of {n} bytes is too large");
                    }
                    let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        [0xff; 8]
                    } else {
                        [0; 8]
                    };
                    buf[..n].copy_from_slice(bytes);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into()?);
                    self.stack.push(Value::Float(v));
                }
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'N' => self.stack.push(Value::None),
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.str_of(n)?;
                    self.stack.push(v);
                }
                0x8c | b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.str_of(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.take(8)?.try_into()?) as usize;
                    let v = self.str_of(n)?;
                    self.stack.push(v);
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.str_of(n)?;
                    self.stack.push(v);
                }
                b'B' | b'C' => {
                    let n = if op == b'B' {
                        self.u32()? as usize
                    } else {
                        self.u8()? as usize
                    };
                    let v = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(v));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => bail!("pickle STACK_GLOBAL without strings"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = reduce(func, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(Value::Opaque(format!("{cls:?}")));
                }
                b'b' => {
                    self.pop()?; // BUILD: object state (e.g. OrderedDict _metadata) is not needed
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(pid)?;
                    self.stack.push(v);
                }
                other => bail!(
                    "unsupported pickle opcode 0x{other:02x} at byte {}",
                    self.pos - 1
                ),
            }
        }
    }
}

fn pairs(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

fn ints(v: &Value) -> Result<Vec<i64>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|x| match x {
                Value::Int(i) => Ok(*i),
                other => Err(anyhow!(
                    "expected an integer in a tensor shape, got {other:?}"
                )),
            })
            .collect(),
        other => bail!("expected a tuple of integers, got {other:?}"),
    }
}

fn reduce(func: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = &func else {
        return Ok(Value::Opaque("call".into()));
    };
    let args = match args {
        Value::Tuple(a) => a,
        other => vec![other],
    };
    Ok(match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Value::Dict(Vec::new()),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (
                Some(Value::Storage { kind, key }),
                Some(Value::Int(offset)),
                Some(size),
                Some(stride),
            ) = (args.first(), args.get(1), args.get(2), args.get(3))
            else {
                bail!("malformed _rebuild_tensor_v2 arguments");
            };
            Value::Tensor(TensorRef {
                kind: *kind,
                key: key.clone(),
                offset: *offset,
                size: ints(size)?,
                stride: ints(stride)?,
            })
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            args.into_iter().next().unwrap_or(Value::None)
        }
        _ => Value::Opaque(format!("{module}.{name}")),
    })
}

fn persistent_load(pid: Value) -> Result<Value> {
    let Value::Tuple(items) = pid else {
        bail!("unexpected persistent id {pid:?}")
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(_, ty), Value::Str(key), _location, _numel, ..]
            if tag == "storage" =>
        {
            let kind = storage_kind(ty).ok_or_else(|| anyhow!("unsupported storage type {ty}"))?;
            Ok(Value::Storage {
                kind,
                key: key.clone(),
            })
        }
        _ => bail!("unexpected persistent id {items:?}"),
    }
}

/// True when `bytes` start like a zip archive (the `torch.save` format since PyTorch 1.6).
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// Reads the named tensors of a PyTorch checkpoint: a plain state_dict, or the dict under
/// `model_state_dict` / `state_dict` of a training checkpoint. Non-tensor entries are
/// skipped. Tensors come back contiguous on the CPU, in file order.
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_state_dict_from(file)
        .with_context(|| format!("reading PyTorch checkpoint {}", path.display()))
}

fn read_state_dict_from<R: Read + Seek>(reader: R) -> Result<Vec<(String, Tensor)>> {
    let mut zip = zip::ZipArchive::new(reader)
        .context("not a torch.save zip archive (truncated or another format)")?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| {
            zip.name_for_index(i)
                .and_then(|r| r.ok())
                .map(|s| s.to_string())
        })
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| anyhow!("no data.pkl inside the archive"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut pkl = Vec::new();
    zip.by_name(&pkl_name)?
        .read_to_end(&mut pkl)
        .context("reading data.pkl")?;
    let root = Unpickler::new(&pkl).run().context("decoding data.pkl")?;
    let dict = find_state_dict(&root).ok_or_else(|| {
        anyhow!("no state dict found (expected a dict of tensors, or one under 'model_state_dict' or 'state_dict')")
    })?;
    let mut out = Vec::new();
    for (k, v) in dict {
        let (Value::Str(name), Value::Tensor(t)) = (k, v) else {
            continue;
        };
        let mut raw = Vec::new();
        let entry = format!("{prefix}data/{}", t.key);
        zip.by_name(&entry)
            .with_context(|| format!("storage {entry} of {name} is missing"))?
            .read_to_end(&mut raw)
            .with_context(|| format!("reading storage of {name}"))?;
        let elem = t.kind.elt_size_in_bytes();
        let numel = (raw.len() / elem) as i64;
        let storage = Tensor::f_from_data_size(&raw[..numel as usize * elem], &[numel], t.kind)?;
        let needed = t.offset
            + t.size
                .iter()
                .zip(&t.stride)
                .map(|(s, st)| (s - 1).max(0) * st)
                .sum::<i64>()
            + 1;
        if t.size.iter().all(|&s| s > 0) && needed > numel {
            bail!("tensor {name} needs {needed} elements but its storage holds {numel} (truncated file?)");
        }
        let tensor = storage
            .f_as_strided(&t.size, &t.stride, Some(t.offset))?
            .contiguous();
        out.push((name.clone(), tensor));
    }
    if out.is_empty() {
        bail!("the checkpoint holds no tensors");
    }
    Ok(out)
}

fn find_state_dict(v: &Value) -> Option<&Vec<(Value, Value)>> {
    let Value::Dict(d) = v else { return None };
    if d.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) {
        return Some(d);
    }
    for key in ["model_state_dict", "state_dict", "model"] {
        if let Some((_, inner)) = d
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
        {
            if let Some(found) = find_state_dict(inner) {
                return Some(found);
            }
        }
    }
    None
}

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

/// Writes `tensors` as a `torch.save` state_dict archive at `path` (atomically).
pub fn write_state_dict(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let archive = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("archive");
    let archive: String = archive
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
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

    crate::fsio::write_atomic_with(path, |file| {
        let mut zip = zip::ZipWriter::new(file);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(64);
        zip.start_file(format!("{archive}/data.pkl"), opts)?;
        zip.write_all(&p.out)?;
        zip.start_file(format!("{archive}/byteorder"), opts)?;
        zip.write_all(b"little")?;
        for (i, bytes) in storages.iter().enumerate() {
            zip.start_file(format!("{archive}/data/{i}"), opts)?;
            zip.write_all(bytes)?;
        }
        zip.start_file(format!("{archive}/version"), opts)?;
        zip.write_all(b"3\n")?;
        zip.finish()?;
        Ok(())
    })
}
