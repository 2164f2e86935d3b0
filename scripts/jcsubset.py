#!/usr/bin/env python3
"""Checks compiled class files against the Java Card 3.0.x subset, without the Oracle converter.

    python3 scripts/jcsubset.py DIR_OR_CLASS... [--allow-int] [--probed FILE]

Reads every .class file below the given directories and prints one line per construct that a
real card's converter (Java Card 3.0.x, no optional int support) would refuse:

    org/setls/applet/Foo.java:42 process(): [no-long] ...

then a summary line. Exit status: 0 clean, 1 violations, 2 usage error or unreadable class file.

Rules (the id in brackets is printed with every violation):
  [no-long]           long values: descriptors, locals, constants, opcodes, long arrays.
  [no-float]          float and double, the same way.
  [no-char]           char: descriptors, locals, char arrays, i2c.
  [no-int]            int types (unless --allow-int): descriptors, locals, int[] and int
                      constants outside the short range.
  [int-not-narrowed]  (unless --allow-int) the int result of arithmetic that can overflow a short
                      (iadd, isub, imul, idiv, ineg, ishl, iushr) reaches a comparison, an array
                      index or length, a switch, a store, a return or an argument before an i2s or
                      i2b; or is divided or shifted right while wide, where its high bits matter.
                      A card computes it in 16 bits, so the result would differ from Java's.
  [class-not-in-api]  a class outside javacard.*, javacardx.*, the few java.lang/io/rmi classes of
                      the Java Card API and the checked classes' own packages; string constants
                      and class literals (Java Card has no String and no Class).
  [opcode]            monitorenter/monitorexit, multianewarray, invokedynamic, jsr/ret, ldc of a
                      method handle or type.
  [modifier]          synchronized, native, strictfp methods; volatile, transient fields.
  [class-version]     class files newer than Java 8 (major version 52).
  [clinit]            a static initialiser doing more than storing constants and arrays of
                      byte/short/boolean constants.
  [api-version]       a javacard.*/javacardx.* class, method or field newer than the cards this
                      applet targets (see "Java Card API versions" below).
  [analysis]          the int-not-narrowed analysis could not follow a method (malformed or
                      unusual bytecode): not a card rule, but the method went unchecked.

The int-not-narrowed check is an abstract interpretation of each method: every int on the
operand stack and in the locals is 'narrow' (fits a short) or 'wide' (an arithmetic result that may
not), merged conservatively where branches meet. Judgment calls, stricter than some converters:
a wide value in a comparison or as an array index is refused (cast it). Narrow on purpose: the
results of iand, ior, ixor, irem and ishr on narrow values (they fit a short), x & 0..0x7FFF for
any x, and values of declared int type (their declaration is already a [no-int] violation).

Java Card API versions
----------------------
The applet compiles against jcardsim's javacard.*/javacardx.* classes, which carry Java Card 3.0.5
and some 3.1 members. The cards it targets are older: NXP JCOP 3 implements Java Card 3.0.4 and
JCOP 4 Java Card 3.0.5. Every API class, method and field that the bytecode names (CONSTANT_Class,
Fieldref, Methodref and InterfaceMethodref entries, and the classes in the descriptors of fields,
methods, locals and referenced members) is looked up in API_ADDITIONS, a table of what Java Card
3.0.5 and 3.1 added:
  - newer than 3.0.5 (3.1 and later): always refused, no card of either kind has it;
  - 3.0.5 (newer than JCOP 3's 3.0.4): refused unless the method that references it is listed as
    a probed use in scripts/jc-api-probed.txt (or the file given with --probed). One line per
    method, `package.Class#method` (`<init>` for a constructor) followed by the fallback in words:
        org.example.Foo#sign    fallback: the Signature allocated at install
    Listing a method states that it only reaches the member after an install-time probe found it,
    and takes the fallback otherwise. A 3.0.5 type in a field or in the class's own header has no
    method to list and is always refused. Entries that name a checked class but no method of it
    that needs the list are reported as stale (a warning). Note what a probe can and cannot do:
    referencing a 3.0.5 class or method makes the CAP file import the 3.0.5 version of its API
    package (javacard.security 1.6, say), and a 3.0.4 card refuses to load such a CAP at all. A
    listed use therefore means "this build targets JCOP 4 and copes with a 3.0.5 card that lacks
    the algorithm"; a CAP that must also load on JCOP 3 lists nothing.
Members the table does not list are taken to be in Java Card 3.0.4 or earlier: the table is kept to
the packages an applet like this one uses (javacard.framework, javacard.security, javacardx.crypto,
javacardx.apdu) and to the 3.0.5/3.1 additions elsewhere as whole packages.

What a bytecode check cannot see: static final primitive constants (Signature.ALG_ECDSA_SHA_384,
KeyAgreement.ALG_EC_SVDP_DH_PLAIN_XY, MessageDigest.ALG_SHA3_256, KeyBuilder.TYPE_DH_PUBLIC, ...)
are inlined by javac, so the class file holds the byte value, not a Fieldref. They are in the table
for the record, and would be caught if a compiler ever emitted a getstatic for one. The applet
handles them the Java Card way: they are only byte values passed to Signature/Cipher/KeyAgreement/
MessageDigest/RandomData.getInstance or KeyBuilder.buildKey, which throw CryptoException
(NO_SUCH_ALGORITHM) on a card without the algorithm, whatever its version. Calling getInstance at
install inside a try/catch and keeping a fallback (EcKeyGenerator does this for
ALG_EC_SVDP_DH_PLAIN_XY, 3.0.5, falling back to KeyPair.genKeyPair()) *is* the probe, and needs no
entry in the list: the constant leaves no import in the CAP file.

Sources of the table, all public: Oracle's release notes of the Java Card 3.0.5 specification (new
since 3.0.4: one-shot "static cryptography" objects, EC domain sharing, PIN extensions for banking,
sensitive arrays and results, APDUUtil for the CLA byte, Diffie-Hellman, AES-CMAC, PACE, AEAD
CCM/GCM, one-to-many biometry) and of the 3.1 specification (array views, events, NIO buffers, time,
certificates, key derivation, counters, X25519/Ed25519 keys); the "Since" tags of Oracle's API
documentation as carried by its 3.0.5 API sources (Signature.OneShot and the Signature/Cipher
algorithm getters 3.0.5, Signature.setInitialDigest 3.0.4) and the "Added in" column of the "New
API" page of the 3.2 API documentation for packages and interfaces; for constants and package
versions, JCAlgTest's table of what each Java Card version introduced (SupportTable.java:
ALG_EC_SVDP_DH_PLAIN_XY, ALG_SHA3_*, AEADCipher, RandomData.ALG_TRNG ... are 3.0.5; its issues
name signPreComputedHash and setInitialDigest as the methods 3.0.4 added).
Signature.verifyPreComputedHash is taken as 3.1, per the 3.1 API documentation: JCAlgTest and the
3.0.5 release notes do not list it, though jcardsim has carried the method since 2018. Java Card
3.2 additions are not listed yet: a member missing from the table passes, so one that a later
jcardsim gains needs a line in API_ADDITIONS.
"""
from __future__ import annotations

import argparse
import logging
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger("jcsubset")

MAX_CLASS_MAJOR = 52  # Java 8
SHORT_MIN, SHORT_MAX = -0x8000, 0x7FFF

ALLOWED_PREFIXES = ("javacard/", "javacardx/")
ALLOWED_JAVA_CLASSES = frozenset(
    [f"java/lang/{name}" for name in (
        "Object", "Throwable", "Exception", "RuntimeException", "ArithmeticException",
        "ArrayIndexOutOfBoundsException", "ArrayStoreException", "ClassCastException",
        "IndexOutOfBoundsException", "NegativeArraySizeException", "NullPointerException",
        "SecurityException")]
    + ["java/io/IOException", "java/rmi/Remote", "java/rmi/RemoteException"])

TYPE_NAMES = {"B": "byte", "S": "short", "Z": "boolean", "C": "char", "I": "int",
              "J": "long", "F": "float", "D": "double", "V": "void"}
TYPE_RULES = {"J": "no-long", "F": "no-float", "D": "no-float", "C": "no-char", "I": "no-int"}
NARROW_TYPES = frozenset("BSZC")  # int-typed on the JVM stack, short or byte on the card

ACC_STATIC = 0x0008
METHOD_FLAG_RULES = {0x0020: "synchronized", 0x0100: "native", 0x0800: "strictfp"}
FIELD_FLAG_RULES = {0x0040: "volatile", 0x0080: "transient"}


class ClassFormatError(Exception):
    """The file is not a class file this parser understands."""


# --------------------------------------------------------------------------------------------
# Class file parsing (JVMS chapter 4)

