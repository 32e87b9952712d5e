//! The pickle virtual machine, reduced to what `torch.save` emits. It calls nothing a
//! pickle names: globals it knows become values, any other call an opaque one.

use super::storage_kind;
use super::value::{clip, describe, Budget, Seq, TensorRef, Value};
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::rc::Rc;

/// Most memo entries.
pub const MAX_MEMO: usize = 1 << 20;
/// Most dimensions of a tensor.
pub const MAX_DIMS: usize = 16;

/// The pickle virtual machine, reduced to what `torch.save` emits.
pub(super) struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
    budget: Budget,
}

impl<'a> Unpickler<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
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

    pub(super) fn run(mut self) -> Result<Value> {
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

#[cfg(test)]
mod tests {
    use super::super::MAX_DEPTH;
    use super::*;

    fn run(ops: &[u8]) -> Result<Value> {
        let mut pkl = vec![0x80, 2];
        pkl.extend_from_slice(ops);
        pkl.push(b'.');
        Unpickler::new(&pkl).run()
    }

    #[test]
    fn memo_references_share_instead_of_copying() {
        // Thirty lists of two references to the one before: 2^30 leaves if copied.
        let mut ops = vec![b']', b'q', 0];
        for i in 1..=30u8 {
            ops.extend_from_slice(&[b'(', b'h', i - 1, b'h', i - 1, b'l', b'q', i]);
        }
        let Value::List(top) = run(&ops).unwrap() else {
            panic!("not a list")
        };
        assert_eq!((top.depth, top.items.len()), (31, 2));
    }

    #[test]
    fn nesting_past_the_limit_is_refused() {
        let mut ops = vec![b']'];
        ops.extend(std::iter::repeat_n(0x85, MAX_DEPTH - 1));
        assert!(run(&ops).is_ok());
        ops.push(0x85);
        let err = format!("{:#}", run(&ops).unwrap_err());
        assert!(err.contains(&format!("deeper than {MAX_DEPTH}")), "{err}");
    }

    #[test]
    fn a_named_call_is_never_made() {
        let v = run(b"cos\nsystem\n(X\x02\x00\x00\x00lstR").unwrap();
        assert!(matches!(v, Value::Opaque(s) if &*s == "os.system"));
    }

    #[test]
    fn unknown_opcodes_are_refused_by_position() {
        let err = run(b"i").unwrap_err().to_string();
        assert_eq!(err, "unsupported pickle opcode 0x69 at byte 2");
    }
}
