//! PyTorch checkpoints (`torch.save` zip archives) read and written without Python.
//!
//! A `.pth` is a zip holding `<name>/data.pkl` (a pickle describing the objects) and one
//! raw little-endian storage per tensor under `<name>/data/<key>`, stored or deflated. The
//! pickle reader here understands what `torch.save` writes for state dicts and training
//! checkpoints (dicts, lists, tuples, numbers, strings, `OrderedDict`, `_rebuild_tensor_v2`,
//! `_rebuild_parameter`, persistent storage ids); anything else becomes an opaque value that
//! is never a tensor. It calls nothing a pickle names.
//!
//! A checkpoint may come from a stranger, so what reading one can cost is bounded: the
//! limits below are checked as the pickle runs, and a file over any of them is refused.
//! Memo references share the value they name (as Python's pickle does) instead of copying
//! it, so a small pickle cannot build an exponentially large structure. Together the
//! limits keep a hostile `data.pkl` to a fraction of a second and a few hundred megabytes.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::rc::Rc;
use tch::{Kind, Tensor};

/// Largest `data.pkl` read, in bytes (inflated). `torch.save` writes a few kilobytes for a
/// state dict, a few hundred kilobytes for a large training checkpoint.
pub const MAX_PICKLE_BYTES: u64 = 16 << 20;
/// Deepest nesting of lists, tuples and dicts (a training checkpoint nests about 6 deep).
pub const MAX_DEPTH: usize = 64;
/// Most memo entries.
pub const MAX_MEMO: usize = 1 << 20;
/// Most values the pickle may create (every push counts).
pub const MAX_OBJECTS: u64 = 1 << 20;
/// Most work: one unit per opcode and per item copied when a container the memo also
/// holds is changed (the memo keeps the value it was given).
pub const MAX_WORK: u64 = 4 << 20;
/// Most dimensions of a tensor.
pub const MAX_DIMS: usize = 16;
/// Most bytes of tensor storage read from one checkpoint (after inflating).
pub const MAX_TENSOR_BYTES: u64 = 8 << 30;

/// A decoded pickle value. Every clone is cheap (shared), so memo references cost nothing.
#[derive(Debug, Clone)]
enum Value {
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
struct Seq<T> {
    depth: usize,
    items: Rc<Vec<T>>,
}

trait Deep {
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
    fn new(items: Vec<T>) -> Result<Self> {
        let depth = 1 + items.iter().map(Deep::depth).max().unwrap_or(0);
        check_depth(depth)?;
        Ok(Seq {
            depth,
            items: Rc::new(items),
        })
    }

