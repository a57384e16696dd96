#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the fuzz targets into seeds/<target>/.

Seeds cover each branch a reader of the parsers would think of: every accepted form
and one example of every refusal. The fuzzer grows the corpus from them; `cargo fuzz
cmin` then keeps the few inputs that still add coverage.
"""
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = HERE
H = hashlib.sha256(b"remesh").hexdigest()
UUID = "5f0c7f44-1b7e-4c39-9d67-3cb1d29e0b1a"

RESOURCE_NAMES = [
    f"blobs/{H}/42",
    f"main/blobs/{H}/42",
    f"main/team/a/blobs/{H}/42/file.txt",
    f"main/blobs/sha256/{H}/7",
    f"main/blobs/md5/{H}/7",
    f"main/compressed-blobs/zstd/{H}/7",
    f"main/compressed-blobs/zstd/{H}/7/extra",
    f"main/compressed-blobs/deflate/{H}/7",
    f"uploads/{UUID}/blobs/{H}/10",
    f"main/uploads/{UUID}/blobs/{H}/10/some/meta",
    f"main/uploads/{UUID}/compressed-blobs/zstd/{H}/10",
    f"main/uploads/{UUID}/compressed-blobs/zstd/sha256/{H}/10",
    f"main/uploads/blobs/blobs/{H}/10",
    f"a/../blobs/{H}/1",
    f"./blobs/{H}/1",
    f"actions/blobs/{H}/1",
    f"main//blobs/{H}/1",
    f"blobs/{H}/-1",
    f"blobs/{H}/18446744073709551615",
    f"blobs/{H}/18446744073709551616",
    f"blobs/{H.upper()}/1",
    f"blobs/{H[:63]}/1",
    f"blobs/{H}/",
    "blobs",
    "",
    "uploads/x",
    f"main/uploads/{UUID}",
    "x" * 300 + f"/blobs/{H}/1",
]


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1  # negative int64 values travel as ten-byte varints
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    """A length-delimited field (strings, bytes, messages)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def string(number, text):
    return field(number, text.encode()) if text else b""


def digest(hash_, size):
    return string(1, hash_) + (varint(2 << 3) + varint(size) if size else b"")


def digest_of(message):
    return digest(hashlib.sha256(message).hexdigest(), len(message))


def file_node(name, content=b"data", executable=False, raw_digest=None):
    d = raw_digest if raw_digest is not None else digest_of(content)
    return string(1, name) + field(2, d) + (varint(4 << 3) + varint(1) if executable else b"")


def dir_node(name, child=None, raw_digest=None):
    d = raw_digest if raw_digest is not None else digest_of(child)
    return string(1, name) + field(2, d)


def symlink(name, target):
    return string(1, name) + string(2, target)


def directory(files=(), dirs=(), links=()):
    return (
        b"".join(field(1, f) for f in files)
        + b"".join(field(2, d) for d in dirs)
        + b"".join(field(3, s) for s in links)
    )


def tree(root, children=()):
    return field(1, root) + b"".join(field(2, c) for c in children)


def directory_trees():
    leaf = directory(files=[file_node("a.c"), file_node("b.h", b"h", True)])
    mid = directory(dirs=[dir_node("leaf", leaf)], links=[symlink("up", "../mid")])
    root = directory(
        files=[file_node("BUILD")],
        dirs=[dir_node("a", mid), dir_node("b", leaf)],
        links=[symlink("link", "a/leaf/a.c")],
    )
    chain = directory(files=[file_node("f")])
    chain_children = [chain]
    for _ in range(12):
        chain = directory(dirs=[dir_node("d", chain)])
        chain_children.append(chain)
    # For the target's forward-linked pass, which points every DirectoryNode at a
    # later directory (here: the next one) whatever digest it was sent with.
    leaf_only = directory(files=[file_node("f")])
    one_link = directory(dirs=[dir_node("d", raw_digest=b"")])
    two_links = directory(dirs=[dir_node("a", raw_digest=b""), dir_node("b", raw_digest=b"")])
    return {
        "linked_too_deep": tree(one_link, [one_link] * 298 + [leaf_only]),
        "linked_too_wide": tree(two_links, [two_links] * 21 + [leaf_only]),
        "empty": b"",
        "files_only": tree(leaf),
        "nested_dag": tree(root, [mid, leaf]),
        "missing_child": tree(root, [mid]),
        "deep_chain": tree(chain, chain_children[:-1]),
        "unsorted": tree(directory(files=[file_node("b"), file_node("a")])),
        "duplicate_across_kinds": tree(
            directory(files=[file_node("x")], links=[symlink("x", "y")])
        ),
        "absolute_symlink": tree(directory(links=[symlink("s", "/etc/passwd")])),
        "escaping_symlink": tree(
            directory(dirs=[dir_node("c", directory(links=[symlink("s", "../../x")]))]),
            [directory(links=[symlink("s", "../../x")])],
        ),
        "dot_names": tree(directory(files=[file_node(".."), file_node("a/b")])),
        "empty_name": tree(directory(files=[file_node("")])),
        "bad_hash": tree(directory(files=[file_node("f", raw_digest=digest("zz", 1))])),
        "negative_size": tree(directory(files=[file_node("f", raw_digest=digest(H, -5))])),
        "no_digest": tree(directory(files=[string(1, "f")])),
        "nul_target": tree(directory(links=[symlink("s", "a\0b")])),
    }


def write(target, name, data):
    path = os.path.join(SEEDS, target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as out:
        out.write(data)


def main():
    for index, name in enumerate(RESOURCE_NAMES):
        write("resource_name", f"seed-{index:02}", name.encode())
    for name, data in directory_trees().items():
        write("directory_tree", f"seed-{name}", data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
