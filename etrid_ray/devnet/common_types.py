"""Types every pallet shares, registered once with the paths a Substrate runtime gives them."""

from __future__ import annotations

from dataclasses import dataclass

from scalecodec.utils.ss58 import ss58_decode

from etrid_ray.devnet.type_registry import Field, TypeRegistry, Variant


@dataclass(frozen=True)
class CommonTypes:
    unit: int
    bool: int
    u8: int
    u16: int
    u32: int
    u64: int
    u128: int
    bytes: int
    compact_u32: int
    compact_u64: int
    compact_u128: int
    h256: int
    account_id: int
    multi_address: int
    weight: int
    dispatch_class: int
    pays: int
    dispatch_info: int
    dispatch_error: int
    dispatch_result: int

    @staticmethod
    def build(reg: TypeRegistry) -> CommonTypes:
        u8 = reg.primitive("u8")
        u32 = reg.primitive("u32")
        u64 = reg.primitive("u64")
        u128 = reg.primitive("u128")
        unit = reg.tuple()
        bytes32 = reg.array(32, u8)
        account_id = reg.composite(("sp_core", "crypto", "AccountId32"), [Field(None, bytes32, "[u8; 32]")])
        compact_u32 = reg.compact(u32)
        compact_u64 = reg.compact(u64)
        byte_seq = reg.sequence(u8)
        multi_address = reg.variant(
            ("sp_runtime", "multiaddress", "MultiAddress"),
            [Variant("Id", 0, (Field(None, account_id, "AccountId"),)),
             Variant("Index", 1, (Field(None, compact_u32, "AccountIndex"),)),
             Variant("Raw", 2, (Field(None, byte_seq, "Vec<u8>"),)),
             Variant("Address32", 3, (Field(None, bytes32, "[u8; 32]"),)),
             Variant("Address20", 4, (Field(None, reg.array(20, u8), "[u8; 20]"),))],
            params=(("AccountId", account_id), ("AccountIndex", u32)))
        weight = reg.composite(("sp_weights", "weight_v2", "Weight"),
                               [Field("ref_time", compact_u64, "u64"), Field("proof_size", compact_u64, "u64")])
        dispatch_class = reg.variant(("frame_support", "dispatch", "DispatchClass"),
                                     [Variant("Normal", 0), Variant("Operational", 1), Variant("Mandatory", 2)])
        pays = reg.variant(("frame_support", "dispatch", "Pays"), [Variant("Yes", 0), Variant("No", 1)])
        dispatch_info = reg.composite(("frame_support", "dispatch", "DispatchInfo"),
                                      [Field("weight", weight, "Weight"),
                                       Field("class", dispatch_class, "DispatchClass"),
                                       Field("pays_fee", pays, "Pays")])
        module_error = reg.composite(("sp_runtime", "ModuleError"),
                                     [Field("index", u8, "u8"), Field("error", reg.array(4, u8), "[u8; 4]")])
        token_error = reg.variant(("sp_runtime", "TokenError"), [
            Variant(n, i) for i, n in enumerate(["FundsUnavailable", "OnlyProvider", "BelowMinimum", "CannotCreate",
                                                 "UnknownAsset", "Frozen", "Unsupported",
                                                 "CannotCreateHold", "NotExpendable", "Blocked"])])
        arithmetic_error = reg.variant(("sp_arithmetic", "ArithmeticError"),
                                       [Variant("Underflow", 0), Variant("Overflow", 1), Variant("DivisionByZero", 2)])
        transactional_error = reg.variant(("sp_runtime", "TransactionalError"),
                                          [Variant("LimitReached", 0), Variant("NoLayer", 1)])
        dispatch_error = reg.variant(("sp_runtime", "DispatchError"), [
            Variant("Other", 0), Variant("CannotLookup", 1), Variant("BadOrigin", 2),
            Variant("Module", 3, (Field(None, module_error, "ModuleError"),)),
            Variant("ConsumerRemaining", 4), Variant("NoProviders", 5), Variant("TooManyConsumers", 6),
            Variant("Token", 7, (Field(None, token_error, "TokenError"),)),
            Variant("Arithmetic", 8, (Field(None, arithmetic_error, "ArithmeticError"),)),
            Variant("Transactional", 9, (Field(None, transactional_error, "TransactionalError"),)),
            Variant("Exhausted", 10), Variant("Corruption", 11), Variant("Unavailable", 12),
            Variant("RootNotAllowed", 13)])
        dispatch_result = reg.variant(("Result",), [Variant("Ok", 0, (Field(None, unit),)),
                                                    Variant("Err", 1, (Field(None, dispatch_error),))],
                                      params=(("T", unit), ("E", dispatch_error)))
        return CommonTypes(
            unit=unit, bool=reg.primitive("bool"), u8=u8, u16=reg.primitive("u16"), u32=u32, u64=u64, u128=u128,
            bytes=byte_seq, compact_u32=compact_u32, compact_u64=compact_u64, compact_u128=reg.compact(u128),
            h256=reg.composite(("primitive_types", "H256"), [Field(None, bytes32, "[u8; 32]")]),
            account_id=account_id, multi_address=multi_address, weight=weight, dispatch_class=dispatch_class,
            pays=pays, dispatch_info=dispatch_info, dispatch_error=dispatch_error, dispatch_result=dispatch_result)


def to_account(value: object) -> str:
    """Normalises an account as scalecodec hands it over (ss58, 0x-hex, or a MultiAddress dict) to 0x-hex."""
    if isinstance(value, dict):
        if "Id" in value:
            return to_account(value["Id"])
        raise ValueError(f"unsupported address {value!r}")
    if isinstance(value, bytes | bytearray):
        if len(value) != 32:
            raise ValueError("account ids are 32 bytes")
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        if value.startswith("0x"):
            raw = bytes.fromhex(value[2:])
            if len(raw) != 32:
                raise ValueError("account ids are 32 bytes")
            return "0x" + raw.hex()
        return "0x" + ss58_decode(value)
    raise ValueError(f"unsupported account {value!r}")


def to_bytes(value: object) -> bytes:
    """Byte strings come back from scalecodec as 0x-hex or as text; the runtime wants raw bytes."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        if value.startswith("0x"):
            try:
                return bytes.fromhex(value[2:])
            except ValueError:
                return value.encode()
        return value.encode()
    if isinstance(value, list):
        return bytes(value)
    raise ValueError(f"not a byte string: {value!r}")


def hexstr(data: bytes) -> str:
    return "0x" + data.hex()