    /// Appends `more`; a container the memo shares is copied first (charged to `budget`).
    fn extend(&mut self, more: Vec<T>, budget: &mut Budget) -> Result<()> {
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
struct Budget {
    objects: u64,
    work: u64,
}

impl Budget {
    fn object(&mut self) -> Result<()> {
        self.objects += 1;
        if self.objects > MAX_OBJECTS {
            bail!("pickle creates more than {MAX_OBJECTS} objects");
        }
        Ok(())
    }

    fn work(&mut self, units: u64) -> Result<()> {
        self.work = self.work.saturating_add(units);
        if self.work > MAX_WORK {
            bail!("pickle needs more than {MAX_WORK} steps to decode");
        }
        Ok(())
    }
}

/// A short description of a value for error messages: a few items, a few levels.
fn describe(v: &Value) -> String {
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
fn clip(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
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
    budget: Budget,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Unpickler {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
            budget: Budget::default(),
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

    fn push(&mut self, v: Value) -> Result<()> {
        self.budget.object()?;
        self.stack.push(v);
        Ok(())
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
        self.budget.work(items.len() as u64)?;
        Ok(items)
    }

    fn top(&mut self) -> Result<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| anyhow!("pickle stack empty at byte {}", self.pos))
    }

    fn memo_put(&mut self, k: u32) -> Result<()> {
        let v = self.top()?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&k) {
            bail!("pickle memo holds more than {MAX_MEMO} entries");
        }
        self.memo.insert(k, v);
        Ok(())
    }

    fn str_of(&mut self, n: usize) -> Result<Value> {
        Ok(Value::Str(String::from_utf8_lossy(self.take(n)?).into()))
    }

    /// Adds items to the list on top of the stack (anything else ignores them).
    fn list_extend(&mut self, items: Vec<Value>) -> Result<()> {
        let Some(Value::List(l)) = self.stack.last_mut() else {
            return Ok(());
        };
        l.extend(items, &mut self.budget)
    }

    /// Adds pairs to the dict on top of the stack (anything else ignores them).
    fn dict_extend(&mut self, items: Vec<Value>) -> Result<()> {
        let Some(Value::Dict(d)) = self.stack.last_mut() else {
            return Ok(());
        };
        d.extend(pairs(items), &mut self.budget)
    }

    fn run(mut self) -> Result<Value> {
        loop {
            self.budget.work(1)?;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'}' => self.push(Value::Dict(Seq::new(Vec::new())?))?,
                b']' => self.push(Value::List(Seq::new(Vec::new())?))?,
                b')' => self.push(Value::Tuple(Seq::new(Vec::new())?))?,
                b'(' => self.push(Value::Mark)?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Seq::new(items)?))?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let at = self
                        .stack
                        .len()
                        .checked_sub(n)
                        .ok_or_else(|| anyhow!("pickle stack underflow"))?;
                    let items = self.stack.split_off(at);
                    self.push(Value::Tuple(Seq::new(items)?))?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Seq::new(pairs(items))?))?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Seq::new(items)?))?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.top()?;
                    self.dict_extend(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.top()?;
                    self.dict_extend(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.top()?;
                    self.list_extend(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.top()?;
                    self.list_extend(items)?;
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len())?;
                    self.memo_put(k)?;
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
                    self.push(v)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into()?);
                    self.push(Value::Int(v as i64))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take(2)?.try_into()?);
                    self.push(Value::Int(v as i64))?;
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
                    self.push(Value::Int(i64::from_le_bytes(buf)))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into()?);
                    self.push(Value::Float(v))?;
                }
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'N' => self.push(Value::None)?,
                b'X' | b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.str_of(n)?;
                    self.push(v)?;
                }
                0x8c | b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.str_of(n)?;
                    self.push(v)?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.take(8)?.try_into()?);
                    let n = usize::try_from(n).map_err(|_| anyhow!("pickle string too long"))?;
                    let v = self.str_of(n)?;
                    self.push(v)?;
                }
                b'B' | b'C' => {
                    let n = if op == b'B' {
                        self.u32()? as usize
                    } else {
                        self.u8()? as usize
                    };
                    let v = Value::Bytes(self.take(n)?.into());
                    self.push(v)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(Rc::new((module, name))))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.push(Value::Global(Rc::new((m.to_string(), n.to_string()))))?
                        }
                        _ => bail!("pickle STACK_GLOBAL without strings"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = reduce(func, args)?;
                    self.push(v)?;
                }
                0x81 => {
                    let _args = self.pop()?;
                    let cls = match self.pop()? {
                        Value::Global(g) => format!("{}.{}", clip(&g.0), clip(&g.1)),
                        _ => "object".into(),
                    };
                    self.push(Value::Opaque(cls.into()))?;
                }
                b'b' => {
                    self.pop()?; // BUILD: object state (e.g. OrderedDict _metadata) is not needed
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(pid)?;
                    self.push(v)?;
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
        Value::Tuple(s) | Value::List(s) => {
            if s.items.len() > MAX_DIMS {
                bail!(
                    "a tensor shape of {} dimensions (at most {MAX_DIMS})",
                    s.items.len()
                );
            }
            s.items
                .iter()
                .map(|x| match x {
                    Value::Int(i) => Ok(*i),
                    other => Err(anyhow!(
                        "expected an integer in a tensor shape, got {}",
                        describe(other)
                    )),
                })
                .collect()
        }
        other => bail!("expected a tuple of integers, got {}", describe(other)),
    }
}

fn reduce(func: Value, args: Value) -> Result<Value> {
    let Value::Global(global) = &func else {
        return Ok(Value::Opaque("call".into()));
    };
    let (module, name) = &**global;
    let args: Vec<Value> = match args {
        Value::Tuple(a) => a.items.to_vec(),
        other => vec![other],
    };
    Ok(match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Value::Dict(Seq::new(Vec::new())?),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (Some(Value::Storage(storage)), Some(Value::Int(offset)), Some(size), Some(stride)) =
                (args.first(), args.get(1), args.get(2), args.get(3))
            else {
                bail!("malformed _rebuild_tensor_v2 arguments");
            };
            Value::Tensor(Rc::new(TensorRef {
                kind: storage.0,
                key: storage.1.clone(),
                offset: *offset,
                size: ints(size)?,
                stride: ints(stride)?,
            }))
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            args.into_iter().next().unwrap_or(Value::None)
        }
        _ => Value::Opaque(format!("{}.{}", clip(module), clip(name)).into()),
    })
}

