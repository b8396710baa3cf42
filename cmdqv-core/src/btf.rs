//! A small checked reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`, and a module's split
//! BTF on top of it): what a function's parameters are called and where a struct member sits.
//! The host probes need both for the running kernel (the form of
//! `arm_smmu_cmdq_issue_cmdlist` changed across Linux 6.x; struct offsets change with the
//! configuration).
//!
//! The blob is untrusted input: every read is bounds-checked, every type id and string offset is
//! checked before use, chains of typedefs and anonymous members are followed a bounded number of
//! steps, and nothing here panics or loops on any input. Only little-endian BTF (the machines
//! cmdqv runs on) is read. Layout: the kernel's Documentation/bpf/btf.rst.

use std::ops::Range;

/// Why a BTF blob or a lookup in it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    #[error("not little-endian BTF (magic {0:#06x})")]
    BadMagic(u16),
    #[error("BTF version {0} (only version 1 is known)")]
    Version(u8),
    #[error("truncated BTF: {0}")]
    Truncated(&'static str),
    #[error("BTF type {id} has unknown kind {kind}")]
    UnknownKind { id: u32, kind: u8 },
    #[error("BTF refers to type {0}, which it does not have")]
    BadTypeId(u32),
    #[error("the kernel's BTF has no {what} named {name}")]
    NotFound { what: &'static str, name: String },
    #[error("the kernel's BTF has {count} differing definitions of {name}")]
    Ambiguous { name: String, count: usize },
    #[error("{0} is not a struct or union member path")]
    NotComposite(String),
    #[error("{0} is a bit field, it has no byte offset")]
    BitField(String),
}

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
/// Steps through typedef/const/volatile/restrict/type_tag before giving up (a loop in the input).
const MAX_CHAIN: usize = 32;
/// Nested anonymous structs/unions searched for a member.
const MAX_ANON_DEPTH: usize = 8;

/// BTF kinds this reader looks at by number.
mod kind {
    pub const STRUCT: u8 = 4;
    pub const UNION: u8 = 5;
    pub const TYPEDEF: u8 = 8;
    pub const VOLATILE: u8 = 9;
    pub const CONST: u8 = 10;
    pub const RESTRICT: u8 = 11;
    pub const FUNC: u8 = 12;
    pub const FUNC_PROTO: u8 = 13;
    pub const TYPE_TAG: u8 = 18;
}

/// One member (struct/union) or parameter (function prototype).
#[derive(Clone, Copy, Debug)]
struct Item {
    name_off: u32,
    ty: u32,
    /// Bit offset (members only; bits 0..24 with a bit-field struct's kind_flag).
    offset: u32,
}

#[derive(Clone, Debug)]
struct Type {
    kind: u8,
    kind_flag: bool,
    name_off: u32,
    /// `size` or `type`, by kind.
    size_or_type: u32,
    items: Range<usize>,
}

/// A function's parameter as BTF names it (empty when the BTF has no name for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
}

/// Parsed BTF: types by id (id 0 is void), their members and parameters, and the strings.
#[derive(Clone, Debug)]
pub struct Btf {
    types: Vec<Type>,
    items: Vec<Item>,
    strings: Vec<u8>,
}

/// A bounds-checked little-endian reader.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn u32(&mut self, what: &'static str) -> Result<u32, BtfError> {
        let end = self.pos.checked_add(4).ok_or(BtfError::Truncated(what))?;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or(BtfError::Truncated(what))?;
        self.pos = end;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Bytes of kind-specific data after a type's 12-byte record.
fn extra_len(kind: u8, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
        3 => 12,                      // ARRAY
        4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
        2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
        _ => return None,
    })
}