CP_UTF8, CP_INTEGER, CP_FLOAT, CP_LONG, CP_DOUBLE = 1, 3, 4, 5, 6
CP_CLASS, CP_STRING, CP_FIELDREF, CP_METHODREF, CP_IMETHODREF = 7, 8, 9, 10, 11
CP_NAME_AND_TYPE, CP_METHOD_HANDLE, CP_METHOD_TYPE = 12, 15, 16
CP_DYNAMIC, CP_INVOKE_DYNAMIC, CP_MODULE, CP_PACKAGE = 17, 18, 19, 20
CP_LAYOUTS = {  # tag -> struct format of the entry after its tag
    CP_INTEGER: ">i", CP_FLOAT: ">f", CP_LONG: ">q", CP_DOUBLE: ">d", CP_CLASS: ">H",
    CP_STRING: ">H", CP_FIELDREF: ">HH", CP_METHODREF: ">HH", CP_IMETHODREF: ">HH",
    CP_NAME_AND_TYPE: ">HH", CP_METHOD_HANDLE: ">BH", CP_METHOD_TYPE: ">H", CP_DYNAMIC: ">HH",
    CP_INVOKE_DYNAMIC: ">HH", CP_MODULE: ">H", CP_PACKAGE: ">H",
}


class CpEntry(NamedTuple):
    tag: int
    value: tuple[Any, ...]  # the unpacked fields, or (text,) for CONSTANT_Utf8


class MemberRef(NamedTuple):
    owner: str
    name: str
    descriptor: str


class LocalVar(NamedTuple):
    start: int
    length: int
    name: str
    descriptor: str
    slot: int


class Handler(NamedTuple):
    start: int
    end: int
    handler: int
    catch_type: int  # constant pool index, 0 for finally


@dataclass
class Code:
    max_locals: int
    code: bytes
    handlers: list[Handler]
    lines: list[tuple[int, int]] = field(default_factory=list)  # (start_pc, line), sorted
    local_vars: list[LocalVar] = field(default_factory=list)

    def line_at(self, pc: int) -> int | None:
        line = None
        for start, number in self.lines:
            if start > pc:
                break
            line = number
        return line


@dataclass
class Member:
    access: int
    name: str
    descriptor: str
    code: Code | None = None
    constant_value: int = 0      # fields: constant pool index of ConstantValue, 0 if none
    exceptions: list[int] = field(default_factory=list)  # methods: the throws clause


@dataclass
class ClassFile:
    path: Path
    major: int
    cp: list[CpEntry | None]
    access: int
    this_index: int
    super_index: int
    interfaces: list[int]
    fields: list[Member]
    methods: list[Member]
    source_file: str | None

    @property
    def name(self) -> str:
        return self.class_name(self.this_index)

    @property
    def package(self) -> str:
        return package_of(self.name)

    def utf8(self, index: int) -> str:
        return str(self.entry(index, CP_UTF8).value[0])

    def entry(self, index: int, *tags: int) -> CpEntry:
        item = self.cp[index] if 0 < index < len(self.cp) else None
        if item is None or (tags and item.tag not in tags):
            raise ClassFormatError(f"bad constant pool reference #{index}")
        return item

    def class_name(self, index: int) -> str:
        return self.utf8(self.entry(index, CP_CLASS).value[0])

    def member_ref(self, index: int) -> MemberRef:
        owner_index, nat_index = self.entry(index, CP_FIELDREF, CP_METHODREF, CP_IMETHODREF).value
        name_index, type_index = self.entry(nat_index, CP_NAME_AND_TYPE).value
        return MemberRef(self.class_name(owner_index), self.utf8(name_index), self.utf8(type_index))

    def source_path(self) -> str:
        """The source file as a path below the source root, or the class file's if unknown."""
        package = self.package
        prefix = f"{package}/" if package else ""
        if self.source_file:
            return prefix + self.source_file
        return self.name + ".class"


