#!/usr/bin/env python3
"""Checks a C2SP signed note (an audit checkpoint) with sigstore-python's own code: an
implementation fireblocks-hsm did not write. Used by the tests as an outside verifier.

usage: sigstore-verify-note.py NOTE_FILE PUBLIC_KEY_PEM ORIGIN    (exit 0: verified)

sigstore finds the signature line by its 4-byte key ID alone, which C2SP defines for ECDSA
(type 0x02) as the first bytes of SHA-256 over the DER SubjectPublicKeyInfo; it does not look
at the key name, so the origin is compared here. Needs sigstore==4.5.1 (its internal modules
have no stability promise).
"""
import base64
import sys

from cryptography.hazmat.primitives import serialization
from sigstore._internal.rekor.checkpoint import SignedCheckpoint
from sigstore._internal.trust import Key, Keyring
from sigstore.errors import Error
from sigstore_models.common.v1 import PublicKey, PublicKeyDetails


def main(note_path: str, pem_path: str, origin: str) -> int:
    # Bytes, decoded here: a text-mode read would translate line endings (the signed bytes).
    text = open(note_path, "rb").read().decode("utf-8")
    der = serialization.load_pem_public_key(open(pem_path, "rb").read()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    # sigstore_models takes the key's DER base64-encoded.
    public_key = PublicKey(raw_bytes=base64.b64encode(der), key_details=PublicKeyDetails.PKIX_ECDSA_P256_SHA_256)
    try:
        checkpoint = SignedCheckpoint.from_text(text)
        checkpoint.signed_note.verify(Keyring([public_key]), Key(public_key).key_id)
    except Error as error:
        print(f"sigstore: not verified: {error}", file=sys.stderr)
        return 1
    if checkpoint.checkpoint.origin != origin:
        print(f"sigstore: verified, but the origin is {checkpoint.checkpoint.origin!r}", file=sys.stderr)
        return 1
    print(f"sigstore: verified {checkpoint.checkpoint.origin} size {checkpoint.checkpoint.log_size}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} NOTE_FILE PUBLIC_KEY_PEM ORIGIN")
    sys.exit(main(*sys.argv[1:]))