fn persistent_load(pid: Value) -> Result<Value> {
    let Value::Tuple(items) = &pid else {
        bail!("unexpected persistent id {}", describe(&pid))
    };
    match items.items.as_slice() {
        [Value::Str(tag), Value::Global(ty), Value::Str(key), _location, _numel, ..]
            if &**tag == "storage" =>
        {
            let kind = storage_kind(&ty.1)
                .ok_or_else(|| anyhow!("unsupported storage type {}", clip(&ty.1)))?;
            Ok(Value::Storage(Rc::new((kind, key.to_string()))))
        }
        _ => bail!("unexpected persistent id {}", describe(&pid)),
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

/// [`read_state_dict`] of a checkpoint held in memory.
pub fn read_state_dict_bytes(bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    read_state_dict_from(std::io::Cursor::new(bytes))
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
    let pkl = read_entry(&mut zip, &pkl_name, MAX_PICKLE_BYTES)
        .context("reading data.pkl")?
        .ok_or_else(|| anyhow!("data.pkl is larger than {MAX_PICKLE_BYTES} bytes"))?;
    let tensors = state_dict_refs(&pkl)?;
    // What each storage must hold for the tensors that view it, checked before any is read.
    let mut needed: HashMap<&str, (Kind, u64)> = HashMap::new();
    for (name, t) in &tensors {
        let bytes = storage_bytes(t).with_context(|| format!("tensor {name}"))?;
        let entry = needed.entry(&t.key).or_insert((t.kind, 0));
        if entry.0 != t.kind {
            bail!(
                "tensor {name} reads storage {} as {:?}, another tensor as {:?}",
                t.key,
                t.kind,
                entry.0
            );
        }
        entry.1 = entry.1.max(bytes);
    }
    let total = needed
        .values()
        .try_fold(0u64, |acc, (_, b)| acc.checked_add(*b));
    if total.is_none_or(|t| t > MAX_TENSOR_BYTES) {
        bail!("the tensors need more than {MAX_TENSOR_BYTES} bytes of storage");
    }
    let mut storages: HashMap<&str, Tensor> = HashMap::new();
    let mut out = Vec::new();
    for (name, t) in &tensors {
        if !storages.contains_key(t.key.as_str()) {
            let (kind, need) = needed[t.key.as_str()];
            let entry = format!("{prefix}data/{}", t.key);
            let raw = read_storage(&mut zip, &entry, need)
                .with_context(|| format!("storage {entry} of {name}"))?;
            let elem = kind.elt_size_in_bytes();
            let numel = (raw.len() / elem) as i64;
            let storage = Tensor::f_from_data_size(&raw[..numel as usize * elem], &[numel], kind)?;
            storages.insert(&t.key, storage);
        }
        let storage = &storages[t.key.as_str()];
        let tensor = storage
            .f_as_strided(&t.size, &t.stride, Some(t.offset))?
            .contiguous();
        out.push((name.clone(), tensor));
    }
    Ok(out)
}

/// The tensors a `data.pkl` describes, by name and shape: decoded and checked as
/// [`read_state_dict`] does before it reads any storage.
pub fn pickle_tensors(pkl: &[u8]) -> Result<Vec<(String, Vec<i64>)>> {
    let tensors = state_dict_refs(pkl)?;
    for (name, t) in &tensors {
        storage_bytes(t).with_context(|| format!("tensor {name}"))?;
    }
    Ok(tensors
        .into_iter()
        .map(|(n, t)| (n, t.size.clone()))
        .collect())
}

/// The state dict's tensors, in file order.
fn state_dict_refs(pkl: &[u8]) -> Result<Vec<(String, Rc<TensorRef>)>> {
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
fn storage_bytes(t: &TensorRef) -> Result<u64> {
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

/// Reads the first `need` bytes of a storage entry, stored or deflated. The entry must
/// declare at least that much, and no more than that is inflated.
fn read_storage<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    entry: &str,
    need: u64,
) -> Result<Vec<u8>> {
    let mut file = zip.by_name(entry).context("missing")?;
    let declared = file.size();
    if declared < need {
        bail!("holds {declared} bytes, its tensors need {need} (truncated file?)");
    }
    let mut raw = Vec::new();
    // One byte past what is needed: where the entry ends there, reading reaches its end
    // and the archive's checksum is verified.
    (&mut file)
        .take(need + u64::from(declared == need))
        .read_to_end(&mut raw)
        .context("cannot read it")?;
    if (raw.len() as u64) < need {
        bail!(
            "holds {} bytes, its tensors need {need} (truncated file?)",
            raw.len()
        );
    }
    raw.truncate(need as usize);
    Ok(raw)
}

/// Reads a whole entry of at most `limit` bytes (inflated); None when it is larger.
fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>> {
    let file = zip.by_name(name)?;
    if file.size() > limit {
        return Ok(None);
    }
    let mut out = Vec::new();
    file.take(limit + 1).read_to_end(&mut out)?;
    Ok((out.len() as u64 <= limit).then_some(out))
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
