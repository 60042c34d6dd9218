#!/usr/bin/env python3
"""Known-answer vectors for fireblocks-hsm's JWTs, made by the official Python SDK.

Runs fireblocks.bearer_token_provider.BearerTokenProvider (PyPI package `fireblocks`) with
time.time and uuid.uuid4 fixed, over a fixed RSA-2048 *test* key (generated once for this
fixture; it protects nothing), and prints the vectors as JSON.

    python3 -m pip install --target /tmp/pysdk fireblocks==35.1.0
    PYTHONPATH=/tmp/pysdk python3 make-jwt-vectors.py test-key.pem > jwt-vectors.json

FireblocksAPITests compares the Swift tokens (signed on a SoftHSM token holding this key) with
the committed jwt-vectors.json, and, when FIREBLOCKS_PY_SDK is set to such a --target
directory, with a fresh run of this script too.
"""
import json
import sys
import uuid
from unittest import mock

from cryptography.hazmat.primitives import serialization
from fireblocks.bearer_token_provider import BearerTokenProvider

API_KEY = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
IAT = 1764000000
NONCE = "5f0c6a1e-2b7d-4c3a-9e8f-1a2b3c4d5e6f"

pem = open(sys.argv[1]).read()
numbers = serialization.load_pem_private_key(pem.encode(), password=None).private_numbers()


def hexint(value):
    text = format(value, "x")
    return text if len(text) % 2 == 0 else "0" + text


cases = [
    ("POST", "/v1/management/api_users",
     {"role": "SIGNER", "name": "ci-bot", "csrPem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}),
    ("GET", "/v1/vault/accounts_paged?limit=10&orderBy=DESC", None),
    ("GET", "/v1/workspace", None),
]
vectors = []
provider = BearerTokenProvider(API_KEY, pem)
for method, path, body in cases:
    with mock.patch("time.time", return_value=IAT + 0.75), \
         mock.patch("uuid.uuid4", return_value=uuid.UUID(NONCE)):
        token = provider.get_token(method, path, body)
    sent = json.dumps(body) if body is not None and method in ("POST", "PATCH", "PUT") else None
    vectors.append({"method": method, "uri": path, "body": sent, "token": token})

print(json.dumps({
    "note": "made by make-jwt-vectors.py with the official fireblocks Python SDK; test key only",
    "sdk": "fireblocks 35.1.0 (PyPI), BearerTokenProvider",
    "apiKey": API_KEY, "iat": IAT, "nonce": NONCE,
    "key": {
        "n": hexint(numbers.public_numbers.n), "e": hexint(numbers.public_numbers.e),
        "d": hexint(numbers.d), "p": hexint(numbers.p), "q": hexint(numbers.q),
        "dp": hexint(numbers.dmp1), "dq": hexint(numbers.dmq1), "qinv": hexint(numbers.iqmp),
    },
    "vectors": vectors,
}, indent=2, sort_keys=True))
