#!/usr/bin/env python3
"""Checks a c2sp.org/tlog-proof (an audit record's inclusion proof) with sigstore-python's own
code: an implementation fireblocks-hsm did not write. Used by the tests as an outside verifier.

usage: sigstore-verify-inclusion.py PROOF_FILE RECORD_FILE PUBLIC_KEY_PEM ORIGIN   (exit 0: verified)

RECORD_FILE holds the record's exact line (the leaf, without its newline). The proof's
checkpoint is verified with sigstore's signed-note code (as sigstore-verify-note.py does), and
the inclusion path with sigstore's RFC 6962 code, sigstore._internal.merkle.verify_merkle_inclusion,
which reads an entry's index, tree size, path, root and leaf bytes: it is handed an object with
those fields. Only the tlog-proof's own layout (header, optional extra line, `index N`, base64
hashes, an empty line, the checkpoint) is parsed here. Needs sigstore==4.5.1 (its internal
modules have no stability promise).
"""
import base64
import re
import sys
from types import SimpleNamespace

from cryptography.hazmat.primitives import serialization
from sigstore._internal.merkle import verify_merkle_inclusion
from sigstore._internal.rekor.checkpoint import SignedCheckpoint
from sigstore._internal.trust import Key, Keyring
from sigstore.errors import Error
from sigstore_models.common.v1 import PublicKey, PublicKeyDetails


def main(proof_path: str, record_path: str, pem_path: str, origin: str) -> int:
    text = open(proof_path, "rb").read().decode("utf-8")
    leaf = open(record_path, "rb").read()
    head, separator, note = text.partition("\n\n")
    lines = head.split("\n")
    if not separator or lines.pop(0) != "c2sp.org/tlog-proof@v1":
        print("not a c2sp.org/tlog-proof@v1", file=sys.stderr)
        return 1
    if lines and lines[0].startswith("extra "):
        lines.pop(0)
    index = re.fullmatch(r"index (0|[1-9][0-9]*)", lines.pop(0) if lines else "")
    if not index:
        print("no index line", file=sys.stderr)
        return 1
    path = [base64.b64decode(line, validate=True) for line in lines]

    der = serialization.load_pem_public_key(open(pem_path, "rb").read()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    public_key = PublicKey(raw_bytes=base64.b64encode(der), key_details=PublicKeyDetails.PKIX_ECDSA_P256_SHA_256)
    try:
        checkpoint = SignedCheckpoint.from_text(note)
        checkpoint.signed_note.verify(Keyring([public_key]), Key(public_key).key_id)
        if checkpoint.checkpoint.origin != origin:
            print(f"sigstore: the checkpoint is for {checkpoint.checkpoint.origin!r}", file=sys.stderr)
            return 1
        proof = SimpleNamespace(log_index=int(index[1]), tree_size=checkpoint.checkpoint.log_size, hashes=path,
                                root_hash=bytes.fromhex(checkpoint.checkpoint.log_hash))
        verify_merkle_inclusion(SimpleNamespace(_inner=SimpleNamespace(inclusion_proof=proof, canonicalized_body=leaf)))
    except Error as error:
        print(f"sigstore: not verified: {error}", file=sys.stderr)
        return 1
    print(f"sigstore: record {index[1]} is in {checkpoint.checkpoint.origin} of size {checkpoint.checkpoint.log_size}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(f"usage: {sys.argv[0]} PROOF_FILE RECORD_FILE PUBLIC_KEY_PEM ORIGIN")
    sys.exit(main(*sys.argv[1:]))