impl Btf {
    /// Parses a complete BTF blob (vmlinux's).
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let empty = Btf {
            types: vec![void()],
            items: Vec::new(),
            strings: Vec::new(),
        };
        empty.extended(data)
    }

    /// Parses a module's split BTF, whose type ids and string offsets continue `base`'s.
    pub fn parse_split(data: &[u8], base: &Btf) -> Result<Self, BtfError> {
        base.clone().extended(data)
    }

    /// `self` with the types and strings of `data` appended.
    fn extended(mut self, data: &[u8]) -> Result<Self, BtfError> {
        let mut h = Cursor { buf: data, pos: 0 };
        let first = h.u32("header")?;
        let magic = first as u16;
        if magic != MAGIC {
            return Err(BtfError::BadMagic(magic));
        }
        let version = (first >> 16) as u8;
        if version != 1 {
            return Err(BtfError::Version(version));
        }
        let hdr_len = h.u32("header")? as usize;
        let (type_off, type_len) = (h.u32("header")? as usize, h.u32("header")? as usize);
        let (str_off, str_len) = (h.u32("header")? as usize, h.u32("header")? as usize);
        if hdr_len < HEADER_LEN {
            return Err(BtfError::Truncated("header length"));
        }
        let section = |off: usize, len: usize, what| {
            let start = hdr_len.checked_add(off).ok_or(BtfError::Truncated(what))?;
            let end = start.checked_add(len).ok_or(BtfError::Truncated(what))?;
            data.get(start..end).ok_or(BtfError::Truncated(what))
        };
        let types = section(type_off, type_len, "type section")?;
        let strings = section(str_off, str_len, "string section")?;
        self.strings.extend_from_slice(strings);
        self.parse_types(types)?;
        Ok(self)
    }

    fn parse_types(&mut self, data: &[u8]) -> Result<(), BtfError> {
        let mut c = Cursor { buf: data, pos: 0 };
        while c.pos < data.len() {
            let id = self.types.len() as u32;
            let name_off = c.u32("type record")?;
            let info = c.u32("type record")?;
            let size_or_type = c.u32("type record")?;
            let kind = ((info >> 24) & 0x1f) as u8;
            let vlen = (info & 0xffff) as usize;
            let extra = extra_len(kind, vlen).ok_or(BtfError::UnknownKind { id, kind })?;
            let start = self.items.len();
            let with_items = matches!(kind, kind::STRUCT | kind::UNION | kind::FUNC_PROTO);
            if with_items {
                for _ in 0..vlen {
                    let name_off = c.u32("member")?;
                    let ty = c.u32("member")?;
                    let offset = if kind == kind::FUNC_PROTO {
                        0
                    } else {
                        c.u32("member")?
                    };
                    self.items.push(Item {
                        name_off,
                        ty,
                        offset,
                    });
                }
            } else {
                c.pos = c
                    .pos
                    .checked_add(extra)
                    .filter(|&e| e <= data.len())
                    .ok_or(BtfError::Truncated("type data"))?;
            }
            self.types.push(Type {
                kind,
                kind_flag: info >> 31 != 0,
                name_off,
                size_or_type,
                items: start..self.items.len(),
            });
        }
        Ok(())
    }

    /// Number of types, void included.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.len() <= 1
    }

    fn name_bytes(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    fn name(&self, off: u32) -> String {
        String::from_utf8_lossy(self.name_bytes(off)).into_owned()
    }

    fn get(&self, id: u32) -> Result<&Type, BtfError> {
        self.types.get(id as usize).ok_or(BtfError::BadTypeId(id))
    }

    fn items(&self, t: &Type) -> &[Item] {
        self.items.get(t.items.clone()).unwrap_or(&[])
    }

    /// Types of `kind` named `name`.
    fn named(&self, kinds: &[u8], name: &str) -> impl Iterator<Item = &Type> {
        let want = name.as_bytes();
        self.types
            .iter()
            .filter(move |t| kinds.contains(&t.kind) && self.name_bytes(t.name_off) == want)
    }

    /// `id` with typedefs and qualifiers peeled off.
    fn resolve(&self, mut id: u32) -> Result<&Type, BtfError> {
        for _ in 0..MAX_CHAIN {
            let t = self.get(id)?;
            match t.kind {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Ok(t),
            }
        }
        Err(BtfError::BadTypeId(id))
    }

    /// The parameters of the function `name`. Several FUNC records with the same name (static
    /// functions of different files) are fine when their parameters agree.
    pub fn function_params(&self, name: &str) -> Result<Vec<Param>, BtfError> {
        let mut found: Vec<Vec<Param>> = Vec::new();
        for f in self.named(&[kind::FUNC], name) {
            let proto = self.get(f.size_or_type)?;
            if proto.kind != kind::FUNC_PROTO {
                return Err(BtfError::NotFound {
                    what: "function prototype",
                    name: name.into(),
                });
            }
            let params: Vec<Param> = self
                .items(proto)
                .iter()
                .map(|p| Param {
                    name: self.name(p.name_off),
                })
                .collect();
            if !found.contains(&params) {
                found.push(params);
            }
        }
        match found.len() {
            0 => Err(BtfError::NotFound {
                what: "function",
                name: name.into(),
            }),
            1 => Ok(found.remove(0)),
            count => Err(BtfError::Ambiguous {
                name: name.into(),
                count,
            }),
        }
    }

    /// Byte offset of `path` (member names, one per nesting level) inside `struct name`.
    /// Members of anonymous structs and unions are found as if they were the parent's own.
    /// Several structs may share a name (Linux has a `struct arm_smmu_device` for SMMUv2 and
    /// one for SMMUv3): those that lack the path do not count, those that have it must agree.
    pub fn member_offset(&self, name: &str, path: &[&str]) -> Result<u32, BtfError> {
        let full = format!("{name}.{}", path.join("."));
        let mut found: Vec<u32> = Vec::new();
        let mut first_err = None;
        for t in self.named(&[kind::STRUCT, kind::UNION], name) {
            match self.path_offset(t, path, &full) {
                Ok(off) if !found.contains(&off) => found.push(off),
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match (found.len(), first_err) {
            (0, Some(e)) => Err(e),
            (0, None) => Err(BtfError::NotFound {
                what: "struct",
                name: name.into(),
            }),
            (1, _) => Ok(found[0]),
            (count, _) => Err(BtfError::Ambiguous { name: full, count }),
        }
    }

    fn path_offset<'a>(
        &'a self,
        mut t: &'a Type,
        path: &[&str],
        full: &str,
    ) -> Result<u32, BtfError> {
        let mut bits: u64 = 0;
        for (i, member) in path.iter().enumerate() {
            let (m_bits, ty) =
                self.find_member(t, member, 0)?
                    .ok_or_else(|| BtfError::NotFound {
                        what: "member",
                        name: format!("{full} ({member})"),
                    })?;
            bits += u64::from(m_bits);
            if i + 1 < path.len() {
                t = self.resolve(ty)?;
                if !matches!(t.kind, kind::STRUCT | kind::UNION) {
                    return Err(BtfError::NotComposite(full.into()));
                }
            }
        }
        if !bits.is_multiple_of(8) {
            return Err(BtfError::BitField(full.into()));
        }
        u32::try_from(bits / 8).map_err(|_| BtfError::Truncated("member offset"))
    }

    /// (bit offset, type) of `member` in the struct/union `t`, looking into anonymous members.
    fn find_member(
        &self,
        t: &Type,
        member: &str,
        depth: usize,
    ) -> Result<Option<(u32, u32)>, BtfError> {
        if depth > MAX_ANON_DEPTH {
            return Ok(None);
        }
        let bit_off = |m: &Item| {
            if t.kind_flag {
                m.offset & 0x00ff_ffff
            } else {
                m.offset
            }
        };
        for m in self.items(t) {
            if self.name_bytes(m.name_off) == member.as_bytes() {
                if t.kind_flag && m.offset >> 24 != 0 {
                    return Err(BtfError::BitField(member.into()));
                }
                return Ok(Some((bit_off(m), m.ty)));
            }
        }
        for m in self.items(t).iter().filter(|m| m.name_off == 0) {
            let inner = self.resolve(m.ty)?;
            if matches!(inner.kind, kind::STRUCT | kind::UNION) {
                if let Some((off, ty)) = self.find_member(inner, member, depth + 1)? {
                    return Ok(Some((bit_off(m).saturating_add(off), ty)));
                }
            }
        }
        Ok(None)
    }
}

fn void() -> Type {
    Type {
        kind: 0,
        kind_flag: false,
        name_off: 0,
        size_or_type: 0,
        items: 0..0,
    }
}

/// Encoder of small BTF blobs for tests (also used by the host plan's tests in cmdqv-tui).
pub mod build {
    /// A BTF blob under construction: add strings and types, then [`Builder::finish`].
    #[derive(Default)]
    pub struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
        /// String offsets start here (a split blob continues its base's strings).
        str_base: u32,
    }

    impl Builder {
        /// A blob whose first type gets id 1.
        pub fn new() -> Self {
            Self::split(1, 0)
        }

        /// A split blob on top of a base with `first_id - 1` types and `base_str_len` bytes of
        /// strings.
        pub fn split(first_id: u32, base_str_len: u32) -> Self {
            Self {
                types: Vec::new(),
                strings: if base_str_len == 0 {
                    vec![0]
                } else {
                    Vec::new()
                },
                next_id: first_id,
                str_base: base_str_len,
            }
        }

        /// Offset of `s` in the string section (added at the end).
        pub fn str(&mut self, s: &str) -> u32 {
            let off = self.str_base + self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        /// A raw type record with `extra` words after it; returns its id.
        pub fn raw(
            &mut self,
            name_off: u32,
            kind: u8,
            vlen: u16,
            flag: bool,
            size_or_type: u32,
            extra: &[u32],
        ) -> u32 {
            let info = u32::from(vlen) | u32::from(kind) << 24 | u32::from(flag) << 31;
            for w in [name_off, info, size_or_type].iter().chain(extra) {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        pub fn int(&mut self, name: &str, bytes: u32) -> u32 {
            let n = self.str(name);
            self.raw(n, 1, 0, false, bytes, &[bytes * 8])
        }

        pub fn ptr(&mut self, to: u32) -> u32 {
            self.raw(0, 2, 0, false, to, &[])
        }

        pub fn typedef(&mut self, name: &str, to: u32) -> u32 {
            let n = self.str(name);
            self.raw(n, 8, 0, false, to, &[])
        }

        /// A struct (or union) with members (name, type, bit offset); "" names an anonymous one.
        pub fn composite(
            &mut self,
            union: bool,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let n = if name.is_empty() { 0 } else { self.str(name) };
            let mut extra = Vec::new();
            for &(m, ty, bits) in members {
                let mo = if m.is_empty() { 0 } else { self.str(m) };
                extra.extend([mo, ty, bits]);
            }
            let kind = if union { 5 } else { 4 };
            self.raw(n, kind, members.len() as u16, false, size, &extra)
        }

        /// A function named `name` with parameters (name, type); returns the FUNC's id.
        pub fn func(&mut self, name: &str, ret: u32, params: &[(&str, u32)]) -> u32 {
            let mut extra = Vec::new();
            for &(p, ty) in params {
                let po = if p.is_empty() { 0 } else { self.str(p) };
                extra.extend([po, ty]);
            }
            let proto = self.raw(0, 13, params.len() as u16, false, ret, &extra);
            let n = self.str(name);
            self.raw(n, 12, 1, false, proto, &[])
        }

        /// The blob: header, types, strings.
        pub fn finish(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xeb9fu16.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            let t = self.types.len() as u32;
            for w in [24u32, 0, t, t, self.strings.len() as u32] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build::Builder;
    use super::*;
    use proptest::prelude::*;

    /// The shapes of Linux 6.12's SMMUv3 structures, with the offsets measured in the arm64
    /// guest's kernel: arm_smmu_cmdq.q at 0, arm_smmu_queue.llq at 0 and base at 136,
    /// arm_smmu_ll_queue.max_n_shift at 64 (after a cacheline-sized anonymous union).
    fn smmu_like(with_cmdq_arg: bool) -> Vec<u8> {
        let mut b = Builder::new();
        let u32t = b.int("unsigned int", 4);
        let u64t = b.int("long long unsigned int", 8);
        let u32td = b.typedef("u32", u32t);
        let prod_cons = b.composite(false, "", 8, &[("prod", u32td, 0), ("cons", u32td, 32)]);
        let anon = b.composite(true, "", 64, &[("val", u64t, 0), ("", prod_cons, 0)]);
        let llq = b.composite(
            false,
            "arm_smmu_ll_queue",
            128,
            &[("", anon, 0), ("max_n_shift", u32td, 512)],
        );
        let base = b.ptr(u64t);
        let queue = b.composite(
            false,
            "arm_smmu_queue",
            192,
            &[("llq", llq, 0), ("irq", u32t, 1024), ("base", base, 1088)],
        );
        let cmdq = b.composite(false, "arm_smmu_cmdq", 256, &[("q", queue, 0)]);
        let dev = b.composite(
            false,
            "arm_smmu_device",
            1024,
            &[("dev", base, 0), ("cmdq", cmdq, 2048)],
        );
        let (pdev, pcmdq, pcmds) = (b.ptr(dev), b.ptr(cmdq), b.ptr(u64t));
        let boolean = b.int("_Bool", 1);
        if with_cmdq_arg {
            b.func(
                "arm_smmu_cmdq_issue_cmdlist",
                u32t,
                &[
                    ("smmu", pdev),
                    ("cmdq", pcmdq),
                    ("cmds", pcmds),
                    ("n", u32t),
                    ("sync", boolean),
                ],
            );
        } else {
            b.func(
                "arm_smmu_cmdq_issue_cmdlist",
                u32t,
                &[
                    ("smmu", pdev),
                    ("cmds", pcmds),
                    ("n", u32t),
                    ("sync", boolean),
                ],
            );
        }
        b.finish()
    }

    #[test]
    fn reads_a_functions_parameters_in_both_forms() {
        for (with, want) in [(true, 5), (false, 4)] {
            let btf = Btf::parse(&smmu_like(with)).unwrap();
            let p = btf.function_params("arm_smmu_cmdq_issue_cmdlist").unwrap();
            assert_eq!(p.len(), want);
            assert_eq!(p[0].name, "smmu");
            assert_eq!(p.last().unwrap().name, "sync");
        }
        let btf = Btf::parse(&smmu_like(true)).unwrap();
        assert_eq!(
            btf.function_params("arm_smmu_cmdq_poll_until_sync"),
            Err(BtfError::NotFound {
                what: "function",
                name: "arm_smmu_cmdq_poll_until_sync".into()
            })
        );
    }

    #[test]
    fn finds_nested_and_anonymous_members() {
        let btf = Btf::parse(&smmu_like(true)).unwrap();
        assert_eq!(
            btf.member_offset("arm_smmu_cmdq", &["q", "llq", "max_n_shift"]),
            Ok(64)
        );
        assert_eq!(btf.member_offset("arm_smmu_cmdq", &["q", "base"]), Ok(136));
        assert_eq!(btf.member_offset("arm_smmu_device", &["cmdq"]), Ok(256));
        // `cons` sits in an anonymous struct inside an anonymous union.
        assert_eq!(btf.member_offset("arm_smmu_ll_queue", &["cons"]), Ok(4));
        assert!(matches!(
            btf.member_offset("arm_smmu_cmdq", &["q", "nope"]),
            Err(BtfError::NotFound { what: "member", .. })
        ));
        assert!(matches!(
            btf.member_offset("arm_smmu_cmdq", &["q", "irq", "x"]),
            Err(BtfError::NotComposite(_))
        ));
        assert!(matches!(
            btf.member_offset("tegra241_cmdqv", &["vintfs"]),
            Err(BtfError::NotFound { what: "struct", .. })
        ));
    }

    #[test]
    fn differing_duplicates_are_ambiguous_and_equal_ones_are_not() {
        let mut b = Builder::new();
        let i = b.int("int", 4);
        b.func("f", i, &[("a", i)]);
        b.func("f", i, &[("a", i)]);
        b.func("g", i, &[("a", i)]);
        b.func("g", i, &[("a", i), ("b", i)]);
        let btf = Btf::parse(&b.finish()).unwrap();
        assert_eq!(btf.function_params("f").unwrap().len(), 1);
        assert!(matches!(
            btf.function_params("g"),
            Err(BtfError::Ambiguous { count: 2, .. })
        ));
    }

    #[test]
    fn structs_sharing_a_name_count_only_where_the_path_exists() {
        let mut b = Builder::new();
        let i = b.int("int", 4);
        // SMMUv2's and SMMUv3's `struct arm_smmu_device`: only one has `cmdq`.
        b.composite(
            false,
            "arm_smmu_device",
            64,
            &[("dev", i, 0), ("cfg", i, 32)],
        );
        b.composite(
            false,
            "arm_smmu_device",
            512,
            &[("dev", i, 0), ("cmdq", i, 512)],
        );
        b.composite(false, "twice", 8, &[("x", i, 0)]);
        b.composite(false, "twice", 8, &[("x", i, 32)]);
        let btf = Btf::parse(&b.finish()).unwrap();
        assert_eq!(btf.member_offset("arm_smmu_device", &["cmdq"]), Ok(64));
        assert_eq!(btf.member_offset("arm_smmu_device", &["dev"]), Ok(0));
        assert!(matches!(
            btf.member_offset("arm_smmu_device", &["nope"]),
            Err(BtfError::NotFound { what: "member", .. })
        ));
        assert!(matches!(
            btf.member_offset("twice", &["x"]),
            Err(BtfError::Ambiguous { count: 2, .. })
        ));
    }

    #[test]
    fn bit_fields_have_no_byte_offset() {
        let mut b = Builder::new();
        let i = b.int("int", 4);
        let n = b.str("s");
        let (x, y) = (b.str("x"), b.str("y"));
        // kind_flag: offset bits 0..24, bit-field size in bits 24..32.
        b.raw(n, 4, 2, true, 4, &[x, i, 3 << 24, y, i, 8 | 5 << 24]);
        let btf = Btf::parse(&b.finish()).unwrap();
        assert_eq!(
            btf.member_offset("s", &["x"]),
            Err(BtfError::BitField("x".into()))
        );
    }

    #[test]
    fn split_btf_continues_the_base_ids_and_strings() {
        let base_blob = smmu_like(true);
        let base = Btf::parse(&base_blob).unwrap();
        // The base's string section: everything after header + types.
        let str_len = u32::from_le_bytes(base_blob[20..24].try_into().unwrap());
        let mut b = Builder::split(base.len() as u32, str_len);
        let u32_in_base = 1; // "unsigned int" is the base's first type
        b.func(
            "tegra241_cmdqv_isr",
            u32_in_base,
            &[("irq", u32_in_base), ("devid", u32_in_base)],
        );
        let split = Btf::parse_split(&b.finish(), &base).unwrap();
        assert_eq!(split.len(), base.len() + 2);
        let p = split.function_params("tegra241_cmdqv_isr").unwrap();
        assert_eq!(
            p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["irq", "devid"]
        );
        assert_eq!(
            split
                .function_params("arm_smmu_cmdq_issue_cmdlist")
                .unwrap()
                .len(),
            5
        );
    }

    #[test]
    fn malformed_blobs_are_typed_errors() {
        let good = smmu_like(true);
        assert_eq!(
            Btf::parse(&good[..10]).unwrap_err(),
            BtfError::Truncated("header")
        );
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(matches!(Btf::parse(&bad), Err(BtfError::BadMagic(_))));
        let mut bad = good.clone();
        bad[2] = 2;
        assert_eq!(Btf::parse(&bad).unwrap_err(), BtfError::Version(2));
        // The first type's kind byte (info bits 24..29) set to 31.
        let mut bad = good.clone();
        bad[24 + 7] = 31;
        assert!(matches!(
            Btf::parse(&bad),
            Err(BtfError::UnknownKind { id: 1, kind: 31 })
        ));
        // A type section claiming more bytes than the blob has.
        let mut bad = good.clone();
        bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Btf::parse(&bad), Err(BtfError::Truncated(_))));
        // A typedef loop is reported, not followed forever.
        let mut b = Builder::new();
        let n = b.str("s");
        let m = b.str("m");
        b.raw(n, 4, 1, false, 8, &[m, 2, 0]);
        b.typedef("loop", 3);
        b.typedef("loop2", 2);
        let btf = Btf::parse(&b.finish()).unwrap();
        assert!(btf.member_offset("s", &["m", "x"]).is_err());
    }

    /// The running kernel's own BTF, where there is one: a function and struct members whose
    /// layout every Linux has.
    #[test]
    fn reads_this_machines_kernel_btf() {
        let Ok(blob) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("no /sys/kernel/btf/vmlinux here: nothing to read");
            return;
        };
        let btf = Btf::parse(&blob).expect("the kernel's own BTF parses");
        assert!(btf.len() > 1000, "{} types", btf.len());
        let p = btf
            .function_params("do_sys_openat2")
            .expect("do_sys_openat2");
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["dfd", "filename", "how"]);
        assert_eq!(btf.member_offset("list_head", &["next"]), Ok(0));
        assert_eq!(btf.member_offset("list_head", &["prev"]), Ok(8));
        assert_eq!(btf.member_offset("callback_head", &["func"]), Ok(8));
        assert!(matches!(
            btf.function_params("cmdqv_no_such_function"),
            Err(BtfError::NotFound { .. })
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(btf) = Btf::parse(&bytes) {
                let _ = btf.function_params("f");
                let _ = btf.member_offset("s", &["a", "b"]);
            }
        }

        #[test]
        fn a_valid_header_over_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut blob = Builder::new().finish();
            let len = body.len() as u32;
            blob.truncate(24);
            blob[12..16].copy_from_slice(&(len / 2).to_le_bytes());
            blob[16..20].copy_from_slice(&(len / 2).to_le_bytes());
            blob[20..24].copy_from_slice(&(len - len / 2).to_le_bytes());
            blob.extend_from_slice(&body);
            if let Ok(btf) = Btf::parse(&blob) {
                for name in ["", "f", "s"] {
                    let _ = btf.function_params(name);
                    let _ = btf.member_offset(name, &["m", "n"]);
                }
            }
        }
    }
}