class ByteReader:
    """Reads big-endian fields from a class file, reporting truncation as ClassFormatError."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        try:
            values = struct.unpack_from(fmt, self.data, self.pos)
        except struct.error as exc:
            raise ClassFormatError(f"{self.path}: truncated at byte {self.pos}") from exc
        self.pos += struct.calcsize(fmt)
        return values

    def u1(self) -> int:
        return int(self.unpack(">B")[0])

    def u2(self) -> int:
        return int(self.unpack(">H")[0])

    def u4(self) -> int:
        return int(self.unpack(">I")[0])

    def take(self, length: int) -> bytes:
        if self.pos + length > len(self.data):
            raise ClassFormatError(f"{self.path}: truncated at byte {self.pos}")
        chunk = self.data[self.pos:self.pos + length]
        self.pos += length
        return chunk


def read_constant_pool(reader: ByteReader) -> list[CpEntry | None]:
    count = reader.u2()
    cp: list[CpEntry | None] = [None] * count
    index = 1
    while index < count:
        tag = reader.u1()
        if tag == CP_UTF8:
            text = reader.take(reader.u2()).decode("utf-8", errors="replace")
            cp[index] = CpEntry(tag, (text,))
        elif tag in CP_LAYOUTS:
            cp[index] = CpEntry(tag, reader.unpack(CP_LAYOUTS[tag]))
        else:
            raise ClassFormatError(f"{reader.path}: unknown constant pool tag {tag} at #{index}")
        index += 2 if tag in (CP_LONG, CP_DOUBLE) else 1
    return cp


def read_attributes(reader: ByteReader,
                    cp_utf8: Callable[[int], str]) -> Iterator[tuple[str, ByteReader]]:
    """Yields (name, reader over the attribute's body) for each attribute."""
    for _ in range(reader.u2()):
        name = cp_utf8(reader.u2())
        body = reader.take(reader.u4())
        yield name, ByteReader(body, reader.path)


def read_code(reader: ByteReader, cls: ClassFile) -> Code:
    reader.u2()  # max_stack
    max_locals = reader.u2()
    code = reader.take(reader.u4())
    handlers = [Handler(*reader.unpack(">HHHH")) for _ in range(reader.u2())]
    result = Code(max_locals, code, handlers)
    for name, body in read_attributes(reader, cls.utf8):
        if name == "LineNumberTable":
            result.lines.extend(body.unpack(">HH") for _ in range(body.u2()))
        elif name == "LocalVariableTable":
            for _ in range(body.u2()):
                start, length, name_i, desc_i, slot = body.unpack(">HHHHH")
                result.local_vars.append(
                    LocalVar(start, length, cls.utf8(name_i), cls.utf8(desc_i), slot))
    result.lines.sort()
    return result


def read_member(reader: ByteReader, cls: ClassFile) -> Member:
    access, name_index, desc_index = reader.unpack(">HHH")
    member = Member(access, cls.utf8(name_index), cls.utf8(desc_index))
    for name, body in read_attributes(reader, cls.utf8):
        if name == "Code":
            member.code = read_code(body, cls)
        elif name == "ConstantValue":
            member.constant_value = body.u2()
        elif name == "Exceptions":
            member.exceptions = [body.u2() for _ in range(body.u2())]
    return member


def parse_class(path: Path) -> ClassFile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ClassFormatError(f"{path}: {exc.strerror}") from exc
    reader = ByteReader(data, path)
    magic, _minor, major = reader.unpack(">IHH")
    if magic != 0xCAFEBABE:
        raise ClassFormatError(f"{path}: not a class file (bad magic)")
    cp = read_constant_pool(reader)
    access, this_index, super_index = reader.unpack(">HHH")
    interfaces = [reader.u2() for _ in range(reader.u2())]
    cls = ClassFile(path, major, cp, access, this_index, super_index, interfaces, [], [], None)
    cls.fields = [read_member(reader, cls) for _ in range(reader.u2())]
    cls.methods = [read_member(reader, cls) for _ in range(reader.u2())]
    for name, body in read_attributes(reader, cls.utf8):
        if name == "SourceFile":
            cls.source_file = cls.utf8(body.u2())
    return cls


# --------------------------------------------------------------------------------------------
# Descriptors

def split_types(descriptor: str) -> list[str]:
    """Splits a run of field types ('BLjava/lang/Object;[S') into its types."""
    types, pos = [], 0
    while pos < len(descriptor):
        start = pos
        while descriptor[pos] == "[":
            pos += 1
        if descriptor[pos] == "L":
            end = descriptor.find(";", pos)
            if end < 0:
                raise ClassFormatError(f"bad descriptor {descriptor!r}")
            pos = end
        elif descriptor[pos] not in TYPE_NAMES:
            raise ClassFormatError(f"bad descriptor {descriptor!r}")
        pos += 1
        types.append(descriptor[start:pos])
    return types


def method_types(descriptor: str) -> tuple[list[str], str]:
    """The parameter types and the return type of a method descriptor."""
    close = descriptor.find(")")
    if not descriptor.startswith("(") or close < 0:
        raise ClassFormatError(f"bad method descriptor {descriptor!r}")
    return split_types(descriptor[1:close]), descriptor[close + 1:]


def element_type(type_: str) -> str:
    return type_.lstrip("[")


def class_of(type_: str) -> str | None:
    base = element_type(type_)
    return base[1:-1] if base.startswith("L") else None


def type_name(type_: str) -> str:
    base = element_type(type_)
    dims = "[]" * (len(type_) - len(base))
    name = class_of(base) or ""
    return (dotted(name) if name else TYPE_NAMES[base]) + dims


def dotted(name: str) -> str:
    return name.replace("/", ".")


def package_of(name: str) -> str:
    return name.rpartition("/")[0]


# --------------------------------------------------------------------------------------------
# Java Card API versions (see the module's docstring)

JCOP3_VERSION = "3.0.4"
JCOP4_VERSION = "3.0.5"
DEFAULT_PROBED = Path(__file__).resolve().with_name("jc-api-probed.txt")
DEFAULT_PROBED_LABEL = "scripts/jc-api-probed.txt"  # how messages name it

# What Java Card added after 3.0.4, by version. One entry a line:
#   package.Class            a class or interface (nested classes with $, as in the class file)
#   package.*                every class of a package and of its subpackages
#   package.Class#name       a field, or every overload of a method
#   package.Class#name(BSZ)  one overload: its parameters as a JVM descriptor
# The longest matching package entry wins (javacardx.security.cert.* over javacardx.security.*).
API_ADDITIONS: dict[str, str] = {
    "3.0.5": """
        # one-shot ("static cryptography") objects
        javacard.security.Signature$OneShot
        javacard.security.MessageDigest$OneShot
        javacard.security.InitializedMessageDigest$OneShot
        javacard.security.RandomData$OneShot
        javacardx.crypto.Cipher$OneShot
        # algorithm getters of the (cipher, padding, digest) getInstance forms
        javacard.security.Signature#getMessageDigestAlgorithm
        javacard.security.Signature#getCipherAlgorithm
        javacard.security.Signature#getPaddingAlgorithm
        javacardx.crypto.Cipher#getCipherAlgorithm
        javacardx.crypto.Cipher#getPaddingAlgorithm
        # AEAD (AES-GCM, AES-CCM)
        javacardx.crypto.AEADCipher
        # random data: nextBytes replaces the deprecated generateData
        javacard.security.RandomData#nextBytes
        # key building by algorithm and memory type, and shared EC domains
        javacard.security.KeyBuilder#buildKey(BBSZ)
        javacard.security.KeyBuilder#buildKeyWithSharedDomain
        javacard.security.ECKey#copyDomainParametersFrom
        # Diffie-Hellman
        javacard.security.DHKey
        javacard.security.DHPrivateKey
        javacard.security.DHPublicKey
        # PIN extensions for banking
        javacard.framework.OwnerPINx
        javacard.framework.OwnerPINxWithPredecrement
        javacard.framework.OwnerPINBuilder
        # sensitive arrays and results
        javacard.framework.SensitiveArrays
        javacardx.security.*
        # global arrays
        javacard.framework.JCSystem#makeGlobalArray
        # new packages
        javacardx.apdu.util.*
        javacardx.biometry1toN.*
        # constants (inlined by javac: for the record, see the docstring)
        javacard.security.Signature#ALG_AES_CMAC_128
        javacard.security.Signature#SIG_CIPHER_AES_CMAC128
        javacard.security.KeyAgreement#ALG_EC_PACE_GM
        javacard.security.KeyAgreement#ALG_EC_SVDP_DH_PLAIN_XY
        javacard.security.KeyAgreement#ALG_DH_PLAIN
        javacard.security.KeyPair#ALG_DH
        javacard.security.MessageDigest#ALG_SHA3_224
        javacard.security.MessageDigest#ALG_SHA3_256
        javacard.security.MessageDigest#ALG_SHA3_384
        javacard.security.MessageDigest#ALG_SHA3_512
        javacard.security.MessageDigest#LENGTH_SHA3_224
        javacard.security.MessageDigest#LENGTH_SHA3_256
        javacard.security.MessageDigest#LENGTH_SHA3_384
        javacard.security.MessageDigest#LENGTH_SHA3_512
        javacard.security.RandomData#ALG_TRNG
        javacard.security.RandomData#ALG_PRESEEDED_DRBG
        javacard.security.RandomData#ALG_FAST
        javacard.security.RandomData#ALG_KEYGENERATION
        javacard.security.KeyBuilder#TYPE_DH_PUBLIC
        javacard.security.KeyBuilder#TYPE_DH_PUBLIC_TRANSIENT_DESELECT
        javacard.security.KeyBuilder#TYPE_DH_PUBLIC_TRANSIENT_RESET
        javacard.security.KeyBuilder#TYPE_DH_PRIVATE
        javacard.security.KeyBuilder#TYPE_DH_PRIVATE_TRANSIENT_DESELECT
        javacard.security.KeyBuilder#TYPE_DH_PRIVATE_TRANSIENT_RESET
        javacard.security.KeyBuilder#LENGTH_DH_1024
        javacard.security.KeyBuilder#LENGTH_DH_2048
        javacard.security.KeyBuilder#ALG_TYPE_DES
        javacard.security.KeyBuilder#ALG_TYPE_AES
        javacard.security.KeyBuilder#ALG_TYPE_DSA_PUBLIC
        javacard.security.KeyBuilder#ALG_TYPE_DSA_PRIVATE
        javacard.security.KeyBuilder#ALG_TYPE_EC_F2M_PUBLIC
        javacard.security.KeyBuilder#ALG_TYPE_EC_F2M_PRIVATE
        javacard.security.KeyBuilder#ALG_TYPE_EC_FP_PUBLIC
        javacard.security.KeyBuilder#ALG_TYPE_EC_FP_PRIVATE
        javacard.security.KeyBuilder#ALG_TYPE_HMAC
        javacard.security.KeyBuilder#ALG_TYPE_KOREAN_SEED
        javacard.security.KeyBuilder#ALG_TYPE_RSA_PUBLIC
        javacard.security.KeyBuilder#ALG_TYPE_RSA_PRIVATE
        javacard.security.KeyBuilder#ALG_TYPE_RSA_CRT_PRIVATE
        javacard.security.KeyBuilder#ALG_TYPE_DH_PUBLIC
        javacard.security.KeyBuilder#ALG_TYPE_DH_PRIVATE
        javacard.security.KeyBuilder#ALG_TYPE_EC_F2M_PARAMETERS
        javacard.security.KeyBuilder#ALG_TYPE_EC_FP_PARAMETERS
        javacard.security.KeyBuilder#ALG_TYPE_DSA_PARAMETERS
        javacard.security.KeyBuilder#ALG_TYPE_DH_PARAMETERS
        javacard.framework.JCSystem#ARRAY_TYPE_BOOLEAN
        javacard.framework.JCSystem#ARRAY_TYPE_BYTE
        javacard.framework.JCSystem#ARRAY_TYPE_SHORT
        javacard.framework.JCSystem#ARRAY_TYPE_INT
        javacard.framework.JCSystem#ARRAY_TYPE_OBJECT
        javacardx.crypto.AEADCipher#ALG_AES_GCM
        javacardx.crypto.AEADCipher#ALG_AES_CCM
        javacardx.crypto.AEADCipher#CIPHER_AES_GCM
        javacardx.crypto.AEADCipher#CIPHER_AES_CCM
    """,
    "3.1": """
        # verifying a signature over a hash computed elsewhere (signPreComputedHash is 3.0.4)
        javacard.security.Signature#verifyPreComputedHash
        # array views
        javacard.framework.JCSystem#makeArrayView
        javacard.framework.JCSystem#isArrayView
        # named curves: X25519 and Ed25519 keys
        javacard.security.NamedParameterSpec
        javacard.security.XECKey
        javacard.security.XECPrivateKey
        javacard.security.XECPublicKey
        javacard.security.KeyBuilder#buildXECKey
        # new packages: events, NIO buffers, time, certificates, key derivation, counters
        javacardx.framework.event.*
        javacardx.framework.nio.*
        javacardx.framework.time.*
        javacardx.security.cert.*
        javacardx.security.derivation.*
        javacardx.security.util.*
        # constants (inlined by javac: for the record)
        javacard.framework.ISO7816#SW_AUTHENTICATION_METHOD_BLOCKED
    """,
}

# The API supertypes that the table's members are inherited through: javac names the static
# type of the receiver as the owner (ECPrivateKey.copyDomainParametersFrom,
# Signature.OneShot.verifyPreComputedHash).
API_SUPERTYPES: dict[str, tuple[str, ...]] = {
    "javacard/security/Signature$OneShot": ("javacard/security/Signature",),
    "javacard/security/MessageDigest$OneShot": ("javacard/security/MessageDigest",),
    "javacard/security/InitializedMessageDigest": ("javacard/security/MessageDigest",),
    "javacard/security/InitializedMessageDigest$OneShot":
        ("javacard/security/InitializedMessageDigest",),
    "javacard/security/RandomData$OneShot": ("javacard/security/RandomData",),
    "javacardx/crypto/Cipher$OneShot": ("javacardx/crypto/Cipher",),
    "javacardx/crypto/AEADCipher": ("javacardx/crypto/Cipher",),
    "javacard/security/ECPrivateKey": ("javacard/security/ECKey",),
    "javacard/security/ECPublicKey": ("javacard/security/ECKey",),
}


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def api_name(name: str) -> str:
    """javacard/security/Signature$OneShot -> javacard.security.Signature.OneShot"""
    return dotted(name).replace("$", ".")


@dataclass(frozen=True)
class ApiMember:
    params: str | None   # a method's parameter descriptor, or None for any overload or a field
    version: str


@dataclass
class ApiTable:
    """API_ADDITIONS, parsed: what was added after Java Card 3.0.4, and in which version."""
    classes: dict[str, str] = field(default_factory=dict)          # internal name -> version
    packages: dict[str, str] = field(default_factory=dict)         # "javacardx/apdu/" -> version
    members: dict[tuple[str, str], list[ApiMember]] = field(default_factory=dict)

    @classmethod
    def parse(cls, additions: dict[str, str]) -> ApiTable:
        table = cls()
        for version, text in additions.items():
            version_key(version)  # a malformed version fails here, at import
            for raw in text.splitlines():
                entry = raw.strip()
                if entry and not entry.startswith("#"):  # comments are whole lines
                    table.add(entry, version)
        return table

    def add(self, entry: str, version: str) -> None:
        owner, _, member = entry.partition("#")
        internal = owner.replace(".", "/")
        if not internal.startswith(ALLOWED_PREFIXES) or " " in entry:
            raise ValueError(f"API_ADDITIONS: {entry!r} is not a javacard.*/javacardx.* name")
        if member:
            name, paren, params = member.partition("(")
            self.members.setdefault((internal, name), []).append(
                ApiMember("(" + params if paren else None, version))
        elif internal.endswith("/*"):
            self.packages[internal[:-1]] = version
        else:
            self.classes[internal] = version

    def class_version(self, name: str) -> str | None:
        if name in self.classes:
            return self.classes[name]
        prefixes = [prefix for prefix in self.packages if name.startswith(prefix)]
        return self.packages[max(prefixes, key=len)] if prefixes else None

    def member_version(self, ref: MemberRef) -> tuple[str, str] | None:
        """(declaring class, version) of a referenced member the table lists, else None."""
        is_method = ref.descriptor.startswith("(")
        params = ref.descriptor[:ref.descriptor.find(")") + 1] if is_method else None
        todo, seen = [ref.owner], set()
        while todo:
            owner = todo.pop(0)
            seen.add(owner)
            for entry in self.members.get((owner, ref.name), []):
                if entry.params is None or entry.params == params:
                    return owner, entry.version
            todo.extend(s for s in API_SUPERTYPES.get(owner, ()) if s not in seen)
        return None


API = ApiTable.parse(API_ADDITIONS)


class UsageError(Exception):
    """A command-line argument or the probed-uses list is wrong."""


@dataclass(frozen=True)
class ProbedUses:
    """The methods listed in jc-api-probed.txt: they may reference 3.0.5 members."""
    label: str                                   # how messages name the file
    methods: frozenset[tuple[str, str]] = frozenset()   # (internal class name, method name)

    @classmethod
    def load(cls, path: Path | None) -> ProbedUses:
        """The list in path, or the default list (empty when absent) if path is None."""
        if path is None:
            if not DEFAULT_PROBED.is_file():
                return cls(DEFAULT_PROBED_LABEL)
            path, label = DEFAULT_PROBED, DEFAULT_PROBED_LABEL
        else:
            label = str(path)
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from exc
        methods = set()
        for number, raw in enumerate(lines, 1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            name, *fallback = text.split(None, 1)
            owner, hash_, method = name.partition("#")
            if not hash_ or not owner or not method or not fallback:
                raise UsageError(f"{path}:{number}: expected 'package.Class#method  fallback: "
                                 f"what the method does without the member', got {text!r}")
            methods.add((owner.replace(".", "/"), method))
        return cls(label, frozenset(methods))


# --------------------------------------------------------------------------------------------
# Bytecode

OPCODE_NAMES = """
nop aconst_null iconst_m1 iconst_0 iconst_1 iconst_2 iconst_3 iconst_4 iconst_5 lconst_0 lconst_1
fconst_0 fconst_1 fconst_2 dconst_0 dconst_1 bipush sipush ldc ldc_w ldc2_w iload lload fload dload
aload iload_0 iload_1 iload_2 iload_3 lload_0 lload_1 lload_2 lload_3 fload_0 fload_1 fload_2
fload_3 dload_0 dload_1 dload_2 dload_3 aload_0 aload_1 aload_2 aload_3 iaload laload faload daload
aaload baload caload saload istore lstore fstore dstore astore istore_0 istore_1 istore_2 istore_3
lstore_0 lstore_1 lstore_2 lstore_3 fstore_0 fstore_1 fstore_2 fstore_3 dstore_0 dstore_1 dstore_2
dstore_3 astore_0 astore_1 astore_2 astore_3 iastore lastore fastore dastore aastore bastore castore
sastore pop pop2 dup dup_x1 dup_x2 dup2 dup2_x1 dup2_x2 swap iadd ladd fadd dadd isub lsub fsub dsub
imul lmul fmul dmul idiv ldiv fdiv ddiv irem lrem frem drem ineg lneg fneg dneg ishl lshl ishr lshr
iushr lushr iand land ior lor ixor lxor iinc i2l i2f i2d l2i l2f l2d f2i f2l f2d d2i d2l d2f i2b i2c
i2s lcmp fcmpl fcmpg dcmpl dcmpg ifeq ifne iflt ifge ifgt ifle if_icmpeq if_icmpne if_icmplt
if_icmpge if_icmpgt if_icmple if_acmpeq if_acmpne goto jsr ret tableswitch lookupswitch ireturn
lreturn freturn dreturn areturn return getstatic putstatic getfield putfield invokevirtual
invokespecial invokestatic invokeinterface invokedynamic new newarray anewarray arraylength athrow
checkcast instanceof monitorenter monitorexit wide multianewarray ifnull ifnonnull goto_w jsr_w
""".split()
assert len(OPCODE_NAMES) == 202
OP = {name: code for code, name in enumerate(OPCODE_NAMES)}


def ops(names: str) -> frozenset[int]:
    return frozenset(OP[name] for name in names.split())


def op_range(first: str, count: int) -> frozenset[int]:
    return frozenset(range(OP[first], OP[first] + count))


# struct formats of the operands after the opcode; absent means none
OPERANDS: dict[int, str] = {OP["bipush"]: "b", OP["sipush"]: "h", OP["ldc"]: "B", OP["ldc_w"]: "H",
                            OP["ldc2_w"]: "H", OP["iinc"]: "Bb", OP["ret"]: "B",
                            OP["invokeinterface"]: "HBB", OP["invokedynamic"]: "HBB",
                            OP["newarray"]: "B", OP["multianewarray"]: "HB",
                            OP["goto_w"]: "i", OP["jsr_w"]: "i"}
OPERANDS.update({op: "B" for op in op_range("iload", 5) | op_range("istore", 5)})
OPERANDS.update({op: "h" for op in op_range("ifeq", 16) | ops("ifnull ifnonnull")})
OPERANDS.update({op: "H" for op in op_range("getstatic", 7)})  # getstatic .. invokestatic
OPERANDS.update({op: "H" for op in ops("new anewarray checkcast instanceof")})
BRANCHES = op_range("ifeq", 16) | ops("ifnull ifnonnull goto_w jsr_w")
SWITCHES = ops("tableswitch lookupswitch")
NO_FALLTHROUGH = ops("goto goto_w ret athrow tableswitch lookupswitch") | op_range("ireturn", 6)

LONG_OPCODES = (ops("lconst_0 lconst_1 lload laload lstore lastore ladd lsub lmul ldiv lrem lneg "
                    "lshl lshr lushr land lor lxor i2l l2i l2f l2d f2l d2l lcmp lreturn")
                | op_range("lload_0", 4) | op_range("lstore_0", 4))
FLOAT_OPCODES = (ops("fconst_0 fconst_1 fconst_2 dconst_0 dconst_1 fload dload faload daload "
                     "fstore dstore fastore dastore fadd dadd fsub dsub fmul dmul fdiv ddiv frem "
                     "drem fneg dneg i2f i2d f2i f2d d2i d2f fcmpl fcmpg dcmpl dcmpg freturn "
                     "dreturn")
                 | op_range("fload_0", 8) | op_range("fstore_0", 8))
CHAR_OPCODES = ops("caload castore i2c")
TYPE_OPCODE_RULES = {**{op: "no-char" for op in CHAR_OPCODES},
                     **{op: "no-float" for op in FLOAT_OPCODES},
                     **{op: "no-long" for op in LONG_OPCODES}}  # l2f and the like: no-long
TYPE_OPCODE_SUBJECTS = {"no-long": "long", "no-float": "float or double", "no-char": "char"}
FORBIDDEN_OPCODES = {OP["monitorenter"]: "synchronized block",
                     OP["monitorexit"]: "synchronized block",
                     OP["multianewarray"]: "multi-dimensional array",
                     OP["invokedynamic"]: "lambda or dynamic call site",
                     OP["jsr"]: "subroutine", OP["jsr_w"]: "subroutine", OP["ret"]: "subroutine"}
CLASS_REF_OPCODES = ops("new anewarray checkcast instanceof multianewarray")
MEMBER_REF_OPCODES = op_range("getstatic", 8) | ops("invokedynamic")
LDC_OPCODES = ops("ldc ldc_w ldc2_w")
FIELD_PUTS = ops("putfield putstatic")
CLINIT_OPCODES = (ops("nop aconst_null bipush sipush ldc ldc_w newarray dup bastore sastore "
                      "iastore putstatic return")
                  | op_range("iconst_m1", 7))
NEWARRAY_TYPES = {4: "Z", 5: "C", 6: "F", 7: "D", 8: "B", 9: "S", 10: "I", 11: "J"}


class Insn(NamedTuple):
    pc: int
    op: int
    args: tuple[int, ...]
    length: int
    targets: tuple[int, ...] = ()  # branch and switch targets

    @property
    def name(self) -> str:
        return OPCODE_NAMES[self.op] if self.op < len(OPCODE_NAMES) else f"opcode {self.op}"


def decode_switch(code: bytes, pc: int) -> Insn:
    base = pc + 1 + (-(pc + 1) % 4)
    if code[pc] == OP["tableswitch"]:
        default, low, high = struct.unpack_from(">iii", code, base)
        offsets = struct.unpack_from(f">{high - low + 1}i", code, base + 12)
        end = base + 12 + 4 * len(offsets)
    else:
        default, pairs = struct.unpack_from(">ii", code, base)
        offsets = struct.unpack_from(f">{2 * pairs}i", code, base + 8)[1::2]
        end = base + 8 + 8 * pairs
    return Insn(pc, code[pc], (), end - pc, tuple(pc + off for off in (default, *offsets)))


def decode_one(code: bytes, pc: int) -> Insn:
    op = code[pc]
    if op in SWITCHES:
        return decode_switch(code, pc)
    if op == OP["wide"]:
        inner = code[pc + 1]
        fmt = ">Hh" if inner == OP["iinc"] else ">H"
        return Insn(pc, inner, struct.unpack_from(fmt, code, pc + 2), 2 + struct.calcsize(fmt))
    if op >= len(OPCODE_NAMES):
        raise ClassFormatError(f"unknown opcode {op} at pc {pc}")
    fmt = ">" + OPERANDS.get(op, "")
    args = struct.unpack_from(fmt, code, pc + 1)
    targets = (pc + args[0],) if op in BRANCHES else ()
    return Insn(pc, op, args, 1 + struct.calcsize(fmt), targets)


def decode(code: bytes) -> list[Insn]:
    insns, pc = [], 0
    try:
        while pc < len(code):
            insn = decode_one(code, pc)
            insns.append(insn)
            pc += insn.length
    except (struct.error, IndexError) as exc:
        raise ClassFormatError(f"truncated instruction at pc {pc}") from exc
    return insns


# --------------------------------------------------------------------------------------------
# Violations

@dataclass(frozen=True, order=True)
class Violation:
    file: str
    line: int
    offset: int
    member: str
    rule: str
    message: str

    def render(self) -> str:
        where = self.file
        if self.line >= 0:
            where += f":{self.line}"
        elif self.offset >= 0:
            where += f":pc{self.offset}"
        return f"{where} {self.member}: [{self.rule}] {self.message}"


@dataclass
class Context:
    """Where violations are being reported: one class, and the method or field being checked."""
    cls: ClassFile
    member: str = "class"
    code: Code | None = None
    line: int | None = None   # for checks outside code: the member's line, if known
    method: str | None = None  # the method's name, when checking a method

    def at(self, pc: int | None = None) -> tuple[int, int]:
        if pc is not None and self.code is not None:
            line = self.code.line_at(pc)
            return (line, -1) if line is not None else (-1, pc)
        return (self.line if self.line is not None else -1, -1)


class Checker:
    """Checks class files and collects the violations."""

    def __init__(self, classes: Sequence[ClassFile], allow_int: bool,
                 probed: ProbedUses | None = None) -> None:
        self.classes = classes
        self.allow_int = allow_int
        self.probed = probed if probed is not None else ProbedUses(DEFAULT_PROBED_LABEL)
        self.own_classes = {cls.name for cls in classes}
        self.own_packages = {cls.package for cls in classes}
        self.violations: set[Violation] = set()
        self.probed_used: set[tuple[str, str]] = set()

    def run(self) -> list[Violation]:
        for cls in self.classes:
            try:
                ClassCheck(self, cls).run()
            except ClassFormatError as exc:
                raise ClassFormatError(f"{cls.path}: {exc}") from exc
        for owner, method in sorted(self.probed.methods - self.probed_used):
            if owner in self.own_classes:
                log.warning("%s lists %s#%s, which references no Java Card 3.0.5 member: "
                            "remove the line", self.probed.label, dotted(owner), method)
        return sorted(self.violations)

    def report(self, ctx: Context, rule: str, message: str, pc: int | None = None) -> None:
        if rule in ("no-int", "int-not-narrowed") and self.allow_int:
            return
        line, offset = ctx.at(pc)
        self.violations.add(
            Violation(ctx.cls.source_path(), line, offset, ctx.member, rule, message))

    def class_allowed(self, name: str) -> bool:
        return (name.startswith(ALLOWED_PREFIXES) or name in ALLOWED_JAVA_CLASSES
                or package_of(name) in self.own_packages)


class ClassCheck:
    """The checks of one class file."""

    def __init__(self, checker: Checker, cls: ClassFile) -> None:
        self.checker = checker
        self.cls = cls
        self.seen_cp: set[int] = {cls.this_index}  # entries already checked where they are used
        self.reported = 0

    def report(self, ctx: Context, rule: str, message: str, pc: int | None = None) -> None:
        self.reported += 1
        self.checker.report(ctx, rule, message, pc)

    def run(self) -> None:
        ctx = Context(self.cls)
        if self.cls.major > MAX_CLASS_MAJOR:
            self.report(ctx, "class-version",
                        f"class file version {self.cls.major} is newer than Java 8 "
                        f"({MAX_CLASS_MAJOR}); compile with -source 7 -target 7")
        for index in [self.cls.super_index, *self.cls.interfaces]:
            if index:
                self.check_class_ref(ctx, index, "extended or implemented")
        field_lines = self.field_lines()
        for member in self.cls.fields:
            self.check_field(member, field_lines.get(member.name))
        for member in self.cls.methods:
            self.check_method(member)
        self.check_constant_pool(ctx)

    # --- types and classes

    def check_type(self, ctx: Context, type_: str, what: str, pc: int | None = None) -> None:
        base = element_type(type_)
        rule = TYPE_RULES.get(base)
        if rule:
            self.report(ctx, rule, f"{what} has type {type_name(type_)}", pc)
        name = class_of(base)
        if name and not self.checker.class_allowed(name):
            self.report(ctx, "class-not-in-api", f"{what} has type {type_name(type_)}, "
                        "not a Java Card API class", pc)
        elif name:
            self.check_api_version(ctx, api_name(name), API.class_version(name), pc)

    def check_descriptor(self, ctx: Context, descriptor: str, what: str,
                         pc: int | None = None) -> None:
        if descriptor.startswith("("):
            params, ret = method_types(descriptor)
            for number, type_ in enumerate(params, 1):
                self.check_type(ctx, type_, f"parameter {number} of {what}", pc)
            self.check_type(ctx, ret, f"the result of {what}", pc)
        else:
            self.check_type(ctx, descriptor, what, pc)

    def check_class_name(self, ctx: Context, name: str, what: str, pc: int | None = None) -> None:
        if name.startswith("["):
            self.check_type(ctx, name, f"array {what}", pc)
        elif not self.checker.class_allowed(name):
            self.report(ctx, "class-not-in-api",
                        f"{dotted(name)} ({what}) is not a Java Card API class", pc)
        else:
            self.check_api_version(ctx, api_name(name), API.class_version(name), pc)

    def check_class_ref(self, ctx: Context, index: int, what: str, pc: int | None = None) -> None:
        self.seen_cp.add(index)
        self.check_class_name(ctx, self.cls.class_name(index), what, pc)

    def check_api_version(self, ctx: Context, label: str, version: str | None,
                          pc: int | None = None) -> None:
        """Refuses an API class or member newer than JCOP 4, or newer than JCOP 3 unless the
        method that uses it is listed as a probed use."""
        if version is None or version_key(version) <= version_key(JCOP3_VERSION):
            return
        if version_key(version) > version_key(JCOP4_VERSION):
            self.report(ctx, "api-version", f"{label} is Java Card {version}; "
                        f"JCOP 3 is {JCOP3_VERSION}, JCOP 4 is {JCOP4_VERSION}", pc)
            return
        use = (self.cls.name, ctx.method or "")
        if ctx.method is not None and use in self.checker.probed.methods:
            self.checker.probed_used.add(use)
            return
        where = (f"list {dotted(self.cls.name)}#{ctx.method} in {self.checker.probed.label} "
                 "once it probes for it at install and falls back"
                 if ctx.method is not None else "only a method can probe for it")
        self.report(ctx, "api-version", f"{label} is Java Card {version}; JCOP 3 is "
                    f"{JCOP3_VERSION}: {where}", pc)

    # --- fields and methods

    def field_lines(self) -> dict[str, int]:
        """The line where each field of this class is first written, to locate field violations."""
        lines: dict[str, int] = {}
        for method in self.cls.methods:
            if method.code is None:
                continue
            for insn in decode(method.code.code):
                if insn.op not in FIELD_PUTS:
                    continue
                ref = self.cls.member_ref(insn.args[0])
                line = method.code.line_at(insn.pc)
                if ref.owner == self.cls.name and line is not None:
                    lines[ref.name] = min(line, lines.get(ref.name, line))
        return lines

    def check_field(self, member: Member, line: int | None) -> None:
        ctx = Context(self.cls, f"field {member.name}", line=line)
        self.check_flags(ctx, member.access, FIELD_FLAG_RULES)
        self.check_descriptor(ctx, member.descriptor, f"field {member.name}")
        if member.constant_value:
            self.seen_cp.add(member.constant_value)

    def check_method(self, member: Member) -> None:
        code = member.code
        first_line = code.lines[0][1] if code and code.lines else None
        ctx = Context(self.cls, f"{member.name}()", code=code, line=first_line,
                      method=member.name)
        self.check_flags(ctx, member.access, METHOD_FLAG_RULES)
        self.check_descriptor(ctx, member.descriptor, f"{member.name}()")
        for index in member.exceptions:
            self.check_class_ref(ctx, index, "thrown")
        if code is not None:
            CodeCheck(self, member, ctx, code).run()

    def check_flags(self, ctx: Context, access: int, rules: dict[int, str]) -> None:
        for flag, keyword in rules.items():
            if access & flag:
                self.report(ctx, "modifier", f"'{keyword}' is not supported by Java Card")

    # --- constant pool entries no instruction uses

    def check_constant_pool(self, ctx: Context) -> None:
        for index, item in enumerate(self.cls.cp):
            if item is None or index in self.seen_cp:
                continue
            if item.tag == CP_CLASS:
                self.check_class_ref(ctx, index, "referenced by the class")
            elif item.tag in (CP_LONG, CP_FLOAT, CP_DOUBLE):
                self.check_constant(ctx, index, None)

    def check_constant(self, ctx: Context, index: int, pc: int | None) -> None:
        """Checks a loadable constant pool entry (ldc or an unused entry)."""
        self.seen_cp.add(index)
        item = self.cls.entry(index)
        value = item.value[0]
        if item.tag == CP_INTEGER and not SHORT_MIN <= value <= SHORT_MAX:
            self.report(ctx, "no-int", f"int constant {value} is outside the short range", pc)
        elif item.tag == CP_LONG:
            self.report(ctx, "no-long", f"long constant {value}", pc)
        elif item.tag in (CP_FLOAT, CP_DOUBLE):
            kind = "float" if item.tag == CP_FLOAT else "double"
            self.report(ctx, "no-float", f"{kind} constant {value}", pc)
        elif item.tag == CP_STRING:
            text = self.cls.utf8(value)
            self.report(ctx, "class-not-in-api",
                        f"string constant {text!r}: Java Card has no String", pc)
        elif item.tag == CP_CLASS:
            name = dotted(self.cls.class_name(index))
            self.report(ctx, "class-not-in-api",
                        f"class literal {name}.class: Java Card has no java.lang.Class", pc)
        elif item.tag in (CP_METHOD_HANDLE, CP_METHOD_TYPE, CP_DYNAMIC):
            self.report(ctx, "opcode",
                        "ldc of a method handle, method type or dynamic constant", pc)


class CodeCheck:
    """The checks of one method's bytecode."""

    def __init__(self, parent: ClassCheck, member: Member, ctx: Context, code: Code) -> None:
        self.parent = parent
        self.cls = parent.cls
        self.member = member
        self.ctx = ctx
        self.code = code
        self.insns = decode(code.code)
        # Opcodes of unsupported types, grouped by line (or pc) and rule: one report each.
        self.type_ops: dict[tuple[int, str], list[Insn]] = {}

    def report(self, rule: str, message: str, pc: int | None = None) -> None:
        self.parent.report(self.ctx, rule, message, pc)

    def run(self) -> None:
        for var in self.code.local_vars:
            self.parent.check_type(self.ctx, var.descriptor, f"local '{var.name}'", var.start)
        for handler in self.code.handlers:
            if handler.catch_type:
                self.parent.check_class_ref(self.ctx, handler.catch_type, "caught", handler.handler)
        is_clinit = self.member.name == "<clinit>"
        for insn in self.insns:
            before = self.parent.reported
            flagged = self.check_insn(insn) or self.parent.reported > before
            if is_clinit and insn.op not in CLINIT_OPCODES and not flagged:
                self.report("clinit", f"{insn.name} in a static initialiser: only constants and "
                            "arrays of byte/short/boolean constants may be stored", insn.pc)
        self.report_type_ops()
        if not self.parent.checker.allow_int:
            Narrowing(self).run()

    def check_insn(self, insn: Insn) -> bool:
        """Checks one instruction; True when it uses an unsupported type (reported later)."""
        op, pc = insn.op, insn.pc
        rule = TYPE_OPCODE_RULES.get(op)
        if rule:
            line = self.code.line_at(pc)
            self.type_ops.setdefault((pc if line is None else line, rule), []).append(insn)
        elif op in FORBIDDEN_OPCODES:
            self.report("opcode", f"{insn.name} ({FORBIDDEN_OPCODES[op]}) is not supported", pc)
        if op == OP["newarray"]:
            self.parent.check_type(self.ctx, "[" + NEWARRAY_TYPES[insn.args[0]], "new array", pc)
        elif op in LDC_OPCODES:
            self.parent.check_constant(self.ctx, insn.args[0], pc)
        elif op in CLASS_REF_OPCODES:
            self.parent.check_class_ref(self.ctx, insn.args[0], insn.name, pc)
        elif op in MEMBER_REF_OPCODES:
            self.check_member_ref(insn)
        return rule is not None

    def report_type_ops(self) -> None:
        for (_, rule), insns in self.type_ops.items():
            names = ", ".join(dict.fromkeys(insn.name for insn in insns))
            verb = "operates" if len(insns) == 1 else "operate"
            self.report(rule, f"{names} {verb} on {TYPE_OPCODE_SUBJECTS[rule]}", insns[0].pc)

    def check_member_ref(self, insn: Insn) -> None:
        index = insn.args[0]
        if insn.op == OP["invokedynamic"]:
            return  # its bootstrap method's classes are checked with the constant pool
        owner_index = self.cls.entry(index).value[0]
        ref = self.cls.member_ref(index)
        self.parent.check_class_ref(self.ctx, owner_index, f"owner of {ref.name}", insn.pc)
        if ref.owner not in self.parent.checker.own_classes:
            parens = "()" if ref.descriptor.startswith("(") else ""
            label = f"{dotted(ref.owner)}.{ref.name}{parens}"
            self.parent.check_descriptor(self.ctx, ref.descriptor, label, insn.pc)
            added = API.member_version(ref)
            if added is not None:
                declaring, version = added
                self.parent.check_api_version(
                    self.ctx, f"{api_name(declaring)}.{ref.name}{parens}", version, insn.pc)


# --------------------------------------------------------------------------------------------
# The int-not-narrowed analysis

class Val(NamedTuple):
    """An abstract stack or local value."""
    kind: str          # N narrow int, W wide int, R reference, T unknown,
                       # O other (long, float, double, return address)
    origin: int = -1   # W: pc of the instruction that made it
    const: int | None = None  # N: its value, when a constant


NARROW = Val("N")
REF = Val("R")
OTHER = Val("O")
TOP = Val("T")

WIDENING_OPS = ops("iadd isub imul idiv ineg ishl iushr")   # results may not fit a short
HIGH_BITS_OPS = ops("idiv irem ishr iushr")   # results depend on the operands' high bits
INT_BINOPS = ops("iadd isub imul idiv irem ishl ishr iushr iand ior ixor")
COMPARES = op_range("if_icmpeq", 6)
IFS = op_range("ifeq", 6)
INT_LOADS = ops("iload") | op_range("iload_0", 4)
INT_STORES = ops("istore") | op_range("istore_0", 4)
PUSH_OPS = ops("bipush sipush")
CONST2_OPS = ops("lconst_0 lconst_1 dconst_0 dconst_1")
FCONST_OPS = ops("fconst_0 fconst_1 fconst_2")
WIDE_ARRAY_LOADS = ops("laload daload")
WIDE_ARRAY_STORES = ops("lastore dastore")
NARROW_ARRAY_STORES = ops("bastore castore sastore")
NEW_ARRAYS = ops("newarray anewarray")
NARROWING_OPS = ops("i2b i2s i2c")
DIVISIONS = ops("idiv irem")
SHIFT_OR_DIVIDE_OPS = HIGH_BITS_OPS | ops("ishl")
REF_COMPARES = ops("if_acmpeq if_acmpne")
NULL_TESTS = ops("ifnull ifnonnull")
SUBROUTINE_CALLS = ops("jsr jsr_w")
PLAIN_JUMPS = ops("goto goto_w ret athrow") | op_range("lreturn", 5)
FIELD_OPS = ops("getstatic getfield putstatic putfield")
FIELD_GETS = ops("getstatic getfield")
INVOKES = op_range("invokevirtual", 5)
STATIC_INVOKES = ops("invokestatic invokedynamic")
MONITOR_OPS = ops("monitorenter monitorexit")


def merge_val(a: Val, b: Val) -> Val:
    if a == b:
        return a
    if a.kind in "NW" and b.kind in "NW":
        if a.kind == "N" and b.kind == "N":
            return NARROW
        origins = [v.origin for v in (a, b) if v.kind == "W"]
        return Val("W", min(origins))
    return a if a.kind == b.kind == "R" else TOP


class Frame(NamedTuple):
    locals: tuple[Val, ...]
    stack: tuple[Val, ...]

    def merge(self, other: Frame) -> Frame:
        if len(self.stack) != len(other.stack):
            raise ClassFormatError("stack heights differ where branches meet")
        return Frame(tuple(map(merge_val, self.locals, other.locals)),
                     tuple(map(merge_val, self.stack, other.stack)))


def type_values(type_: str) -> list[Val]:
    """The stack slots a value of this type takes. Declared ints count as narrow: the
    declaration itself is the [no-int] violation."""
    if type_ in ("J", "D"):
        return [OTHER, OTHER]
    if type_ == "V":
        return []
    if type_ == "F":
        return [OTHER]
    return [NARROW] if type_ in TYPE_NAMES else [REF]


def slot_count(type_: str) -> int:
    return len(type_values(type_))


class Narrowing:
    """Follows narrow and wide ints through one method (see the module's docstring)."""

    def __init__(self, check: CodeCheck) -> None:
        self.check = check
        self.cls = check.cls
        self.code = check.code
        self.by_pc = {insn.pc: insn for insn in check.insns}
        self.params, self.ret = method_types(check.member.descriptor)
        self.int_slots = {var.slot for var in self.code.local_vars if var.descriptor == "I"}
        self.frames: dict[int, Frame] = {}
        self.stack: list[Val] = []
        self.locals: list[Val] = []

    def run(self) -> None:
        try:
            self.interpret()
        except (ClassFormatError, IndexError) as exc:
            self.check.report("analysis", f"int values could not be followed here ({exc}); "
                              "check this method by hand")

    def initial_frame(self) -> Frame:
        values = [] if self.check.member.access & ACC_STATIC else [REF]
        for type_ in self.params:
            values += type_values(type_)
        values += [TOP] * (self.code.max_locals - len(values))
        return Frame(tuple(values), ())

    def interpret(self) -> None:
        work = [0]
        self.frames[0] = self.initial_frame()
        while work:
            pc = work.pop()
            insn = self.by_pc[pc]
            frame = self.frames[pc]
            for target, out in self.successors(insn, frame):
                if self.flow(target, out):
                    work.append(target)

    def flow(self, pc: int, frame: Frame) -> bool:
        """Merges a frame into pc's; True when pc's frame changed."""
        if pc not in self.by_pc:
            raise ClassFormatError(f"branch to pc {pc}, not an instruction")
        old = self.frames.get(pc)
        new = frame if old is None else old.merge(frame)
        self.frames[pc] = new
        return new != old

    def successors(self, insn: Insn, frame: Frame) -> Iterator[tuple[int, Frame]]:
        for handler in self.code.handlers:
            if handler.start <= insn.pc < handler.end:
                yield handler.handler, Frame(frame.locals, (REF,))
        self.locals, self.stack = list(frame.locals), list(frame.stack)
        self.step(insn)
        out = Frame(tuple(self.locals), tuple(self.stack))
        for target in insn.targets:
            yield target, out
        if insn.op not in NO_FALLTHROUGH:
            yield insn.pc + insn.length, out

    # --- the operand stack

    def push(self, *values: Val) -> None:
        self.stack.extend(values)

    def pop(self, count: int = 1) -> list[Val]:
        if count > len(self.stack):
            raise ClassFormatError("operand stack underflow")
        taken = self.stack[len(self.stack) - count:]
        del self.stack[len(self.stack) - count:]
        return taken

    def pop1(self) -> Val:
        return self.pop()[0]

    def use(self, insn: Insn, value: Val, what: str) -> None:
        """Reports a wide int reaching a place where the card needs a short."""
        if value.kind != "W":
            return
        origin = self.by_pc[value.origin]
        line = self.code.line_at(origin.pc)
        where = f"line {line}" if line is not None else f"pc {origin.pc}"
        source = f"{origin.name} at {where}"
        self.check.report("int-not-narrowed", f"int result of {source} is {what} without a "
                          "(short) or (byte) cast", insn.pc)

    # --- one instruction

    def step(self, insn: Insn) -> None:
        op = insn.op
        for handler in (self.step_constant, self.step_local, self.step_array, self.step_int,
                        self.step_wide_arith, self.step_convert, self.step_branch,
                        self.step_member, self.step_object, self.step_stack):
            if handler(insn, op):
                return
        raise ClassFormatError(f"{insn.name} at pc {insn.pc} not modelled")

    def step_constant(self, insn: Insn, op: int) -> bool:
        if OP["iconst_m1"] <= op <= OP["iconst_5"]:
            self.push(Val("N", const=op - OP["iconst_0"]))
        elif op in PUSH_OPS:
            self.push(Val("N", const=insn.args[0]))
        elif op == OP["aconst_null"]:
            self.push(REF)
        elif op in CONST2_OPS:
            self.push(OTHER, OTHER)
        elif op in FCONST_OPS:
            self.push(OTHER)
        elif op in LDC_OPCODES:
            self.push(*self.ldc_values(insn.args[0]))
        else:
            return op == OP["nop"]
        return True

    def ldc_values(self, index: int) -> list[Val]:
        item = self.cls.entry(index)
        if item.tag == CP_INTEGER:
            return [Val("N", const=item.value[0])]
        if item.tag in (CP_LONG, CP_DOUBLE):
            return [OTHER, OTHER]
        return [OTHER] if item.tag in (CP_FLOAT, CP_DYNAMIC) else [REF]

    def step_local(self, insn: Insn, op: int) -> bool:
        if op in INT_LOADS | {OP["iinc"]}:
            slot = insn.args[0] if op in (OP["iload"], OP["iinc"]) else op - OP["iload_0"]
            value = self.locals[slot]
            value = value if value.kind in "NW" else NARROW
            if op == OP["iinc"]:
                self.locals[slot] = value._replace(const=None)
            else:
                self.push(value)
        elif op in INT_STORES:
            slot = insn.args[0] if op == OP["istore"] else op - OP["istore_0"]
            value = self.pop1()
            if slot not in self.int_slots:
                self.use(insn, value, f"stored into local {self.local_name(slot, insn)}")
            self.locals[slot] = NARROW
        elif OP["lload"] <= op <= OP["aload_3"]:
            self.push(*self.load_values(op))
        elif OP["lstore"] <= op <= OP["astore_3"]:
            self.store(insn, op)
        else:
            return False
        return True

    def local_name(self, slot: int, insn: Insn) -> str:
        after = insn.pc + insn.length
        for var in self.code.local_vars:
            if var.slot == slot and var.start <= after <= var.start + var.length:
                return f"'{var.name}'"
        return f"#{slot}"

    @staticmethod
    def load_values(op: int) -> list[Val]:
        kind = "lfda"[(op - OP["lload"]) if op <= OP["aload"] else (op - OP["lload_0"]) // 4]
        return {"l": [OTHER, OTHER], "d": [OTHER, OTHER], "f": [OTHER], "a": [REF]}[kind]

    def store(self, insn: Insn, op: int) -> None:
        if op <= OP["astore"]:
            kind, slot = "lfda"[op - OP["lstore"]], insn.args[0]
        else:
            kind, slot = "lfda"[(op - OP["lstore_0"]) // 4], (op - OP["lstore_0"]) % 4
        if kind in "ld":
            self.pop(2)
            self.locals[slot:slot + 2] = [OTHER, OTHER]
        else:
            value = self.pop1()
            self.locals[slot] = value if kind == "a" else OTHER

    def step_array(self, insn: Insn, op: int) -> bool:
        if OP["iaload"] <= op <= OP["saload"]:
            index = self.pop(2)[1]
            self.use(insn, index, "used as an array index")
            wide = op in WIDE_ARRAY_LOADS
            self.push(*([OTHER, OTHER] if wide else [REF] if op == OP["aaload"]
                        else [OTHER] if op == OP["faload"] else [NARROW]))
        elif OP["iastore"] <= op <= OP["sastore"]:
            value_slots = 2 if op in WIDE_ARRAY_STORES else 1
            values = self.pop(2 + value_slots)
            self.use(insn, values[1], "used as an array index")
            if op in NARROW_ARRAY_STORES:
                self.use(insn, values[2], "stored into a byte or short array")
        elif op == OP["arraylength"]:
            self.pop1()
            self.push(NARROW)
        elif op in NEW_ARRAYS:
            self.use(insn, self.pop1(), "used as an array length")
            self.push(REF)
        elif op == OP["multianewarray"]:
            for dim in self.pop(insn.args[1]):
                self.use(insn, dim, "used as an array length")
            self.push(REF)
        else:
            return False
        return True

    def step_int(self, insn: Insn, op: int) -> bool:
        if op in INT_BINOPS:
            right, left = self.pop1(), self.pop1()
            self.push(self.int_binop(insn, left, right))
        elif op == OP["ineg"]:
            self.pop1()
            self.push(Val("W", insn.pc))
        elif op in NARROWING_OPS:
            self.pop1()
            self.push(NARROW)
        else:
            return False
        return True

    def int_binop(self, insn: Insn, left: Val, right: Val) -> Val:
        op = insn.op
        if op in HIGH_BITS_OPS:
            verb = "divided" if op in DIVISIONS else "shifted right"
            self.use(insn, left, verb)
        if op in SHIFT_OR_DIVIDE_OPS:
            what = "a divisor" if op in DIVISIONS else "a shift distance"
            self.use(insn, right, f"used as {what}")
            left, right = self.reported(left), self.reported(right)
        if op in WIDENING_OPS:
            return Val("W", insn.pc)
        if op == OP["iand"] and (self.is_mask(left) or self.is_mask(right)):
            return NARROW  # x & 0..0x7FFF fits a short whatever x is
        if left.kind == "W" or right.kind == "W":
            return Val("W", min(v.origin for v in (left, right) if v.kind == "W"))
        return NARROW

    def step_wide_arith(self, insn: Insn, op: int) -> bool:
        """long, float and double arithmetic: flagged elsewhere, only their slots matter here."""
        if not OP["iadd"] <= op <= OP["lxor"] or insn.name[0] == "i":
            return False
        size = 2 if insn.name[0] in "ld" else 1
        if insn.name[1:] == "neg":
            operands = size
        elif insn.name[1:] in ("shl", "shr", "ushr"):
            operands = size + 1  # the distance is an int
        else:
            operands = 2 * size
        self.pop(operands)
        self.push(*[OTHER] * size)
        return True

    @staticmethod
    def reported(value: Val) -> Val:
        return NARROW if value.kind == "W" else value

    @staticmethod
    def is_mask(value: Val) -> bool:
        return value.kind == "N" and value.const is not None and 0 <= value.const <= SHORT_MAX

    def step_convert(self, insn: Insn, op: int) -> bool:
        if not OP["i2l"] <= op <= OP["dcmpg"]:
            return False
        sizes = {"i": 1, "l": 2, "f": 1, "d": 2}
        name = insn.name
        if name[1] == "2":
            source, target = name[0], name[2]
            self.pop(sizes[source])
            self.push(*([NARROW] if target == "i" else [OTHER] * sizes[target]))
        else:  # lcmp, fcmpl, fcmpg, dcmpl, dcmpg
            self.pop(2 * sizes[name[0]])
            self.push(NARROW)
        return True

    def step_branch(self, insn: Insn, op: int) -> bool:
        if op in IFS or op in SWITCHES:
            self.use(insn, self.pop1(), "compared" if op in IFS else "used as a switch key")
        elif op in COMPARES:
            for value in self.pop(2):
                self.use(insn, value, "compared")
        elif op in REF_COMPARES:
            self.pop(2)
        elif op in NULL_TESTS:
            self.pop1()
        elif op in SUBROUTINE_CALLS:
            self.push(OTHER)
        elif op == OP["ireturn"]:
            value = self.pop1()
            if self.ret in NARROW_TYPES:
                self.use(insn, value, f"returned as a {TYPE_NAMES[self.ret]}")
        else:
            return op in PLAIN_JUMPS
        return True

    def step_member(self, insn: Insn, op: int) -> bool:
        if op in FIELD_OPS:
            self.field_access(insn, op)
        elif op in INVOKES:
            self.invoke(insn, op)
        else:
            return False
        return True

    def field_access(self, insn: Insn, op: int) -> None:
        ref = self.cls.member_ref(insn.args[0])
        if op in FIELD_GETS:
            if op == OP["getfield"]:
                self.pop1()
            self.push(*type_values(ref.descriptor))
            return
        value = self.pop(slot_count(ref.descriptor))
        if ref.descriptor in NARROW_TYPES:
            self.use(insn, value[0], f"stored into field {ref.name}")
        if op == OP["putfield"]:
            self.pop1()

    def invoke(self, insn: Insn, op: int) -> None:
        if op == OP["invokedynamic"]:
            nat = self.cls.entry(self.cls.entry(insn.args[0]).value[1]).value
            name, descriptor = self.cls.utf8(nat[0]), self.cls.utf8(nat[1])
        else:
            ref = self.cls.member_ref(insn.args[0])
            name, descriptor = f"{dotted(ref.owner)}.{ref.name}", ref.descriptor
        params, ret = method_types(descriptor)
        for number, type_ in reversed(list(enumerate(params, 1))):
            values = self.pop(slot_count(type_))
            if type_ in NARROW_TYPES:
                self.use(insn, values[0], f"passed as argument {number} of {name}()")
        if op not in STATIC_INVOKES:
            self.pop1()
        self.push(*type_values(ret))

    def step_object(self, insn: Insn, op: int) -> bool:
        if op == OP["new"]:
            self.push(REF)
        elif op == OP["checkcast"]:
            self.pop1()
            self.push(REF)
        elif op == OP["instanceof"]:
            self.pop1()
            self.push(NARROW)
        elif op in MONITOR_OPS:
            self.pop1()
        else:
            return False
        return True

    def step_stack(self, insn: Insn, op: int) -> bool:
        """pop, dup and swap: slot shuffles, the same for every kind of value."""
        shapes = {"pop": (1, ()), "pop2": (2, ()), "dup": (1, (0, 0)), "dup_x1": (2, (1, 0, 1)),
                  "dup_x2": (3, (2, 0, 1, 2)), "dup2": (2, (0, 1, 0, 1)),
                  "dup2_x1": (3, (1, 2, 0, 1, 2)), "dup2_x2": (4, (2, 3, 0, 1, 2, 3)),
                  "swap": (2, (1, 0))}
        shape = shapes.get(insn.name)
        if shape is None:
            return False
        count, order = shape
        taken = self.pop(count)
        self.push(*(taken[i] for i in order))
        return True


# --------------------------------------------------------------------------------------------
# Command line

def class_files(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.rglob("*.class")))
        elif path.is_file():
            found.append(path)
        else:
            raise ClassFormatError(f"{path}: no such file or directory")
    return found


def check_paths(paths: Iterable[Path], allow_int: bool = False,
                probed: Path | None = None) -> tuple[list[Violation], int]:
    """Checks the class files below paths; returns the violations and how many files were read.
    probed: the list of probed uses of 3.0.5 members (default: scripts/jc-api-probed.txt)."""
    probed_uses = ProbedUses.load(probed)
    files = class_files(paths)
    classes = [parse_class(path) for path in files]
    return Checker(classes, allow_int, probed_uses).run(), len(files)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jcsubset", description="Check class files against the Java Card 3.0.x subset.")
    parser.add_argument("paths", nargs="+", type=Path, metavar="DIR_OR_CLASS",
                        help="class files, or directories searched for .class files")
    parser.add_argument("--allow-int", action="store_true",
                        help="the target card supports the optional int type")
    parser.add_argument("--probed", type=Path, metavar="FILE",
                        help="methods that probe for Java Card 3.0.5 members and fall back "
                        "(default: scripts/jc-api-probed.txt)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(format="jcsubset: %(levelname)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    try:
        violations, count = check_paths(args.paths, args.allow_int, args.probed)
    except (ClassFormatError, UsageError) as exc:
        log.error("%s", exc)
        return 2
    if count == 0:
        log.error("no .class files found in %s", " ".join(map(str, args.paths)))
        return 2
    for violation in violations:
        print(violation.render())
    files = len({v.file for v in violations})
    if violations:
        print(f"jcsubset: {len(violations)} violation(s) in {files} source file(s), "
              f"{count} class file(s) checked")
        return 1
    print(f"jcsubset: {count} class file(s) checked, no violations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
