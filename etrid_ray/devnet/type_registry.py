"""A builder for the scale-info portable type registry that V14 metadata carries.

The devnet's pallets declare their types here, and the same registry is both
written into the metadata (what clients read) and loaded back into scalecodec
to encode storage and events and decode calls (what the runtime executes).
One description, two uses: the metadata cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRIMITIVES = ("bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "u256",
              "i8", "i16", "i32", "i64", "i128", "i256")


@dataclass(frozen=True)
class Field:
    """A named (or unnamed) field of a composite or a variant."""

    name: str | None
    ty: int
    type_name: str | None = None
    docs: tuple[str, ...] = ()

    def to_value(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.ty, "typeName": self.type_name, "docs": list(self.docs)}


@dataclass(frozen=True)
class Variant:
    name: str
    index: int
    fields: tuple[Field, ...] = ()
    docs: tuple[str, ...] = ()

    def to_value(self) -> dict[str, Any]:
        return {"name": self.name, "fields": [f.to_value() for f in self.fields],
                "index": self.index, "docs": list(self.docs)}


@dataclass
class TypeRegistry:
    """Interns types by structure so equal definitions share one id, as scale-info does."""

    types: list[dict[str, Any] | None] = field(default_factory=list)
    _interned: dict[Any, int] = field(default_factory=dict)
    bounds: dict[int, int] = field(default_factory=dict)

    def _add(self, key: Any, entry: dict[str, Any]) -> int:
        if key is not None and key in self._interned:
            return self._interned[key]
        self.types.append(entry)
        type_id = len(self.types) - 1
        if key is not None:
            self._interned[key] = type_id
        return type_id

    @staticmethod
    def _entry(definition: dict[str, Any], path: tuple[str, ...] = (),
               params: tuple[tuple[str, int | None], ...] = (), docs: tuple[str, ...] = ()) -> dict[str, Any]:
        return {"path": list(path), "params": [{"name": n, "type": t} for n, t in params],
                "def": definition, "docs": list(docs)}

    def reserve(self) -> int:
        """Reserves an id for a type defined later (RuntimeCall is recursive through Utility.batch)."""
        self.types.append(None)
        return len(self.types) - 1

    def define_variant(self, type_id: int, path: tuple[str, ...], variants: list[Variant],
                       params: tuple[tuple[str, int | None], ...] = ()) -> int:
        """Defines a reserved id as a variant type."""
        self.types[type_id] = self._entry({"variant": {"variants": [v.to_value() for v in variants]}},
                                          path, params)
        return type_id

    def primitive(self, name: str) -> int:
        if name not in PRIMITIVES:
            raise ValueError(f"unknown primitive {name!r}")
        return self._add(("prim", name), self._entry({"primitive": name}))

    def compact(self, inner: int) -> int:
        return self._add(("compact", inner), self._entry({"compact": {"type": inner}}))

    def sequence(self, inner: int) -> int:
        return self._add(("seq", inner), self._entry({"sequence": {"type": inner}}))

    def array(self, length: int, inner: int) -> int:
        return self._add(("array", length, inner), self._entry({"array": {"len": length, "type": inner}}))

    def tuple(self, *inner: int) -> int:
        return self._add(("tuple", inner), self._entry({"tuple": list(inner)}))

    def composite(self, path: tuple[str, ...], fields: list[Field], params: tuple[tuple[str, int | None], ...] = (),
                  docs: tuple[str, ...] = ()) -> int:
        key = ("composite", path, tuple(fields), params)
        return self._add(key, self._entry({"composite": {"fields": [f.to_value() for f in fields]}},
                                          path, params, docs))

    def variant(self, path: tuple[str, ...], variants: list[Variant], params: tuple[tuple[str, int | None], ...] = (),
                docs: tuple[str, ...] = ()) -> int:
        key = ("variant", path, tuple(variants), params)
        return self._add(key, self._entry({"variant": {"variants": [v.to_value() for v in variants]}},
                                          path, params, docs))

    # Common shapes, named as a Rust runtime names them -------------------------------------------

    def option(self, inner: int) -> int:
        return self.variant(("Option",), [Variant("None", 0), Variant("Some", 1, (Field(None, inner),))],
                            params=(("T", inner),))

    def bounded_vec(self, inner: int, bound: int) -> int:
        """`BoundedVec<T, S>`: a plain Vec on the wire. The bound is not in the metadata (S is a type
        parameter without a type, as in Rust), so it is kept in `bounds` and checked when a call decodes."""
        seq = self.sequence(inner)
        entry = self._entry({"composite": {"fields": [Field(None, seq, "Vec<T>").to_value()]}},
                            ("sp_core", "bounded", "bounded_vec", "BoundedVec"), (("T", inner), ("S", None)))
        type_id = self._add(("bounded", inner, bound), entry)
        self.bounds[type_id] = bound
        return type_id

    def check_bounds(self, type_id: int, value: Any) -> None:
        """Raises ValueError when a decoded value exceeds a BoundedVec bound (a real runtime fails to decode)."""
        entry = self.types[type_id]
        assert entry is not None
        if type_id in self.bounds and isinstance(value, str | list | bytes):
            length = len(value) if not (isinstance(value, str) and value.startswith("0x")) else (len(value) - 2) // 2
            if isinstance(value, str) and not value.startswith("0x"):
                length = len(value.encode())
            if length > self.bounds[type_id]:
                raise ValueError(f"bounded vector longer than {self.bounds[type_id]}")
        definition = entry["def"]
        if "composite" in definition:
            fields = definition["composite"]["fields"]
            if isinstance(value, dict) and all(f["name"] for f in fields):
                for f in fields:
                    if f["name"] in value:
                        self.check_bounds(f["type"], value[f["name"]])
            elif len(fields) == 1 and type_id not in self.bounds:
                self.check_bounds(fields[0]["type"], value)
            elif len(fields) == 1:
                self.check_bounds(fields[0]["type"], value)
        elif "variant" in definition and isinstance(value, dict) and len(value) == 1:
            (name, inner), = value.items()
            for v in definition["variant"]["variants"]:
                if v["name"] == name and v["fields"]:
                    fields = v["fields"]
                    if len(fields) == 1 and not fields[0]["name"]:
                        self.check_bounds(fields[0]["type"], inner)
                    elif isinstance(inner, dict):
                        for f in fields:
                            if f["name"] in inner:
                                self.check_bounds(f["type"], inner[f["name"]])
        elif "sequence" in definition and isinstance(value, list):
            inner_ty = definition["sequence"]["type"]
            for v in value:
                self.check_bounds(inner_ty, v)

    def portable_registry(self) -> dict[str, Any]:
        missing = [i for i, t in enumerate(self.types) if t is None]
        if missing:
            raise RuntimeError(f"type ids reserved but never defined: {missing}")
        return {"types": [{"id": i, "type": t} for i, t in enumerate(self.types)]}
